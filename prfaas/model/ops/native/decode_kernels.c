/* Fused fp32 decode kernels for CPU (built and loaded by prfaas/model/ops/native/loader.py).
 *
 * Why C: one decode step is memory-bound. torch's eager ops read the paged KV (K and V of a token
 * interleaved, [num_blocks, block_size, 2, Hkv, d]) through thin GEMMs that reach ~0.3 of the
 * read bandwidth, and the gated-delta state update takes ~6 passes over the state. These kernels
 * read each KV row and each state once, in place, with no gathers and no temporaries.
 * Oracles: ops/attention/paged.py paged_decode_attention and
 * ops/linear_attn/recurrent.py recurrent_gated_delta_rule_step (tests compare against both).
 * Compiled without -ffast-math: `omp simd reduction` allows reassociating only the dot products.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define TILE 32 /* tokens per online-softmax tile: scores [Hq, TILE] stay in L1 */
#define PREFETCH_ROWS 4

/* e^x for x <= 0 (softmax weights): 2^round(x·log2 e) times a degree-6 Taylor e^r, |r| <= 0.347;
 * relative error < 2e-7 (tests check it against expf). Branch-free, so gcc vectorises the loop. */
static inline float exp_nonpositive(float x) {
    x = x < -87.0f ? -87.0f : x;
    float n = rintf(x * 1.44269504088896341f);
    float r = x - n * 0.693145751953125f - n * 1.428606765330187e-06f;
    float p = 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    union { float f; int32_t i; } u = {p};
    u.i += (int32_t)n << 23;
    return u.f;
}

/* a·b over n floats: 16 independent partial sums (two vector registers, no serial add chain);
 * a tail of n % 16 is added at the end. */
static inline float dot(const float *a, const float *b, int64_t n) {
    float part[16] = {0};
    int64_t e = 0;
    for (; e + 16 <= n; e += 16)
        for (int j = 0; j < 16; j++) part[j] += a[e + j] * b[e + j];
    float total = 0.0f;
    const int64_t rest = n - e;
    for (int64_t j = 0; j < rest; j++) total += a[e + j] * b[e + j];
    for (int j = 0; j < 16; j++) total += part[j];
    return total;
}

void exp_nonpositive_f32(const float *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = exp_nonpositive(x[i]);
}

/* One query per request over its first lengths[b] keys.
 * q [B, Hq, d]; kv one layer's cache [num_blocks, block_size, 2, Hkv, d]; tables [B, table_stride]
 * (block ids, row b valid for its length); out [B, Hq, d]. Tokens are visited in order, each
 * token row (K and V of every head, 2·Hkv·d floats) read once while it is in cache.
 * Returns 0, or -1 when out of memory. */
static inline __attribute__((always_inline)) int attention_body(
    const float *q, const float *kv, const int64_t *tables, int64_t table_stride,
    const int64_t *lengths, int64_t B, int64_t Hq, int64_t Hkv, const int64_t d,
    int64_t block_size, float scale, float *out) {
    const int64_t G = Hq / Hkv, row = 2 * Hkv * d;
    float *qs = malloc(sizeof(float) * Hq * d), *acc = malloc(sizeof(float) * Hq * d);
    float *m = malloc(sizeof(float) * Hq), *l = malloc(sizeof(float) * Hq);
    float *s = malloc(sizeof(float) * Hq * TILE);
    int64_t *kv_head = malloc(sizeof(int64_t) * Hq); /* no integer division per token */
    if (!qs || !acc || !m || !l || !s || !kv_head) {
        free(qs); free(acc); free(m); free(l); free(s); free(kv_head);
        return -1;
    }
    for (int64_t h = 0; h < Hq; h++) kv_head[h] = h / G;
    for (int64_t b = 0; b < B; b++) {
        const int64_t L = lengths[b];
        const int64_t *table = tables + b * table_stride;
        for (int64_t i = 0; i < Hq * d; i++) qs[i] = q[b * Hq * d + i] * scale;
        memset(acc, 0, sizeof(float) * Hq * d);
        for (int64_t h = 0; h < Hq; h++) { m[h] = -INFINITY; l[h] = 0.0f; }
        for (int64_t t0 = 0, n = 0; t0 < L; t0 += n) {
            /* A tile never crosses a block: its token rows are one contiguous range. */
            const int64_t off = t0 % block_size, left = block_size - off;
            n = L - t0 < TILE ? L - t0 : TILE;
            n = n < left ? n : left;
            const float *tile_rows = kv + (table[t0 / block_size] * block_size + off) * row;
            for (int64_t i = 0; i < n; i++) {
                const float *r = tile_rows + i * row;
                /* Software prefetch PREFETCH_ROWS tokens ahead (within the block; the next
                 * block's first rows miss once): the hardware streamer alone left the loads
                 * below waiting on DRAM for most of the kernel's time. */
                if (i + PREFETCH_ROWS < left)
                    for (int64_t c = 0; c < row; c += 16) __builtin_prefetch(r + PREFETCH_ROWS * row + c);
                for (int64_t h = 0; h < Hq; h++) { /* query head h reads kv head h / G */
                    const float *k = r + kv_head[h] * d, *qq = qs + h * d;
                    s[h * TILE + i] = dot(qq, k, d);
                }
            }
            for (int64_t h = 0; h < Hq; h++) {
                float *sh = s + h * TILE, mt = m[h];
#pragma omp simd reduction(max : mt)
                for (int64_t i = 0; i < n; i++) mt = sh[i] > mt ? sh[i] : mt;
                const float corr = m[h] == -INFINITY ? 0.0f : exp_nonpositive(m[h] - mt);
                float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
                for (int64_t i = 0; i < n; i++) {
                    sh[i] = exp_nonpositive(sh[i] - mt);
                    sum += sh[i];
                }
                l[h] = l[h] * corr + sum;
                m[h] = mt;
                float *a = acc + h * d;
                for (int64_t e = 0; e < d; e++) a[e] *= corr;
            }
            for (int64_t i = 0; i < n; i++) {
                const float *r = tile_rows + i * row;
                for (int64_t h = 0; h < Hq; h++) {
                    const float *v = r + (Hkv + kv_head[h]) * d, p = s[h * TILE + i];
                    float *a = acc + h * d;
                    for (int64_t e = 0; e < d; e++) a[e] += p * v[e];
                }
            }
        }
        for (int64_t h = 0; h < Hq; h++)
            for (int64_t e = 0; e < d; e++) out[(b * Hq + h) * d + e] = acc[h * d + e] / l[h];
    }
    free(qs); free(acc); free(m); free(l); free(s); free(kv_head);
    return 0;
}

int paged_decode_attention_f32(const float *q, const float *kv, const int64_t *tables,
                               int64_t table_stride, const int64_t *lengths, int64_t B, int64_t Hq,
                               int64_t Hkv, int64_t d, int64_t block_size, float scale,
                               float *out) {
    /* Constant head dims let gcc unroll the d-loops into whole vector registers (~2x faster). */
#define ATTENTION(D) attention_body(q, kv, tables, table_stride, lengths, B, Hq, Hkv, D, \
                                    block_size, scale, out)
    switch (d) {
    case 64: return ATTENTION(64);
    case 128: return ATTENTION(128);
    case 256: return ATTENTION(256);
    default: return ATTENTION(d);
    }
#undef ATTENTION
}

/* One gated-delta-rule token per request, updating the cache's states in place.
 * q, k [B, H, dk]; v [B, H, dv]; beta, g [B, H]; state [num_slots, H, dk, dv], request b in row
 * slots[b]; out [B, H, dv]. Same result as decay → predict → correct → write → read, computed as
 * o = e^g·(qᵀS) + (q·k)·u with u = β(v − e^g·kᵀS), S ← e^g·S + k uᵀ: one read pass over S for both
 * products, one read-write pass for the update. Returns 0, or -1 when out of memory. */
int gdn_decode_step_f32(const float *q, const float *k, const float *v, const float *beta,
                        const float *g, float *state, const int64_t *slots, int64_t B, int64_t H,
                        int64_t dk, int64_t dv, float *out) {
    float *ks = malloc(sizeof(float) * dv), *qs = malloc(sizeof(float) * dv);
    float *u = malloc(sizeof(float) * dv);
    if (!ks || !qs || !u) {
        free(ks); free(qs); free(u);
        return -1;
    }
    for (int64_t b = 0; b < B; b++) {
        for (int64_t h = 0; h < H; h++) {
            const int64_t bh = b * H + h;
            float *S = state + (slots[b] * H + h) * dk * dv;
            const float *qb = q + bh * dk, *kb = k + bh * dk, *vb = v + bh * dv;
            const float decay = expf(g[bh]), bt = beta[bh];
            memset(ks, 0, sizeof(float) * dv);
            memset(qs, 0, sizeof(float) * dv);
            float qk = 0.0f;
            for (int64_t i = 0; i < dk; i++) {
                const float ki = kb[i], qi = qb[i], *rowp = S + i * dv;
                qk += qi * ki;
#pragma omp simd
                for (int64_t j = 0; j < dv; j++) {
                    ks[j] += ki * rowp[j];
                    qs[j] += qi * rowp[j];
                }
            }
            float *o = out + bh * dv;
            for (int64_t j = 0; j < dv; j++) {
                u[j] = bt * (vb[j] - decay * ks[j]);
                o[j] = decay * qs[j] + qk * u[j];
            }
            for (int64_t i = 0; i < dk; i++) {
                const float ki = kb[i];
                float *rowp = S + i * dv;
                for (int64_t j = 0; j < dv; j++) rowp[j] = decay * rowp[j] + ki * u[j];
            }
        }
    }
    free(ks); free(qs); free(u);
    return 0;
}

/* KV line codec, decode side (prfaas/model/kv_codec.py): each of `rows` encoded rows is `e` code
 * bytes then e/64 little-endian f32 scales (`row_bytes` = e + 4 * e / 64); element i decodes as
 * lut[code[i]] * scale[i / 64] into out[rows, e] (fp32). lut[256] holds the fp8 e4m3fn or int8
 * value of every code, so the result equals torch's code.float() * scale bit for bit. */
int kv_dequant_rows_f32(const uint8_t *enc, int64_t rows, int64_t e, int64_t row_bytes,
                        const float *lut, float *out) {
    if (e % 64) return -1;
    for (int64_t r = 0; r < rows; r++) {
        const uint8_t *codes = enc + r * row_bytes;
        const uint8_t *scale_bytes = codes + e;
        float *o = out + r * e;
        for (int64_t g = 0; g < e / 64; g++) {
            float s;
            memcpy(&s, scale_bytes + 4 * g, 4);
            const uint8_t *c = codes + 64 * g;
            float *og = o + 64 * g;
            for (int64_t i = 0; i < 64; i++) og[i] = lut[c[i]] * s;
        }
    }
    return 0;
}

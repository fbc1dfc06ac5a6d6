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

#define TILE 16 /* tokens per online-softmax tile: its KV rows stay in L1 while every head reads them */

/* Unaligned 8-float vector (GCC/Clang vector extension): AVX2 registers with -march=native. */
typedef float v8f __attribute__((vector_size(32), aligned(4), may_alias));
typedef int32_t v8i __attribute__((vector_size(32)));

/* e^x for x <= 0 (softmax weights), 8 or 16 lanes: 2^round(x·log2 e) times a degree-6 Taylor e^r,
 * |r| <= 0.347; relative error < 2e-7 (tests check it against expf). Written with vector ops (the
 * magic-constant round is round-to-nearest-even for |x| < 2^22) so it compiles to vector code. */
#define DEFINE_EXP_NONPOSITIVE(NAME, VF, VI)                                                      \
    static inline VF NAME(VF x) {                                                                  \
        const VF lo = x - x - 87.0f;                                                               \
        const VI below = x < lo;                                                                   \
        x = (VF)(((VI)x & ~below) | ((VI)lo & below));                                             \
        const VF magic = lo - lo + 12582912.0f; /* 1.5 * 2^23 */                                   \
        const VF n = (x * 1.44269504088896341f + magic) - magic;                                   \
        const VF r = x - n * 0.693145751953125f - n * 1.428606765330187e-06f;                      \
        VF p = r - r + 1.0f / 720.0f;                                                              \
        p = p * r + 1.0f / 120.0f;                                                                 \
        p = p * r + 1.0f / 24.0f;                                                                  \
        p = p * r + 1.0f / 6.0f;                                                                   \
        p = p * r + 0.5f;                                                                          \
        p = p * r + 1.0f;                                                                          \
        p = p * r + 1.0f;                                                                          \
        return (VF)((VI)p + (__builtin_convertvector(n, VI) << 23));                               \
    }
DEFINE_EXP_NONPOSITIVE(exp_nonpositive8, v8f, v8i)

/* One lane of exp_nonpositive8: the same bits as the vector lanes (score tails, corrections). */
static inline float exp_nonpositive(float x) {
    const v8f v = {x};
    return exp_nonpositive8(v)[0];
}

void exp_nonpositive_f32(const float *x, float *y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) *(v8f *)(y + i) = exp_nonpositive8(*(const v8f *)(x + i));
    for (; i < n; i++) y[i] = exp_nonpositive(x[i]);
}

/* y = sigmoid(x), or x · sigmoid(x) (SiLU) when silu, for n floats (y may be x): fused_decode.c's
 * gates and SwiGLU, 8 lanes at a time instead of a scalar expf per element. sigmoid(x) = 1 / (1 + t)
 * for x >= 0 and t / (1 + t) below, t = e^-|x| (exp_nonpositive8: never overflows); the tail goes
 * through the same vector code, so every element's bits are the same whatever its position. */
void sigmoid_f32(const float *x, float *y, int64_t n, int silu) {
    const v8i sign = (v8i){0} + (int32_t)0x7fffffff;
    for (int64_t i = 0; i < n; i += 8) {
        v8f a = {0};
        const int64_t w = n - i < 8 ? n - i : 8;
        if (w == 8)
            a = *(const v8f *)(x + i);
        else
            memcpy(&a, x + i, sizeof(float) * w);
        const v8f t = exp_nonpositive8(-(v8f)((v8i)a & sign)), r = 1.0f / (1.0f + t);
        const v8i pos = a >= 0.0f;
        v8f sig = (v8f)(((v8i)r & pos) | ((v8i)(t * r) & ~pos));
        if (silu) sig = a * sig;
        if (w == 8)
            *(v8f *)(y + i) = sig;
        else
            memcpy(y + i, &sig, sizeof(float) * w);
    }
}

static inline float hsum8(v8f v) {
    return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

#if defined(__AVX__)
#include <immintrin.h>
/* out[j] = the lane sum of vector j, for 4 vectors at once (3 horizontal adds, 1 add). */
static inline void hsum8x4(v8f a, v8f b, v8f c, v8f d, float *out) {
    const __m256 ab = _mm256_hadd_ps((__m256)a, (__m256)b), cd = _mm256_hadd_ps((__m256)c, (__m256)d);
    const __m256 abcd = _mm256_hadd_ps(ab, cd);
    _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1)));
}
#else
static inline void hsum8x4(v8f a, v8f b, v8f c, v8f d, float *out) {
    out[0] = hsum8(a); out[1] = hsum8(b); out[2] = hsum8(c); out[3] = hsum8(d);
}
#endif

#if defined(__AVX512F__)
/* The same attention with 16-lane vectors (AVX-512), for head dims that are multiples of 16.
 * Why: the 8-lane kernel above streams KV at ~13 GB/s (CPU time, 4K context, batch 32) against
 * ~30 for a plain sum over the same tensor on an otherwise idle core; it spent its time on
 * per-token horizontal sums and scalar softmax, not on the stream. Here a tile's 16 scores of a
 * head end in the lanes of one vector (the 16 per-token dot-product vectors are summed by a
 * transposing tree of two-source shuffles: 15 adds for 16 tokens), so the max, the exp and the
 * sum are one vector op each; and query heads that share a KV head go in pairs, each K and V
 * vector loaded once for both. */
typedef float v16f __attribute__((vector_size(64), aligned(4), may_alias));
typedef int32_t v16i __attribute__((vector_size(64)));

DEFINE_EXP_NONPOSITIVE(exp_nonpositive16, v16f, v16i) /* the same e^x, 16 lanes */

/* Transposing sums: u holds k groups of partial sums (width w each), v the next k groups; the
 * result holds the 2k groups at width w/2 (each group's halves added). */
#define SUM_HALVES(u, v, LO, HI) (__builtin_shuffle(u, v, (v16i)LO) + __builtin_shuffle(u, v, (v16i)HI))
static inline v16f sum16_2(v16f a, v16f b) { /* [a:8 | b:8] */
    return SUM_HALVES(a, b, ((v16i){0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23}),
                      ((v16i){8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31}));
}
static inline v16f sum8_4(v16f a, v16f b) { /* [a0:4 a1:4 | b0:4 b1:4] */
    return SUM_HALVES(a, b, ((v16i){0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27}),
                      ((v16i){4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31}));
}
static inline v16f sum4_8(v16f a, v16f b) {
    return SUM_HALVES(a, b, ((v16i){0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29}),
                      ((v16i){2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31}));
}
static inline v16f sum2_16(v16f a, v16f b) {
    return SUM_HALVES(a, b, ((v16i){0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30}),
                      ((v16i){1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31}));
}
#undef SUM_HALVES

/* The lanes' max by a shuffle tree (a scalar loop over the lanes was a 15-deep chain of lane
 * extracts and compares on every tile's critical path: 31-32 -> 36-38 GB/s with the tile in L2). */
static inline float hmax16(v16f v) { return _mm512_reduce_max_ps((__m512)v); }

static inline float hsum16(v16f v) {
    v16f t = v + __builtin_shuffle(v, (v16i){8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7});
    t = t + __builtin_shuffle(t, (v16i){4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11});
    t = t + __builtin_shuffle(t, (v16i){2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13});
    return t[0] + t[1];
}

/* q·k over D dims, 16 lanes of partial sums (D % 16 == 0). */
static inline __attribute__((always_inline)) v16f dot16(const float *q, const float *k, int64_t D) {
    v16f a = *(const v16f *)q * *(const v16f *)k;
    for (int64_t e = 16; e < D; e += 16) a += *(const v16f *)(q + e) * *(const v16f *)(k + e);
    return a;
}

/* Scores of up to 16 tokens (rows `row` floats apart from k0; tokens >= n read token 0's row and
 * are masked by the caller) against NH query heads (qs, qs + D): one vector per head, lane i =
 * token i. */
static inline __attribute__((always_inline)) void scores16(const float *qs, const float *k0,
                                                           int64_t row, int64_t n, int64_t D,
                                                           int NH, v16f *out) {
    v16f y[2][4];
    for (int g = 0; g < 4; g++) {
        const float *k[4];
        for (int j = 0; j < 4; j++) {
            const int64_t i = 4 * g + j;
            k[j] = k0 + (i < n ? i : 0) * row;
        }
        for (int h = 0; h < NH; h++) {
            const float *qh = qs + h * D;
            y[h][g] = sum8_4(sum16_2(dot16(qh, k[0], D), dot16(qh, k[1], D)),
                             sum16_2(dot16(qh, k[2], D), dot16(qh, k[3], D)));
        }
    }
    for (int h = 0; h < NH; h++)
        out[h] = sum2_16(sum4_8(y[h][0], y[h][1]), sum4_8(y[h][2], y[h][3]));
}

/* NH (1 or 2) query heads qs [NH, D] (scaled) that read one KV head: the K rows at k0 and V rows at
 * v0 (token stride `row`) of one tile of n <= 16 tokens, online softmax into m, l, acc [NH, D]. */
static inline __attribute__((always_inline)) void tile16(const float *qs, const float *k0,
                                                         const float *v0, int64_t row, int64_t n,
                                                         int64_t D, int NH, float *m, float *l,
                                                         float *acc) {
    v16f s[2];
    scores16(qs, k0, row, n, D, NH, s);
    const v16f lane = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    const v16i live = lane < (float)n;
    float p[2][16], corr[2];
    for (int h = 0; h < NH; h++) {
        const v16f masked = (v16f)(((v16i)s[h] & live) | ((v16i)(s[h] - s[h] - INFINITY) & ~live));
        float mt = hmax16(masked);
        mt = m[h] > mt ? m[h] : mt;
        corr[h] = m[h] == -INFINITY ? 0.0f : exp_nonpositive(m[h] - mt);
        const v16f e = (v16f)((v16i)exp_nonpositive16(s[h] - mt) & live);
        *(v16f *)p[h] = e;
        l[h] = l[h] * corr[h] + hsum16(e);
        m[h] = mt;
    }
    for (int64_t e0 = 0; e0 < D; e0 += 64) { /* 64 dims x NH heads in registers */
        const int64_t w = D - e0 < 64 ? D - e0 : 64;
        v16f a[2][4];
        for (int h = 0; h < NH; h++)
            for (int j = 0; j < 4; j++)
                if (j * 16 < w) a[h][j] = *(v16f *)(acc + h * D + e0 + j * 16) * corr[h];
        for (int64_t i = 0; i < n; i++) {
            const float *v = v0 + i * row + e0;
            for (int j = 0; j < 4; j++)
                if (j * 16 < w) {
                    const v16f vv = *(const v16f *)(v + j * 16);
                    for (int h = 0; h < NH; h++) a[h][j] += p[h][i] * vv;
                }
        }
        for (int h = 0; h < NH; h++)
            for (int j = 0; j < 4; j++)
                if (j * 16 < w) *(v16f *)(acc + h * D + e0 + j * 16) = a[h][j];
    }
}

#endif

/* One query per request over its first lengths[b] keys.
 * q [B, Hq, d]; kv one layer's cache [num_blocks, block_size, 2, Hkv, d]; tables [B, table_stride]
 * (block ids, row b valid for its length); out [B, Hq, d]. Tokens go in tiles of TILE rows
 * (2·Hkv·d floats each, K and V of every head) that stay in L1 while every head reads them: per
 * head, the scores of the tile with the query in registers, then the tile's V rows accumulated
 * into 64 output dims at a time held in registers. Any d (tails of d % 16 and d % 8 in scalars).
 * `wide` (d % 16 == 0, AVX-512 built): tile16 instead, with the next tile prefetched. 8-lane path:
 * no software prefetch (prefetching the next tile into L1 or L2 measured slower there).
 * Returns 0, or -1 when out of memory. */
static inline __attribute__((always_inline)) int attention_body(
    const float *q, const float *kv, const int64_t *tables, int64_t table_stride,
    const int64_t *lengths, int64_t B, int64_t Hq, int64_t Hkv, const int64_t d,
    int64_t block_size, float scale, float *out, const int wide) {
    const int64_t G = Hq / Hkv, row = 2 * Hkv * d;
    float *qs = malloc(sizeof(float) * Hq * d), *acc = malloc(sizeof(float) * Hq * d);
    float *m = malloc(sizeof(float) * Hq), *l = malloc(sizeof(float) * Hq);
    float *s = malloc(sizeof(float) * Hq * TILE);
    if (!qs || !acc || !m || !l || !s) {
        free(qs); free(acc); free(m); free(l); free(s);
        return -1;
    }
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
#if defined(__AVX512F__)
            if (wide) {
                /* Start the next tile's rows (16 KB at the small preset) coming into L1 while this
                 * one is scored: measured 1.3-1.5x with the 16-lane tiles (the 8-lane path, slower
                 * per token, did not gain from it); the hardware prefetcher alone does not run far
                 * enough ahead of a pattern that reads each row in four pieces. */
                const int64_t tp = t0 + TILE;
                if (tp < L) {
                    const int64_t at = table[tp / block_size] * block_size + tp % block_size;
                    int64_t nt = L - tp < TILE ? L - tp : TILE;
                    nt = nt < block_size - tp % block_size ? nt : block_size - tp % block_size;
                    const char *pr = (const char *)(kv + at * row);
                    for (int64_t c = 0; c < nt * row * (int64_t)sizeof(float); c += 64)
                        __builtin_prefetch(pr + c, 0, 3);
                }
                for (int64_t h = 0; h < Hq;) { /* query heads of one KV head in pairs */
                    const int64_t g = h / G;
                    const float *k0 = tile_rows + g * d, *v0 = tile_rows + (Hkv + g) * d;
                    if (h + 1 < (g + 1) * G) { /* constant NH: each variant compiled apart */
                        tile16(qs + h * d, k0, v0, row, n, d, 2, m + h, l + h, acc + h * d);
                        h += 2;
                    } else {
                        tile16(qs + h * d, k0, v0, row, n, d, 1, m + h, l + h, acc + h * d);
                        h += 1;
                    }
                }
                continue;
            }
#endif
            const int64_t d8 = d & ~(int64_t)7; /* vector part; d % 8 tail in scalars */
            for (int64_t h = 0; h < Hq; h++) { /* scores: query head h reads kv head h / G */
                const float *k0 = tile_rows + (h / G) * d, *qq = qs + h * d;
                float *sh = s + h * TILE;
                int64_t i = 0;
                for (; i + 4 <= n; i += 4) {
                    /* 4 tokens x 2 accumulators (dims e and e + 8): 8 independent FMA chains keep
                     * both FMA units busy; one 4-way reduction at the end. */
                    const float *ka = k0 + i * row, *kb = ka + row, *kc = kb + row, *kd = kc + row;
                    v8f a = {0}, b = {0}, c = {0}, e4 = {0}, a2 = {0}, b2 = {0}, c2 = {0}, d2 = {0};
                    int64_t e = 0;
                    for (; e + 16 <= d8; e += 16) {
                        const v8f qv = *(const v8f *)(qq + e), qw = *(const v8f *)(qq + e + 8);
                        a += qv * *(const v8f *)(ka + e);
                        b += qv * *(const v8f *)(kb + e);
                        c += qv * *(const v8f *)(kc + e);
                        e4 += qv * *(const v8f *)(kd + e);
                        a2 += qw * *(const v8f *)(ka + e + 8);
                        b2 += qw * *(const v8f *)(kb + e + 8);
                        c2 += qw * *(const v8f *)(kc + e + 8);
                        d2 += qw * *(const v8f *)(kd + e + 8);
                    }
                    if (e < d8) {
                        const v8f qv = *(const v8f *)(qq + e);
                        a += qv * *(const v8f *)(ka + e);
                        b += qv * *(const v8f *)(kb + e);
                        c += qv * *(const v8f *)(kc + e);
                        e4 += qv * *(const v8f *)(kd + e);
                    }
                    hsum8x4(a + a2, b + b2, c + c2, e4 + d2, sh + i);
                    for (int64_t e = d8; e < d; e++) {
                        sh[i] += qq[e] * ka[e]; sh[i + 1] += qq[e] * kb[e];
                        sh[i + 2] += qq[e] * kc[e]; sh[i + 3] += qq[e] * kd[e];
                    }
                }
                for (; i < n; i++) {
                    const float *k = k0 + i * row;
                    v8f a = {0};
                    for (int64_t e = 0; e < d8; e += 8) a += *(const v8f *)(qq + e) * *(const v8f *)(k + e);
                    float t = hsum8(a);
                    for (int64_t e = d8; e < d; e++) t += qq[e] * k[e];
                    sh[i] = t;
                }
            }
            for (int64_t h = 0; h < Hq; h++) {
                float *sh = s + h * TILE, mt = m[h];
#pragma omp simd reduction(max : mt)
                for (int64_t i = 0; i < n; i++) mt = sh[i] > mt ? sh[i] : mt;
                const float corr = m[h] == -INFINITY ? 0.0f : exp_nonpositive(m[h] - mt);
                int64_t i = 0;
                for (; i + 8 <= n; i += 8) *(v8f *)(sh + i) = exp_nonpositive8(*(v8f *)(sh + i) - mt);
                for (; i < n; i++) sh[i] = exp_nonpositive(sh[i] - mt);
                float sum = 0.0f;
                for (i = 0; i < n; i++) sum += sh[i];
                l[h] = l[h] * corr + sum;
                m[h] = mt;
                const float *v0 = tile_rows + (Hkv + h / G) * d;
                for (int64_t e0 = 0; e0 < d8; e0 += 64) { /* 64 dims = 8 vector registers */
                    const int64_t w = d8 - e0 < 64 ? d8 - e0 : 64;
                    v8f a[8];
                    for (int j = 0; j < 8; j++) {
                        a[j] = (v8f){0};
                        if (j * 8 < w) a[j] = *(v8f *)(acc + h * d + e0 + j * 8) * corr;
                    }
                    for (int64_t i = 0; i < n; i++) {
                        const float *v = v0 + i * row + e0, p = sh[i];
                        for (int j = 0; j < 8; j++)
                            if (j * 8 < w) a[j] += p * *(const v8f *)(v + j * 8);
                    }
                    for (int j = 0; j < 8; j++)
                        if (j * 8 < w) *(v8f *)(acc + h * d + e0 + j * 8) = a[j];
                }
                for (int64_t e = d8; e < d; e++) {
                    float t = acc[h * d + e] * corr;
                    for (int64_t i = 0; i < n; i++) t += sh[i] * v0[i * row + e];
                    acc[h * d + e] = t;
                }
            }
        }
        for (int64_t h = 0; h < Hq; h++)
            for (int64_t e = 0; e < d; e++) out[(b * Hq + h) * d + e] = acc[h * d + e] / l[h];
    }
    free(qs); free(acc); free(m); free(l); free(s);
    return 0;
}


int paged_decode_attention_f32(const float *q, const float *kv, const int64_t *tables,
                               int64_t table_stride, const int64_t *lengths, int64_t B, int64_t Hq,
                               int64_t Hkv, int64_t d, int64_t block_size, float scale,
                               float *out) {
    /* Constant head dims let gcc unroll the d-loops into whole vector registers (~2x faster);
     * multiples of 16 take the 16-lane tiles where AVX-512 is built. */
#define ATTENTION(D, WIDE) attention_body(q, kv, tables, table_stride, lengths, B, Hq, Hkv, D, \
                                          block_size, scale, out, WIDE)
#if defined(__AVX512F__)
    switch (d) {
    case 16: return ATTENTION(16, 1);
    case 32: return ATTENTION(32, 1);
    case 64: return ATTENTION(64, 1);
    case 128: return ATTENTION(128, 1);
    case 256: return ATTENTION(256, 1);
    }
#endif
    switch (d) {
    case 64: return ATTENTION(64, 0);
    case 128: return ATTENTION(128, 0);
    case 256: return ATTENTION(256, 0);
    default: return ATTENTION(d, 0);
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

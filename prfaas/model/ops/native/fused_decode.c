/* One whole fp32 decode step of the hybrid model in C (built with decode_kernels.c by loader.py;
 * driven by prfaas/model/ops/native/fused_step.py).
 *
 * Why: at 4K context a batch-1 step must read ~37 MB (weights 28 MB, KV 8 MB), ~2 ms of memory
 * bandwidth, but the layer-by-layer torch path issued ~700 small ops (~9 ms of dispatch) and its
 * matrix-vector products read weights at ~8 GB/s. Here the step is one call: every weight matrix is
 * streamed once per step whatever the batch (4 rows at a time, each row reused by the whole batch
 * while it is in L1), and the elementwise work between the products runs on rows in cache.
 * Oracle: HybridModel.decode's torch path (PRFAAS_NATIVE_KERNELS=0); tests compare the two.
 *
 * Every (weight row, batch row) dot product is one 8-lane accumulator over k in order, reduced the
 * same way, in every kernel variant: a request's logits do not depend on the batch it rides in.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Unaligned 8-float vectors (GCC/Clang vector extension; AVX2 with -march=native, split elsewhere). */
typedef float v8f __attribute__((vector_size(32), aligned(4), may_alias));

int paged_decode_attention_f32(const float *q, const float *kv, const int64_t *tables,
                               int64_t table_stride, const int64_t *lengths, int64_t B, int64_t Hq,
                               int64_t Hkv, int64_t d, int64_t block_size, float scale,
                               float *out);
int gdn_decode_step_f32(const float *q, const float *k, const float *v, const float *beta,
                        const float *g, float *state, const int64_t *slots, int64_t B, int64_t H,
                        int64_t dk, int64_t dv, float *out);

/* Shapes and shared tensors of the model (fused_step.py fills it; field order is the contract). */
typedef struct {
    int64_t d_model, vocab, ffn, n_layers;
    int64_t conv_dim, conv_k, gdn_hk, gdn_hv, gdn_dk, gdn_dv;
    int64_t hq, hkv, hd, rope_dim, attn_gate;
    double rms_eps, norm_offset, qk_norm_eps;
    const float *embed, *final_norm, *lm_head, *logit_mask, *rope_inv_freq;
} ModelDims;

/* One layer's weights (nn.Linear layout [out, in]); kind 0 = gated DeltaNet, 1 = full attention;
 * the other kind's pointers are NULL. */
typedef struct {
    int64_t kind;
    const float *mixer_norm, *mlp_norm, *gate_up, *down;
    const float *in_qkv, *in_z, *in_b, *in_a, *conv_w, *a_log, *dt_bias, *out_norm, *out_proj;
    const float *q_proj, *k_proj, *v_proj, *q_norm, *k_norm, *o_proj;
} LayerWeights;

/* An empty asm that claims to change a and b: gcc then keeps them in registers instead of
 * reloading them for each use (it did, 12 loads per 8 FMAs: half the FLOP/s of this kernel). */
#if defined(__x86_64__) || defined(__i386__)
#define KEEP_IN_REGISTERS(a, b) __asm__("" : "+x"(a), "+x"(b))
#else
#define KEEP_IN_REGISTERS(a, b) ((void)0)
#endif

static inline float hsum(v8f v) {
    return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

/* sum_k a[k] * b[k] for one (weight row, batch row) pair: the order every kernel below uses. */
static inline float dot_tail(const float *a, const float *b, int64_t k0, int64_t K) {
    float t = 0.0f;
    for (int64_t k = k0; k < K; k++) t += a[k] * b[k];
    return t;
}

/* y[b, n] = x[b, :] · W[n, :] for b < B, n < N; x [B, K], W [N, K], y rows ldy apart. W is read
 * from memory once: 4 rows (4·K floats, L1-sized for the model's K) serve every batch row. */
static void linear(const float *x, int64_t B, int64_t K, const float *W, int64_t N, float *y,
                   int64_t ldy) {
    const int64_t K8 = K & ~(int64_t)7;
    int64_t n = 0;
    for (; n + 4 <= N; n += 4) {
        const float *w0 = W + n * K, *w1 = w0 + K, *w2 = w1 + K, *w3 = w2 + K;
        /* The next 4 rows are needed after this batch loop: start them coming. */
        if (n + 8 <= N)
            for (int64_t c = 0; c < 4 * K; c += 16) __builtin_prefetch(w0 + 4 * K + c);
        int64_t b = 0;
        for (; b + 2 <= B; b += 2) {
            const float *xa = x + b * K, *xb = xa + K;
            v8f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, b0 = {0}, b1 = {0}, b2 = {0}, b3 = {0};
            for (int64_t k = 0; k < K8; k += 8) {
                v8f va = *(const v8f *)(xa + k), vb = *(const v8f *)(xb + k);
                KEEP_IN_REGISTERS(va, vb);
                v8f w = *(const v8f *)(w0 + k);
                a0 += w * va; b0 += w * vb;
                w = *(const v8f *)(w1 + k);
                a1 += w * va; b1 += w * vb;
                w = *(const v8f *)(w2 + k);
                a2 += w * va; b2 += w * vb;
                w = *(const v8f *)(w3 + k);
                a3 += w * va; b3 += w * vb;
            }
            float *ya = y + b * ldy + n, *yb = ya + ldy;
            ya[0] = hsum(a0) + dot_tail(w0, xa, K8, K);
            ya[1] = hsum(a1) + dot_tail(w1, xa, K8, K);
            ya[2] = hsum(a2) + dot_tail(w2, xa, K8, K);
            ya[3] = hsum(a3) + dot_tail(w3, xa, K8, K);
            yb[0] = hsum(b0) + dot_tail(w0, xb, K8, K);
            yb[1] = hsum(b1) + dot_tail(w1, xb, K8, K);
            yb[2] = hsum(b2) + dot_tail(w2, xb, K8, K);
            yb[3] = hsum(b3) + dot_tail(w3, xb, K8, K);
        }
        for (; b < B; b++) {
            const float *xa = x + b * K;
            v8f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
            for (int64_t k = 0; k < K8; k += 8) {
                const v8f va = *(const v8f *)(xa + k);
                a0 += *(const v8f *)(w0 + k) * va;
                a1 += *(const v8f *)(w1 + k) * va;
                a2 += *(const v8f *)(w2 + k) * va;
                a3 += *(const v8f *)(w3 + k) * va;
            }
            float *ya = y + b * ldy + n;
            ya[0] = hsum(a0) + dot_tail(w0, xa, K8, K);
            ya[1] = hsum(a1) + dot_tail(w1, xa, K8, K);
            ya[2] = hsum(a2) + dot_tail(w2, xa, K8, K);
            ya[3] = hsum(a3) + dot_tail(w3, xa, K8, K);
        }
    }
    for (; n < N; n++) { /* N % 4 leftover rows */
        const float *w0 = W + n * K;
        for (int64_t b = 0; b < B; b++) {
            const float *xa = x + b * K;
            v8f a0 = {0};
            for (int64_t k = 0; k < K8; k += 8) a0 += *(const v8f *)(w0 + k) * *(const v8f *)(xa + k);
            y[b * ldy + n] = hsum(a0) + dot_tail(w0, xa, K8, K);
        }
    }
}

static inline float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }
static inline float siluf(float x) { return x / (1.0f + expf(-x)); }

/* RMSNorm of n floats (layers.RMSNorm): x · rsqrt(mean(x²) + eps) · (w + offset). */
static void rmsnorm(const float *x, const float *w, int64_t n, float eps, float offset,
                    float *out) {
    float ss = 0.0f;
    for (int64_t i = 0; i < n; i++) ss += x[i] * x[i];
    const float r = 1.0f / sqrtf(ss / (float)n + eps);
    for (int64_t i = 0; i < n; i++) out[i] = x[i] * r * (w[i] + offset);
}

/* layers._l2norm: eps == 0 -> x / max(|x|, 1e-12) (F.normalize); else x · rsqrt(|x|² + eps). */
static void l2norm(float *x, int64_t n, float eps, float scale) {
    float ss = 0.0f;
    for (int64_t i = 0; i < n; i++) ss += x[i] * x[i];
    if (eps == 0.0f) {
        float norm = sqrtf(ss);
        norm = norm > 1e-12f ? norm : 1e-12f;
        for (int64_t i = 0; i < n; i++) x[i] = x[i] / norm * scale;
    } else {
        const float r = 1.0f / sqrtf(ss + eps);
        for (int64_t i = 0; i < n; i++) x[i] = x[i] * r * scale;
    }
}

/* Rotate-half RoPE on the first rope_dim dims of one head (ops/rope.py apply_rope). */
static void rope(float *x, int64_t rope_dim, const float *inv_freq, int64_t pos) {
    const int64_t half = rope_dim / 2;
    for (int64_t i = 0; i < half; i++) {
        const float angle = (float)pos * inv_freq[i], c = cosf(angle), s = sinf(angle);
        const float x1 = x[i], x2 = x[half + i];
        x[i] = x1 * c - x2 * s;
        x[half + i] = x2 * c + x1 * s;
    }
}

/* Scratch for one step, carved from one allocation. */
typedef struct {
    float *x, *h, *proj, *mix, *tmp, *q, *k, *beta, *g, *y;
} Scratch;

/* Gated DeltaNet mixer (layers.GatedDeltaNet.decode): h [B, d] -> tmp [B, d]; updates the conv and
 * recurrent states of the batch's slots in place. */
static int gdn_layer(const ModelDims *m, const LayerWeights *L, float *rec, float *conv,
                     const int64_t *slots, int64_t B, Scratch *s) {
    const int64_t d = m->d_model, C = m->conv_dim, K = m->conv_k, Hk = m->gdn_hk, Hv = m->gdn_hv;
    const int64_t dk = m->gdn_dk, dv = m->gdn_dv, nk = Hk * dk, group = Hv / Hk;
    const int64_t width = C + Hv * dv + 2 * Hv; /* proj row: [qkv | z | b | a] */
    linear(s->h, B, d, L->in_qkv, C, s->proj, width);
    linear(s->h, B, d, L->in_z, Hv * dv, s->proj + C, width);
    linear(s->h, B, d, L->in_b, Hv, s->proj + C + Hv * dv, width);
    linear(s->h, B, d, L->in_a, Hv, s->proj + C + Hv * dv + Hv, width);
    const float qscale = 1.0f / sqrtf((float)dk);
    for (int64_t b = 0; b < B; b++) {
        const float *row = s->proj + b * width;
        float *st = conv + slots[b] * C * (K - 1), *y = s->y;
        /* Depthwise causal conv over [state, x] (conv.causal_conv_update), then shift. */
        for (int64_t c = 0; c < C; c++) {
            const float *w = L->conv_w + c * K;
            float *sc = st + c * (K - 1);
            float acc = 0.0f;
            for (int64_t j = 0; j < K - 1; j++) acc += sc[j] * w[j];
            acc += row[c] * w[K - 1];
            for (int64_t j = 0; j + 1 < K - 1; j++) sc[j] = sc[j + 1];
            if (K > 1) sc[K - 2] = row[c];
            y[c] = siluf(acc);
        }
        for (int64_t h = 0; h < Hk; h++) {
            l2norm(y + h * dk, dk, (float)m->qk_norm_eps, qscale);
            l2norm(y + nk + h * dk, dk, (float)m->qk_norm_eps, 1.0f);
        }
        /* GVA: value head h reads key head h / group. */
        for (int64_t h = 0; h < Hv; h++) {
            memcpy(s->q + (b * Hv + h) * dk, y + (h / group) * dk, sizeof(float) * dk);
            memcpy(s->k + (b * Hv + h) * dk, y + nk + (h / group) * dk, sizeof(float) * dk);
            const float a = row[C + Hv * dv + Hv + h] + L->dt_bias[h];
            const float softplus = a > 20.0f ? a : log1pf(expf(a));
            s->beta[b * Hv + h] = sigmoidf(row[C + Hv * dv + h]);
            s->g[b * Hv + h] = -expf(L->a_log[h]) * softplus;
        }
        memcpy(s->mix + b * Hv * dv, y + 2 * nk, sizeof(float) * Hv * dv); /* v */
    }
    /* s->mix holds v [B, Hv, dv]; the step writes o over s->tmp (not aliasing v). */
    int rc = gdn_decode_step_f32(s->q, s->k, s->mix, s->beta, s->g, rec, slots, B, Hv, dk, dv,
                                 s->tmp);
    if (rc) return rc;
    for (int64_t b = 0; b < B; b++) {
        const float *z = s->proj + b * width + C;
        for (int64_t h = 0; h < Hv; h++) {
            float *o = s->tmp + (b * Hv + h) * dv;
            rmsnorm(o, L->out_norm, dv, (float)m->rms_eps, 0.0f, o);
            for (int64_t e = 0; e < dv; e++) o[e] *= siluf(z[h * dv + e]);
        }
    }
    linear(s->tmp, B, Hv * dv, L->out_proj, d, s->mix, d);
    memcpy(s->tmp, s->mix, sizeof(float) * B * d);
    return 0;
}

/* Full attention mixer (layers.FullAttention.decode): h [B, d] -> tmp [B, d]; writes the new K/V
 * rows into the layer's cache before attending. */
static int attention_layer(const ModelDims *m, const LayerWeights *L, float *kv,
                           const int64_t *positions, const int64_t *kv_rows,
                           const int64_t *tables, int64_t table_stride, const int64_t *lengths,
                           int64_t block_size, int64_t B, Scratch *s) {
    const int64_t d = m->d_model, Hq = m->hq, Hkv = m->hkv, hd = m->hd;
    const int64_t qw = Hq * hd * (m->attn_gate ? 2 : 1), width = qw + 2 * Hkv * hd;
    const float eps = (float)m->rms_eps, off = (float)m->norm_offset;
    linear(s->h, B, d, L->q_proj, qw, s->proj, width);
    linear(s->h, B, d, L->k_proj, Hkv * hd, s->proj + qw, width);
    linear(s->h, B, d, L->v_proj, Hkv * hd, s->proj + qw + Hkv * hd, width);
    for (int64_t b = 0; b < B; b++) {
        const float *row = s->proj + b * width;
        float *q = s->q + b * Hq * hd, *dst = kv + kv_rows[b] * 2 * Hkv * hd;
        for (int64_t h = 0; h < Hq; h++) {
            rmsnorm(row + h * hd, L->q_norm, hd, eps, off, q + h * hd);
            rope(q + h * hd, m->rope_dim, m->rope_inv_freq, positions[b]);
        }
        for (int64_t h = 0; h < Hkv; h++) {
            rmsnorm(row + qw + h * hd, L->k_norm, hd, eps, off, dst + h * hd);
            rope(dst + h * hd, m->rope_dim, m->rope_inv_freq, positions[b]);
        }
        memcpy(dst + Hkv * hd, row + qw + Hkv * hd, sizeof(float) * Hkv * hd);
    }
    int rc = paged_decode_attention_f32(s->q, kv, tables, table_stride, lengths, B, Hq, Hkv, hd,
                                        block_size, 1.0f / sqrtf((float)hd), s->mix);
    if (rc) return rc;
    if (m->attn_gate)
        for (int64_t b = 0; b < B; b++) {
            const float *gate = s->proj + b * width + Hq * hd;
            float *o = s->mix + b * Hq * hd;
            for (int64_t i = 0; i < Hq * hd; i++) o[i] *= sigmoidf(gate[i]);
        }
    linear(s->mix, B, Hq * hd, L->o_proj, d, s->tmp, d);
    return 0;
}

/* SwiGLU MLP (layers.MLP) on h [B, d] -> tmp [B, d]. */
static void mlp(const ModelDims *m, const LayerWeights *L, int64_t B, Scratch *s) {
    const int64_t d = m->d_model, F = m->ffn;
    linear(s->h, B, d, L->gate_up, 2 * F, s->proj, 2 * F);
    for (int64_t b = 0; b < B; b++) {
        const float *gu = s->proj + b * 2 * F;
        float *act = s->mix + b * F;
        for (int64_t f = 0; f < F; f++) act[f] = siluf(gu[f]) * gu[F + f];
    }
    linear(s->mix, B, F, L->down, d, s->tmp, d);
}

/* One decode step for B requests (HybridModel.decode). layer_caches[2·i], [2·i+1]: layer i's
 * (recurrent, conv) state tensors for a GDN layer, (kv, unused) for a full layer. Addresses as in
 * prfaas/model/decode_batch.py. logits [B, vocab] (mask added). Returns 0; -1 out of memory;
 * -2 an address outside the cache (nothing written). */
int fused_decode_step_f32(const ModelDims *m, const LayerWeights *layers,
                          float *const *layer_caches, int64_t num_slots, int64_t num_blocks,
                          int64_t block_size, const int64_t *tokens, const int64_t *positions,
                          const int64_t *slots, const int64_t *kv_rows, const int64_t *tables,
                          int64_t table_stride, const int64_t *lengths, int64_t B,
                          float *logits) {
    const int64_t d = m->d_model;
    for (int64_t b = 0; b < B; b++) {
        if (tokens[b] < 0 || tokens[b] >= m->vocab || slots[b] < 0 || slots[b] >= num_slots)
            return -2;
        for (int64_t c = 0; c < b; c++)
            if (slots[c] == slots[b]) return -2;
        if (table_stride) {
            const int64_t need = (lengths[b] + block_size - 1) / block_size;
            if (lengths[b] < 1 || need > table_stride || kv_rows[b] < 0 ||
                kv_rows[b] >= num_blocks * block_size)
                return -2;
            for (int64_t j = 0; j < need; j++)
                if (tables[b * table_stride + j] < 0 || tables[b * table_stride + j] >= num_blocks)
                    return -2;
        }
    }
    const int64_t C = m->conv_dim, Hv = m->gdn_hv, dv = m->gdn_dv, dk = m->gdn_dk;
    const int64_t qw = m->hq * m->hd * 2, kvw = 2 * m->hkv * m->hd;
    int64_t proj = C + Hv * dv + 2 * Hv;
    if (qw + kvw > proj) proj = qw + kvw;
    if (2 * m->ffn > proj) proj = 2 * m->ffn;
    int64_t mix = Hv * dv > m->hq * m->hd ? Hv * dv : m->hq * m->hd;
    if (m->ffn > mix) mix = m->ffn;
    if (d > mix) mix = d;
    int64_t head = Hv * dk > m->hq * m->hd ? Hv * dk : m->hq * m->hd;
    int64_t tmp = Hv * dv > d ? Hv * dv : d;
    const int64_t total = B * (2 * d + proj + mix + tmp + 2 * head + 2 * Hv) + C;
    float *buf = malloc(sizeof(float) * total);
    if (!buf) return -1;
    Scratch s;
    s.x = buf;
    s.h = s.x + B * d;
    s.proj = s.h + B * d;
    s.mix = s.proj + B * proj;
    s.tmp = s.mix + B * mix;
    s.q = s.tmp + B * tmp;
    s.k = s.q + B * head;
    s.beta = s.k + B * head;
    s.g = s.beta + B * Hv;
    s.y = s.g + B * Hv;
    for (int64_t b = 0; b < B; b++) memcpy(s.x + b * d, m->embed + tokens[b] * d, sizeof(float) * d);
    const float eps = (float)m->rms_eps, off = (float)m->norm_offset;
    int rc = 0;
    for (int64_t i = 0; i < m->n_layers && !rc; i++) {
        const LayerWeights *L = layers + i;
        for (int64_t b = 0; b < B; b++) rmsnorm(s.x + b * d, L->mixer_norm, d, eps, off, s.h + b * d);
        if (L->kind == 0)
            rc = gdn_layer(m, L, layer_caches[2 * i], layer_caches[2 * i + 1], slots, B, &s);
        else
            rc = attention_layer(m, L, layer_caches[2 * i], positions, kv_rows, tables,
                                 table_stride, lengths, block_size, B, &s);
        if (rc) break;
        for (int64_t j = 0; j < B * d; j++) s.x[j] += s.tmp[j];
        for (int64_t b = 0; b < B; b++) rmsnorm(s.x + b * d, L->mlp_norm, d, eps, off, s.h + b * d);
        mlp(m, L, B, &s);
        for (int64_t j = 0; j < B * d; j++) s.x[j] += s.tmp[j];
    }
    if (!rc) {
        for (int64_t b = 0; b < B; b++) rmsnorm(s.x + b * d, m->final_norm, d, eps, off, s.h + b * d);
        linear(s.h, B, d, m->lm_head, m->vocab, logits, m->vocab);
        for (int64_t b = 0; b < B; b++)
            for (int64_t v = 0; v < m->vocab; v++) logits[b * m->vocab + v] += m->logit_mask[v];
    }
    free(buf);
    return rc;
}

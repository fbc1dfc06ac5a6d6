/* One whole fp32 decode step of the hybrid model in C (built with decode_kernels.c by loader.py;
 * driven by prfaas/model/fused_decode.py).
 *
 * Why: at 4K context a batch-1 step must read ~37 MB (weights 28 MB, KV 8 MB), ~2 ms of memory
 * bandwidth, but the layer-by-layer torch path issued ~700 small ops (~9 ms of dispatch) and its
 * matrix-vector products read weights at ~8 GB/s. Here the step is one call: every weight matrix is
 * streamed once per step whatever the batch (packed in column panels, each reused by the whole batch
 * while it is in cache), and the elementwise work between the products runs on rows in cache.
 * Oracle: HybridModel.decode's torch path (PRFAAS_NATIVE_KERNELS=0); tests compare the two.
 *
 * Every (weight row, batch row) dot product is one FMA chain over k in order in every kernel
 * variant: a request's logits do not depend on the batch it rides in.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int paged_decode_attention_f32(const float *q, const float *kv, const int64_t *tables,
                               int64_t table_stride, const int64_t *lengths, int64_t B, int64_t Hq,
                               int64_t Hkv, int64_t d, int64_t block_size, float scale,
                               float *out);
void sigmoid_f32(const float *x, float *y, int64_t n, int silu);
int gdn_decode_step_f32(const float *q, const float *k, const float *v, const float *beta,
                        const float *g, float *state, const int64_t *slots, int64_t B, int64_t H,
                        int64_t dk, int64_t dv, float *out);

/* Shapes and shared tensors of the model (fused_decode.py fills it; field order is the contract);
 * lm_head is packed like the layers' projections. */
typedef struct {
    int64_t d_model, vocab, ffn, n_layers;
    int64_t conv_dim, conv_k, gdn_hk, gdn_hv, gdn_dk, gdn_dv;
    int64_t hq, hkv, hd, rope_dim, attn_gate;
    double rms_eps, norm_offset, qk_norm_eps;
    const float *embed, *final_norm, *lm_head, *logit_mask, *rope_inv_freq;
} ModelDims;

/* One layer's weights; kind 0 = gated DeltaNet, 1 = full attention; the other kind's pointers are
 * NULL. The projections are packed (pack_panels in fused_decode.py; see linear below), those that
 * read the same input concatenated along N: in_proj = [in_qkv; in_z; in_b; in_a], qkv_proj =
 * [q_proj; k_proj; v_proj]. */
typedef struct {
    int64_t kind;
    const float *mixer_norm, *mlp_norm, *gate_up, *down;
    const float *in_proj, *conv_w, *a_log, *dt_bias, *out_norm, *out_proj;
    const float *qkv_proj, *q_norm, *k_norm, *o_proj;
} LayerWeights;

/* Projections. Every weight matrix W [N, K] (nn.Linear layout) is packed by fused_decode.py into
 * panels of PANEL output columns, each [K][PANEL] contiguous (pack_panels; the last panel's missing
 * columns are zeros): a step reads each panel once from memory in order, and a tile of up to 8
 * batch rows x 32 columns accumulates in 16 registers, one broadcast input times two weight
 * vectors per k. The older row-major kernel (4 weight rows x 2 requests, dot products across k)
 * ran at ~30-55 GFLOP/s at batch 8-32; this one at ~60-75 in a C harness (CPU time), where at
 * batch 32 the projections are compute-bound (16 FLOP per weight byte).
 *
 * Every output is one FMA chain over k in order, from 0: a request's logits do not depend on the
 * batch it rides in or on its place in it (MR and NP below change only which outputs share a
 * pass). */
#define PANEL 32
typedef float v16p __attribute__((vector_size(64), aligned(4), may_alias));

/* y[r, n0 + j] for r < MR, j < NP·PANEL (columns >= N dropped) from x [MR, K] and the NP panels at
 * P (consecutive). MR and NP are constants in each inlined copy. */
static inline __attribute__((always_inline)) void panel_tile(const float *x, int64_t K,
                                                             const float *P, int64_t n0, int64_t N,
                                                             float *y, int64_t ldy, const int MR,
                                                             const int NP) {
    v16p acc[8][8];
    for (int r = 0; r < MR; r++)
        for (int j = 0; j < 2 * NP; j++) acc[r][j] = (v16p){0};
    for (int64_t k = 0; k < K; k++) {
        v16p w[8];
        for (int q = 0; q < NP; q++) {
            w[2 * q] = *(const v16p *)(P + (q * K + k) * PANEL);
            w[2 * q + 1] = *(const v16p *)(P + (q * K + k) * PANEL + 16);
        }
        for (int r = 0; r < MR; r++) {
            const float xv = x[r * K + k];
            for (int j = 0; j < 2 * NP; j++) acc[r][j] += xv * w[j];
        }
    }
    const int64_t left = N - n0;
    for (int r = 0; r < MR; r++) {
        float *yr = y + r * ldy + n0;
        for (int j = 0; j < 2 * NP; j++) {
            if (left >= 16 * (j + 1))
                *(v16p *)(yr + 16 * j) = acc[r][j];
            else
                for (int i = 0; 16 * j + i < left; i++) yr[16 * j + i] = acc[r][j][i];
        }
    }
}

/* All panels for MR rows: NP panels per pass so that at least 8 accumulators are in flight (FMA
 * latency x units) when there are few rows. */
static inline __attribute__((always_inline)) void panel_rows(const float *x, int64_t K,
                                                             const float *P, int64_t N, float *y,
                                                             int64_t ldy, const int MR) {
    const int64_t panels = (N + PANEL - 1) / PANEL;
    int64_t p = 0;
    if (MR <= 2)
        for (; p + 4 <= panels; p += 4) panel_tile(x, K, P + p * K * PANEL, p * PANEL, N, y, ldy, MR, 4);
    if (MR <= 4)
        for (; p + 2 <= panels; p += 2) panel_tile(x, K, P + p * K * PANEL, p * PANEL, N, y, ldy, MR, 2);
    for (; p < panels; p++) panel_tile(x, K, P + p * K * PANEL, p * PANEL, N, y, ldy, MR, 1);
}

/* y[b, n] = x[b, :] · W[n, :] for b < B, n < N; x [B, K], W packed (pack_panels), y rows ldy apart.
 * Whole 8-row groups sweep each panel while it is in L2; then the remaining rows. */
static void linear(const float *x, int64_t B, int64_t K, const float *P, int64_t N, float *y,
                   int64_t ldy) {
    const int64_t panels = (N + PANEL - 1) / PANEL, full = B & ~(int64_t)7;
    for (int64_t p = 0; p < panels && full; p++)
        for (int64_t b = 0; b < full; b += 8)
            panel_tile(x + b * K, K, P + p * K * PANEL, p * PANEL, N, y + b * ldy, ldy, 8, 1);
    x += full * K;
    y += full * ldy;
    switch (B - full) {
#define ROWS(M) case M: panel_rows(x, K, P, N, y, ldy, M); break;
    ROWS(1) ROWS(2) ROWS(3) ROWS(4) ROWS(5) ROWS(6) ROWS(7)
#undef ROWS
    }
}

static inline float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

/* RMSNorm of n floats (layers.RMSNorm): x · rsqrt(mean(x²) + eps) · (w + offset). */
static void rmsnorm(const float *x, const float *w, int64_t n, float eps, float offset,
                    float *out) {
    float ss = 0.0f;
#pragma omp simd reduction(+ : ss) /* vector partial sums: a scalar chain was ~4 cycles/element */
    for (int64_t i = 0; i < n; i++) ss += x[i] * x[i];
    const float r = 1.0f / sqrtf(ss / (float)n + eps);
    for (int64_t i = 0; i < n; i++) out[i] = x[i] * r * (w[i] + offset);
}

/* layers._l2norm: eps == 0 -> x / max(|x|, 1e-12) (F.normalize); else x · rsqrt(|x|² + eps). */
static void l2norm(float *x, int64_t n, float eps, float scale) {
    float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
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

/* cos and sin of a position's rotary angles (ops/rope.py apply_rope): cs[2·i], cs[2·i + 1]. */
static void rope_angles(int64_t rope_dim, const float *inv_freq, int64_t pos, float *cs) {
    for (int64_t i = 0; i < rope_dim / 2; i++) {
        const float angle = (float)pos * inv_freq[i];
        cs[2 * i] = cosf(angle);
        cs[2 * i + 1] = sinf(angle);
    }
}

/* Rotate-half RoPE on the first rope_dim dims of one head, angles from rope_angles. */
static void rope(float *x, int64_t rope_dim, const float *cs) {
    const int64_t half = rope_dim / 2;
    for (int64_t i = 0; i < half; i++) {
        const float c = cs[2 * i], s = cs[2 * i + 1];
        const float x1 = x[i], x2 = x[half + i];
        x[i] = x1 * c - x2 * s;
        x[half + i] = x2 * c + x1 * s;
    }
}

/* Scratch for one step, carved from one allocation. */
typedef struct {
    float *x, *h, *proj, *mix, *tmp, *q, *k, *beta, *g, *y;
    float *rope; /* [B, rope_dim]: each request's rope_angles, shared by heads and layers */
} Scratch;

/* Gated DeltaNet mixer (layers.GatedDeltaNet.decode): h [B, d] -> tmp [B, d]; updates the conv and
 * recurrent states of the batch's slots in place. */
static int gdn_layer(const ModelDims *m, const LayerWeights *L, float *rec, float *conv,
                     const int64_t *slots, int64_t B, Scratch *s) {
    const int64_t d = m->d_model, C = m->conv_dim, K = m->conv_k, Hk = m->gdn_hk, Hv = m->gdn_hv;
    const int64_t dk = m->gdn_dk, dv = m->gdn_dv, nk = Hk * dk, group = Hv / Hk;
    const int64_t width = C + Hv * dv + 2 * Hv; /* proj row: [qkv | z | b | a] */
    linear(s->h, B, d, L->in_proj, width, s->proj, width);
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
            y[c] = acc;
        }
        sigmoid_f32(y, y, C, 1);
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
        float *z = s->proj + b * width + C;
        sigmoid_f32(z, z, Hv * dv, 1); /* silu(z) over z: the row is not read again */
        for (int64_t h = 0; h < Hv; h++) {
            float *o = s->tmp + (b * Hv + h) * dv;
            rmsnorm(o, L->out_norm, dv, (float)m->rms_eps, 0.0f, o);
            for (int64_t e = 0; e < dv; e++) o[e] *= z[h * dv + e];
        }
    }
    linear(s->tmp, B, Hv * dv, L->out_proj, d, s->mix, d);
    memcpy(s->tmp, s->mix, sizeof(float) * B * d);
    return 0;
}

/* Full attention mixer (layers.FullAttention.decode): h [B, d] -> tmp [B, d]; writes the new K/V
 * rows into the layer's cache before attending. */
static int attention_layer(const ModelDims *m, const LayerWeights *L, float *kv,
                           const int64_t *kv_rows, const int64_t *tables, int64_t table_stride,
                           const int64_t *lengths, int64_t block_size, int64_t B, Scratch *s) {
    const int64_t d = m->d_model, Hq = m->hq, Hkv = m->hkv, hd = m->hd;
    const int64_t qw = Hq * hd * (m->attn_gate ? 2 : 1), width = qw + 2 * Hkv * hd;
    const float eps = (float)m->rms_eps, off = (float)m->norm_offset;
    linear(s->h, B, d, L->qkv_proj, width, s->proj, width);
    for (int64_t b = 0; b < B; b++) {
        const float *row = s->proj + b * width;
        float *q = s->q + b * Hq * hd, *dst = kv + kv_rows[b] * 2 * Hkv * hd;
        for (int64_t h = 0; h < Hq; h++) {
            rmsnorm(row + h * hd, L->q_norm, hd, eps, off, q + h * hd);
            rope(q + h * hd, m->rope_dim, s->rope + b * m->rope_dim);
        }
        for (int64_t h = 0; h < Hkv; h++) {
            rmsnorm(row + qw + h * hd, L->k_norm, hd, eps, off, dst + h * hd);
            rope(dst + h * hd, m->rope_dim, s->rope + b * m->rope_dim);
        }
        memcpy(dst + Hkv * hd, row + qw + Hkv * hd, sizeof(float) * Hkv * hd);
    }
    int rc = paged_decode_attention_f32(s->q, kv, tables, table_stride, lengths, B, Hq, Hkv, hd,
                                        block_size, 1.0f / sqrtf((float)hd), s->mix);
    if (rc) return rc;
    if (m->attn_gate)
        for (int64_t b = 0; b < B; b++) {
            float *gate = s->proj + b * width + Hq * hd;
            float *o = s->mix + b * Hq * hd;
            sigmoid_f32(gate, gate, Hq * hd, 0); /* over the gate: not read again */
            for (int64_t i = 0; i < Hq * hd; i++) o[i] *= gate[i];
        }
    linear(s->mix, B, Hq * hd, L->o_proj, d, s->tmp, d);
    return 0;
}

/* SwiGLU MLP (layers.MLP) on h [B, d] -> tmp [B, d]. */
static void mlp(const ModelDims *m, const LayerWeights *L, int64_t B, Scratch *s) {
    const int64_t d = m->d_model, F = m->ffn;
    linear(s->h, B, d, L->gate_up, 2 * F, s->proj, 2 * F);
    for (int64_t b = 0; b < B; b++) {
        float *gu = s->proj + b * 2 * F;
        float *act = s->mix + b * F;
        sigmoid_f32(gu, gu, F, 1); /* silu(gate) over the gate half */
        for (int64_t f = 0; f < F; f++) act[f] = gu[f] * gu[F + f];
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
    const int64_t total = B * (2 * d + proj + mix + tmp + 2 * head + 2 * Hv + m->rope_dim) + C;
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
    s.rope = s.y + C;
    for (int64_t b = 0; b < B; b++)
        rope_angles(m->rope_dim, m->rope_inv_freq, positions[b], s.rope + b * m->rope_dim);
    for (int64_t b = 0; b < B; b++) memcpy(s.x + b * d, m->embed + tokens[b] * d, sizeof(float) * d);
    const float eps = (float)m->rms_eps, off = (float)m->norm_offset;
    int rc = 0;
    for (int64_t i = 0; i < m->n_layers && !rc; i++) {
        const LayerWeights *L = layers + i;
        for (int64_t b = 0; b < B; b++) rmsnorm(s.x + b * d, L->mixer_norm, d, eps, off, s.h + b * d);
        if (L->kind == 0)
            rc = gdn_layer(m, L, layer_caches[2 * i], layer_caches[2 * i + 1], slots, B, &s);
        else
            rc = attention_layer(m, L, layer_caches[2 * i], kv_rows, tables, table_stride,
                                 lengths, block_size, B, &s);
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

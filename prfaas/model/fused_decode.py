"""`FusedDecode`: a whole fp32 CPU decode step as one native call (ops/native/fused_decode.c).

Owns the C-side description of one `HybridModel` (shapes and weight pointers, built once) and turns
a step's cache tensors and `DecodeBatch` into the call. `HybridModel.decode` uses it when
`FusedDecode.applies(model)` (fp32 weights on CPU, the kernels built);
the layer-by-layer torch path stays the oracle and the fallback (PRFAAS_NATIVE_KERNELS=0, CUDA,
bf16). The C step is single-threaded: at decode's batch sizes it reads the weights once per
step at the memory bandwidth, which torch's threaded GEMMs do not reach at batch 1-32 either.

The projections (and the LM head) are packed copies (`pack_panels`: column panels the C kernel
streams in order, those reading the same input concatenated), made when the plan is built: fp32 CPU
models hold their matmul weights twice. The other pointers are the model's parameters. A plan is
rebuilt when any parameter's storage moved (`.to()`, a reassigned tensor) or was written in place
(its version counter moved: `load_state_dict`, `copy_`).
"""

from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from prfaas.model.ops.native.loader import library

if TYPE_CHECKING:
    from prfaas.model.cache import HybridCache
    from prfaas.model.decode_batch import DecodeBatch
    from prfaas.model.hybrid import HybridModel

_P = ctypes.c_void_p


class _ModelDims(ctypes.Structure):
    """Mirror of `ModelDims` in fused_decode.c (field order is the contract)."""

    _fields_ = (
        [
            (name, ctypes.c_int64)
            for name in (
                "d_model",
                "vocab",
                "ffn",
                "n_layers",
                "conv_dim",
                "conv_k",
                "gdn_hk",
                "gdn_hv",
                "gdn_dk",
                "gdn_dv",
                "hq",
                "hkv",
                "hd",
                "rope_dim",
                "attn_gate",
            )  # fmt: skip
        ]
        + [(name, ctypes.c_double) for name in ("rms_eps", "norm_offset", "qk_norm_eps")]
        + [(name, _P) for name in ("embed", "final_norm", "lm_head", "logit_mask", "rope_inv_freq")]
    )


_LAYER_POINTERS = (
    "mixer_norm", "mlp_norm", "gate_up", "down",
    "in_proj", "conv_w", "a_log", "dt_bias", "out_norm", "out_proj",
    "qkv_proj", "q_norm", "k_norm", "o_proj",
)  # fmt: skip
PANEL = 32  # output columns per packed panel (PANEL in fused_decode.c)


class _LayerWeights(ctypes.Structure):
    """Mirror of `LayerWeights` in fused_decode.c."""

    _fields_ = [("kind", ctypes.c_int64)] + [(name, _P) for name in _LAYER_POINTERS]


def pack_panels(*weights: Tensor) -> Tensor:
    """nn.Linear weights [N_i, K] concatenated along N, as the C projections read them: panels of
    PANEL output columns, each [K, PANEL] contiguous ([ceil(N / PANEL), K, PANEL]; the last panel's
    missing columns are zeros)."""
    w = torch.cat([t.detach() for t in weights]) if len(weights) > 1 else weights[0].detach()
    n, k = w.shape
    padded = torch.zeros(-(-n // PANEL) * PANEL, k, dtype=w.dtype, device=w.device)
    padded[:n] = w
    return padded.view(-1, PANEL, k).transpose(1, 2).contiguous()


def _ptr(t: Tensor) -> int:
    if t.device.type != "cpu" or t.dtype != torch.float32 or not t.is_contiguous():
        raise ValueError(
            f"fused decode needs contiguous CPU fp32 weights, got {t.dtype} {t.device}"
        )
    return t.data_ptr()


class FusedDecode:
    """The native step for one model; build with `FusedDecode.for_model(model)` (cached on it)."""

    def __init__(self, model: HybridModel) -> None:
        from prfaas.model.layers import FullAttention, GatedDeltaNet

        c = model.config
        half = c.rope_dim // 2
        # Same fp32 inverse frequencies as ops/rope.py's apply_rope.
        self._inv_freq = c.rope_theta ** (-torch.arange(half, dtype=torch.float32) * 2 / c.rope_dim)
        self._params = list(model.parameters())
        # Inference tensors keep no version counter (nor are they written outside inference
        # mode): their storage alone is checked.
        self._versioned = [p for p in self._params if not p.is_inference()]
        self._storage = self._stamp()
        self._logit_mask = model.logit_mask.contiguous()
        self._packed: list[Tensor] = []  # kept alive: the C plan points into them
        self.dims = _ModelDims(
            c.d_model, c.vocab_size, c.ffn_dim, c.num_layers, c.conv_dim, c.conv_kernel,
            c.gdn_num_k_heads, c.gdn_num_v_heads, c.gdn_head_k_dim, c.gdn_head_v_dim,
            c.n_q_heads, c.n_kv_heads, c.head_dim, c.rope_dim, int(c.attn_output_gate),
            c.rms_eps, c.norm_offset, c.gdn_qk_norm_eps,
            _ptr(model.embed.weight), _ptr(model.final_norm.weight), self._pack(model.lm_head.weight),
            _ptr(self._logit_mask), _ptr(self._inv_freq),
        )  # fmt: skip
        self.layers = (_LayerWeights * c.num_layers)()
        for i, block in enumerate(model.blocks):
            w = self.layers[i]
            w.mixer_norm, w.mlp_norm = _ptr(block.mixer_norm.weight), _ptr(block.mlp_norm.weight)
            w.gate_up, w.down = (
                self._pack(block.mlp.gate_up.weight),
                self._pack(block.mlp.down.weight),
            )
            mixer = block.mixer
            if isinstance(mixer, GatedDeltaNet):
                w.kind = 0
                w.in_proj = self._pack(
                    mixer.in_qkv.weight, mixer.in_z.weight, mixer.in_b.weight, mixer.in_a.weight
                )
                w.conv_w, w.a_log = _ptr(mixer.conv_weight), _ptr(mixer.A_log)
                w.dt_bias, w.out_norm = _ptr(mixer.dt_bias), _ptr(mixer.out_norm.weight)
                w.out_proj = self._pack(mixer.out_proj.weight)
            else:
                assert isinstance(mixer, FullAttention)
                w.kind = 1
                w.qkv_proj = self._pack(
                    mixer.q_proj.weight, mixer.k_proj.weight, mixer.v_proj.weight
                )
                w.o_proj = self._pack(mixer.o_proj.weight)
                w.q_norm, w.k_norm = _ptr(mixer.q_norm.weight), _ptr(mixer.k_norm.weight)

    @staticmethod
    def applies(model: HybridModel) -> bool:
        """fp32 weights on CPU and the kernels built."""
        return (
            model.config.dtype == "float32" and model.device.type == "cpu" and library() is not None
        )

    @classmethod
    def for_model(cls, model: HybridModel) -> FusedDecode:
        """The model's plan, rebuilt when a parameter's storage moved since it was built."""
        plan: FusedDecode | None = getattr(model, "_fused_decode_plan", None)
        if plan is None or not plan._current():
            plan = cls(model)
            object.__setattr__(model, "_fused_decode_plan", plan)  # not an nn.Module attribute
        return plan

    def _pack(self, *weights: Tensor) -> int:
        for t in weights:
            _ptr(t)  # the same checks as the unpacked pointers
        self._packed.append(pack_panels(*weights))
        return self._packed[-1].data_ptr()

    def _stamp(self) -> tuple[list[int], list[int]]:
        # Checked every step: ~25 us for the small preset's 101 parameters (a tuple per parameter
        # cost ~60).
        return list(map(Tensor.data_ptr, self._params)), [p._version for p in self._versioned]

    def _current(self) -> bool:
        return self._stamp() == self._storage

    def step(self, tokens: Tensor, cache: HybridCache, batch: DecodeBatch) -> Tensor:
        """Logits [B, V] fp32 of one step; writes the new KV and the linear states in `cache`."""
        c_layers = self.dims.n_layers
        caches = (_P * (2 * c_layers))()
        for i in range(c_layers):
            j = cache.ordinal(i)
            if self.layers[i].kind == 0:
                caches[2 * i] = _ptr(cache.recurrent[j])
                caches[2 * i + 1] = _ptr(cache.conv[j])
            else:
                caches[2 * i] = _ptr(cache.kv[j])
        tokens = tokens.to(torch.int64).contiguous()
        B = int(tokens.shape[0])
        logits = torch.empty(B, self.dims.vocab, dtype=torch.float32)
        has_kv = bool(cache.kv)
        lib = library()
        assert lib is not None, "FusedDecode.applies() checked that the kernels are built"
        rc = lib.fused_decode_step_f32(
            ctypes.byref(self.dims), self.layers, caches, cache.num_slots,
            cache.num_blocks if has_kv else 0, cache.block_size, tokens.data_ptr(),
            batch.positions.data_ptr(), batch.slots.data_ptr(), batch.kv_rows.data_ptr(),
            batch.tables.data_ptr(), batch.tables.shape[1] if has_kv else 0,
            batch.lengths.data_ptr(), B, logits.data_ptr(),
        )  # fmt: skip
        if rc == -1:
            raise MemoryError("fused_decode_step_f32: allocation failed")
        if rc:
            raise ValueError("fused decode: a token, slot, block or KV row outside the cache")
        return logits

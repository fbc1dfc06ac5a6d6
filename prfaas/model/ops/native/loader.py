"""Builds decode_kernels.c and fused_decode.c into one shared library on first use and loads it
with ctypes.

No build step at install time and no torch headers: the files are plain C, compiled by the system's
`cc` in about a second into a per-user temp directory keyed by the source and flags, so workers on
the same host share one build. Where no compiler exists (or PRFAAS_NATIVE_KERNELS=0), `library()`
returns None and callers use the torch paths. -march=native is safe because the build is per host.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from importlib import resources
from pathlib import Path
from typing import Any

DISABLE_ENV = "PRFAAS_NATIVE_KERNELS"
FLAGS = ["-O3", "-march=native", "-fopenmp-simd", "-fno-math-errno", "-fPIC", "-shared"]

_lock = threading.Lock()
_loaded: ctypes.CDLL | None = None
_tried = False
_error: str | None = None

_i64, _f32, _ptr = ctypes.c_int64, ctypes.c_float, ctypes.c_void_p
# ctypes argtypes per symbol (elements: ctypes simple types; mypy cannot join the concatenations).
_SIGNATURES: dict[str, list[Any]] = {
    "exp_nonpositive_f32": [_ptr, _ptr, _i64],
    "sigmoid_f32": [_ptr, _ptr, _i64, ctypes.c_int],  # x, y, n, silu
    # q, kv, tables, table_stride, lengths, B, Hq, Hkv, d, block_size, scale, out
    "paged_decode_attention_f32": [_ptr, _ptr, _ptr, _i64, _ptr] + [_i64] * 5 + [_f32, _ptr],
    # q, k, v, beta, g, state, slots, B, H, dk, dv, out
    "gdn_decode_step_f32": [_ptr] * 7 + [_i64] * 4 + [_ptr],
    # enc, rows, e, row_bytes, lut, out (prfaas/model/kv_codec.py's decode)
    "kv_dequant_rows_f32": [_ptr, _i64, _i64, _i64, _ptr, _ptr],
    # dims, layers, layer_caches, num_slots, num_blocks, block_size, tokens, positions, slots,
    # kv_rows, tables, table_stride, lengths, B, logits (fused_decode.c; fused_step.py)
    "fused_decode_step_f32": [_ptr] * 3 + [_i64] * 3 + [_ptr] * 5 + [_i64, _ptr, _i64, _ptr],
}
_VOID = {"exp_nonpositive_f32", "sigmoid_f32"}  # no return value
SOURCES = ("decode_kernels.c", "fused_decode.c")


def _sources() -> dict[str, bytes]:
    pkg = resources.files("prfaas.model.ops.native")
    return {name: pkg.joinpath(name).read_bytes() for name in SOURCES}


def _build(sources: dict[str, bytes]) -> Path:
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise RuntimeError("no C compiler (cc/gcc) on PATH")
    digest = hashlib.sha256(" ".join([compiler, *FLAGS]).encode())
    for name, src in sources.items():
        digest.update(name.encode() + b"\0" + src)
    key = digest.hexdigest()[:16]
    out_dir = Path(tempfile.gettempdir()) / f"prfaas-native-{os.getuid()}"
    out_dir.mkdir(mode=0o700, exist_ok=True)
    target = out_dir / f"decode_kernels-{key}.so"
    if target.exists():
        return target
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        c_files = []
        for name, src in sources.items():
            c_files.append(Path(tmp) / name)
            c_files[-1].write_bytes(src)
        so_tmp = Path(tmp) / "out.so"
        subprocess.run(
            [compiler, *FLAGS, *map(str, c_files), "-o", str(so_tmp), "-lm"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        os.replace(so_tmp, target)  # atomic: concurrent builders all end with a whole file
    return target


def library() -> ctypes.CDLL | None:
    """The loaded kernels, or None (disabled, or the build failed: see `load_error()`)."""
    global _loaded, _tried, _error
    if os.environ.get(DISABLE_ENV, "1") == "0":
        return None
    if _tried:
        return _loaded
    with _lock:
        if not _tried:
            try:
                lib = ctypes.CDLL(str(_build(_sources())))
                for name, argtypes in _SIGNATURES.items():
                    fn = getattr(lib, name)
                    fn.argtypes = argtypes
                    fn.restype = None if name in _VOID else ctypes.c_int
                _loaded = lib
            except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
                _error = f"{type(exc).__name__}: {exc}"
            _tried = True
    return _loaded


def load_error() -> str | None:
    """Why `library()` is None after a failed build (None when it loaded or was disabled)."""
    return _error

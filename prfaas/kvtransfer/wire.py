"""KV transfer wire format, version 1 (also written down in docs/kv-wire-format.md, with the
buffer encodings a layout may declare: layout revision 2, `kvq1:` dtypes).

Every frame is an 8-byte header followed by `meta_len` bytes of kind-specific metadata; a CHUNK
frame is then followed by `length` payload bytes (declared in its metadata). All integers are
big-endian. `str` is a u16 length + UTF-8 bytes, `blob` is a u32 length + bytes.

Header (8 bytes): magic b"KV" | version u8 (=1) | kind u8 | meta_len u32 (<= MAX_META)

| kind | name        | direction | metadata                                                        |
|------|-------------|-----------|-----------------------------------------------------------------|
| 1    | HELLO       | s -> r    | flags u16 (bit0: TLS) | nonce 32s | session 16s | identity str   |
| 2    | CHALLENGE   | r -> s    | nonce 32s | mac 32s (HMAC-SHA256(secret, "r"+nonce_s+nonce_r)) | identity str |
| 3    | AUTH        | s -> r    | mac 32s (HMAC-SHA256(secret, "s"+nonce_r+nonce_s))              |
| 4    | WELCOME     | r -> s    | (empty)                                                         |
| 5    | OPEN        | s -> r    | tid str | n_layers u16 | per layer: n u16, n x (name str, dtype str, nbytes u64) | metadata blob |
| 6    | OPEN_OK     | r -> s    | tid str                                                         |
| 7    | CHUNK       | s -> r    | tid str | layer u16 | offset u64 | length u32 | xxh3_64 u64; then `length` payload bytes |
| 8    | LAYER_DONE  | s -> r    | tid str | layer u16 | nbytes u64                                |
| 9    | DONE        | s -> r    | tid str | digest u64 | total_bytes u64 | trailer blob           |
| 10   | ACK         | r -> s    | tid str (the receiver verified and completed the transfer)      |
| 11   | ABORT       | both      | tid str (empty: the whole connection) | reason str             |

The transfer digest is order-independent (chunks are striped over connections): the sum modulo
2**64 of xxh3_64(pack(">HQIQ", layer, offset, length, chunk_checksum)) over all chunks.

Caps (a frame that exceeds one is a protocol error and closes the connection): meta_len
<= MAX_META, tid <= MAX_TID bytes, identity/names/dtypes/reason <= MAX_NAME, layers <= MAX_LAYERS,
entries per layer <= MAX_ENTRIES, chunk length <= MAX_CHUNK, metadata/trailer <= MAX_BLOB.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

import xxhash

MAGIC = b"KV"
VERSION = 1
HEADER = struct.Struct(">2sBBI")
HEADER_SIZE = HEADER.size
NONCE_SIZE = 32
MAC_SIZE = 32
SESSION_SIZE = 16

MAX_META = 1 << 20
MAX_TID = 256
MAX_NAME = 4096
MAX_LAYERS = 4096
MAX_ENTRIES = 64
MAX_CHUNK = 64 << 20
MAX_BLOB = 256 << 10

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_CHUNK = struct.Struct(">HQIQ")
_LAYER_DONE = struct.Struct(">HQ")
_DONE = struct.Struct(">QQ")
_ENTRY = struct.Struct(">Q")


class Kind(enum.IntEnum):
    HELLO = 1
    CHALLENGE = 2
    AUTH = 3
    WELCOME = 4
    OPEN = 5
    OPEN_OK = 6
    CHUNK = 7
    LAYER_DONE = 8
    DONE = 9
    ACK = 10
    ABORT = 11


class WireError(ValueError):
    """A malformed, oversized or unexpected frame; the connection carrying it is closed."""


# One layer's declared layout: (name, dtype, nbytes) per buffer, e.g. ("k_block3", "bf16", 4096).
LayerLayout = list[tuple[str, str, int]]


def layer_nbytes(layer: LayerLayout) -> int:
    return sum(entry[2] for entry in layer)


@dataclass(frozen=True)
class Hello:
    flags: int
    nonce: bytes
    session: bytes
    identity: str


@dataclass(frozen=True)
class Challenge:
    nonce: bytes
    mac: bytes
    identity: str


@dataclass(frozen=True)
class Open:
    tid: str
    layout: list[LayerLayout]
    metadata: bytes


@dataclass(frozen=True)
class Chunk:
    tid: str
    layer: int
    offset: int
    length: int
    checksum: int


@dataclass(frozen=True)
class LayerDone:
    tid: str
    layer: int
    nbytes: int


@dataclass(frozen=True)
class Done:
    tid: str
    digest: int
    total_bytes: int
    trailer: bytes


@dataclass(frozen=True)
class Abort:
    tid: str
    reason: str


def checksum(parts: list[memoryview] | tuple[memoryview, ...]) -> int:
    """xxh3_64 of the concatenation of `parts` (no copy)."""
    h = xxhash.xxh3_64()
    for part in parts:
        h.update(part)
    return h.intdigest()


def digest_term(layer: int, offset: int, length: int, chunk_checksum: int) -> int:
    """One chunk's contribution to the order-independent transfer digest (summed mod 2**64)."""
    return xxhash.xxh3_64_intdigest(_CHUNK.pack(layer, offset, length, chunk_checksum))


def frame(kind: Kind, meta: bytes) -> bytes:
    if len(meta) > MAX_META:
        raise WireError(f"metadata of {len(meta)} bytes exceeds {MAX_META}")
    return HEADER.pack(MAGIC, VERSION, int(kind), len(meta)) + meta


def parse_header(data: bytes | bytearray | memoryview) -> tuple[Kind, int]:
    """Validate an 8-byte header; return (kind, meta_len)."""
    magic, version, kind, meta_len = HEADER.unpack(data)
    if magic != MAGIC:
        raise WireError(f"bad magic {bytes(magic)!r}")
    if version != VERSION:
        raise WireError(f"unsupported version {version}")
    try:
        k = Kind(kind)
    except ValueError:
        raise WireError(f"unknown frame kind {kind}") from None
    if meta_len > MAX_META:
        raise WireError(f"meta_len {meta_len} exceeds {MAX_META}")
    return k, meta_len


def _str(value: str, cap: int) -> bytes:
    raw = value.encode()
    if len(raw) > cap:
        raise WireError(f"string of {len(raw)} bytes exceeds {cap}")
    return _U16.pack(len(raw)) + raw


def _blob(value: bytes) -> bytes:
    if len(value) > MAX_BLOB:
        raise WireError(f"blob of {len(value)} bytes exceeds {MAX_BLOB}")
    return _U32.pack(len(value)) + bytes(value)


class _Reader:
    """Bounds-checked cursor over one frame's metadata."""

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self.data = memoryview(data)
        self.pos = 0

    def take(self, n: int) -> memoryview:
        if self.pos + n > len(self.data):
            raise WireError("truncated metadata")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, st: struct.Struct) -> tuple[int, ...]:
        return st.unpack(self.take(st.size))

    def str(self, cap: int) -> str:
        (n,) = self.unpack(_U16)
        if n > cap:
            raise WireError(f"string of {n} bytes exceeds {cap}")
        try:
            return bytes(self.take(n)).decode()
        except UnicodeDecodeError:
            raise WireError("string is not UTF-8") from None

    def blob(self) -> bytes:
        (n,) = self.unpack(_U32)
        if n > MAX_BLOB:
            raise WireError(f"blob of {n} bytes exceeds {MAX_BLOB}")
        return bytes(self.take(n))

    def end(self) -> None:
        if self.pos != len(self.data):
            raise WireError(f"{len(self.data) - self.pos} trailing metadata bytes")


def encode(msg: Hello | Challenge | Open | Chunk | LayerDone | Done | Abort) -> bytes:
    """Encode one message as a full frame (header + metadata; a CHUNK's payload is sent after)."""
    if isinstance(msg, Hello):
        meta = _U16.pack(msg.flags) + msg.nonce + msg.session + _str(msg.identity, MAX_NAME)
        return frame(Kind.HELLO, meta)
    if isinstance(msg, Challenge):
        return frame(Kind.CHALLENGE, msg.nonce + msg.mac + _str(msg.identity, MAX_NAME))
    if isinstance(msg, Open):
        if len(msg.layout) > MAX_LAYERS:
            raise WireError(f"{len(msg.layout)} layers exceed {MAX_LAYERS}")
        parts = [_str(msg.tid, MAX_TID), _U16.pack(len(msg.layout))]
        for layer in msg.layout:
            if len(layer) > MAX_ENTRIES:
                raise WireError(f"{len(layer)} entries exceed {MAX_ENTRIES}")
            parts.append(_U16.pack(len(layer)))
            for name, dtype, nbytes in layer:
                parts += [_str(name, MAX_NAME), _str(dtype, MAX_NAME), _ENTRY.pack(nbytes)]
        parts.append(_blob(msg.metadata))
        return frame(Kind.OPEN, b"".join(parts))
    if isinstance(msg, Chunk):
        if msg.length > MAX_CHUNK:
            raise WireError(f"chunk of {msg.length} bytes exceeds {MAX_CHUNK}")
        meta = _str(msg.tid, MAX_TID) + _CHUNK.pack(msg.layer, msg.offset, msg.length, msg.checksum)
        return frame(Kind.CHUNK, meta)
    if isinstance(msg, LayerDone):
        return frame(
            Kind.LAYER_DONE, _str(msg.tid, MAX_TID) + _LAYER_DONE.pack(msg.layer, msg.nbytes)
        )
    if isinstance(msg, Done):
        meta = _str(msg.tid, MAX_TID) + _DONE.pack(msg.digest, msg.total_bytes) + _blob(msg.trailer)
        return frame(Kind.DONE, meta)
    if isinstance(msg, Abort):
        return frame(Kind.ABORT, _str(msg.tid, MAX_TID) + _str(msg.reason[:1024], MAX_NAME))
    raise TypeError(f"cannot encode {type(msg).__name__}")


def encode_tid(kind: Kind, tid: str) -> bytes:
    """OPEN_OK / ACK frames, which carry only a transfer id."""
    return frame(kind, _str(tid, MAX_TID))


def decode(kind: Kind, meta: bytes | bytearray | memoryview) -> object:
    """Decode metadata of `kind`; raises WireError on anything malformed or over a cap."""
    r = _Reader(meta)
    out: object
    if kind == Kind.HELLO:
        (flags,) = r.unpack(_U16)
        out = Hello(flags, bytes(r.take(NONCE_SIZE)), bytes(r.take(SESSION_SIZE)), r.str(MAX_NAME))
    elif kind == Kind.CHALLENGE:
        out = Challenge(bytes(r.take(NONCE_SIZE)), bytes(r.take(MAC_SIZE)), r.str(MAX_NAME))
    elif kind == Kind.AUTH:
        out = bytes(r.take(MAC_SIZE))
    elif kind == Kind.WELCOME:
        out = None
    elif kind == Kind.OPEN:
        tid = r.str(MAX_TID)
        (n_layers,) = r.unpack(_U16)
        if n_layers > MAX_LAYERS:
            raise WireError(f"{n_layers} layers exceed {MAX_LAYERS}")
        layout: list[LayerLayout] = []
        for _ in range(n_layers):
            (n,) = r.unpack(_U16)
            if n > MAX_ENTRIES:
                raise WireError(f"{n} entries exceed {MAX_ENTRIES}")
            layout.append(
                [(r.str(MAX_NAME), r.str(MAX_NAME), r.unpack(_ENTRY)[0]) for _ in range(n)]
            )
        out = Open(tid, layout, r.blob())
    elif kind in (Kind.OPEN_OK, Kind.ACK):
        out = r.str(MAX_TID)
    elif kind == Kind.CHUNK:
        tid = r.str(MAX_TID)
        layer, offset, length, chk = r.unpack(_CHUNK)
        if length > MAX_CHUNK:
            raise WireError(f"chunk of {length} bytes exceeds {MAX_CHUNK}")
        out = Chunk(tid, layer, offset, length, chk)
    elif kind == Kind.LAYER_DONE:
        tid = r.str(MAX_TID)
        out = LayerDone(tid, *r.unpack(_LAYER_DONE))
    elif kind == Kind.DONE:
        tid = r.str(MAX_TID)
        digest, total = r.unpack(_DONE)
        out = Done(tid, digest, total, r.blob())
    elif kind == Kind.ABORT:
        out = Abort(r.str(MAX_TID), r.str(MAX_NAME))
    else:  # pragma: no cover - Kind is exhaustive
        raise WireError(f"unknown kind {kind}")
    r.end()
    return out

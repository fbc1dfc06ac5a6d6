"""Wire codec: round trips for every frame kind, golden bytes, caps."""

from __future__ import annotations

import pytest

from prfaas.kvtransfer import wire

MESSAGES = [
    wire.Hello(0, b"n" * 32, b"s" * 16, "prefill-0"),
    wire.Challenge(b"r" * 32, b"m" * 32, "pd-1"),
    wire.Open(
        "req-1", [[("k", "bf16", 4096), ("v", "bf16", 4096)], [("state", "fp32", 96)]], b"\x01"
    ),
    wire.Chunk("req-1", 3, 1 << 33, 65536, 0xDEADBEEFCAFEF00D),
    wire.LayerDone("req-1", 3, 8192),
    wire.Done("req-1", 12345, 8288, b"first_token=42"),
    wire.Abort("req-1", "client went away"),
]


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: type(m).__name__)
def test_round_trip(msg: object) -> None:
    data = wire.encode(msg)  # type: ignore[arg-type]
    kind, meta_len = wire.parse_header(data[: wire.HEADER_SIZE])
    assert meta_len == len(data) - wire.HEADER_SIZE
    assert wire.decode(kind, data[wire.HEADER_SIZE :]) == msg


def test_golden_bytes() -> None:
    # Changing these bytes is a wire-format change: bump wire.VERSION and docs/kv-wire-format.md.
    assert wire.encode(wire.Chunk("t", 1, 2, 3, 4)).hex() == (
        "4b5601070000001900017400010000000000000002000000030000000000000004"
    )
    assert wire.encode_tid(wire.Kind.ACK, "t").hex() == "4b56010a00000003000174"
    assert wire.encode(wire.Done("t", 5, 6, b"z")).hex() == (
        "4b5601090000001800017400000000000000050000000000000006000000017a"
    )


@pytest.mark.parametrize(
    "header",
    [
        b"XX\x01\x07\x00\x00\x00\x00",
        b"KV\x02\x07\x00\x00\x00\x00",
        b"KV\x01\x63\x00\x00\x00\x00",
        b"KV\x01\x07\xff\xff\xff\xff",
    ],
    ids=["magic", "version", "kind", "meta_len"],
)
def test_bad_headers_are_rejected(header: bytes) -> None:
    with pytest.raises(wire.WireError):
        wire.parse_header(header)


def test_caps_are_enforced_on_both_sides() -> None:
    with pytest.raises(wire.WireError):
        wire.encode(wire.Chunk("t", 0, 0, wire.MAX_CHUNK + 1, 0))
    with pytest.raises(wire.WireError):
        wire.encode(wire.Done("t", 0, 0, b"x" * (wire.MAX_BLOB + 1)))
    with pytest.raises(wire.WireError):
        wire.encode(wire.Open("x" * (wire.MAX_TID + 1), [], b""))
    huge_chunk = wire._str("t", 10) + wire._CHUNK.pack(0, 0, wire.MAX_CHUNK + 1, 0)
    with pytest.raises(wire.WireError):
        wire.decode(wire.Kind.CHUNK, huge_chunk)
    with pytest.raises(wire.WireError):
        wire.decode(wire.Kind.OPEN, wire._str("t", 10) + b"\xff\xff")


def test_digest_is_order_independent() -> None:
    terms = [wire.digest_term(i, i * 10, 10, i * 7) for i in range(5)]
    assert sum(terms) % (1 << 64) == sum(reversed(terms)) % (1 << 64)
    assert wire.digest_term(0, 0, 10, 1) != wire.digest_term(0, 10, 10, 1)

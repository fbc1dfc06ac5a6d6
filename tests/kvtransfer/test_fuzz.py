"""Property tests: hostile byte streams never crash the receiver, never grow its memory beyond the
caps, never touch a concurrent healthy transfer; chunks in any order assemble correctly."""

from __future__ import annotations

import asyncio
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prfaas.kvtransfer import wire
from prfaas.kvtransfer.base import TransferState
from prfaas.kvtransfer.receiver_protocol import ReceiverProtocol
from prfaas.kvtransfer.tcp_receiver import TcpReceiver

LAYOUT = [[("k", "bf16", 300)], [("s", "fp32", 200)]]
SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


class FakeTransport:
    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.sent.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def abort(self) -> None:
        self.closed = True


def feed(proto: ReceiverProtocol, data: bytes, step: int) -> int:
    """Push `data` through get_buffer/buffer_updated in pieces of at most `step` bytes; returns
    the largest buffer the protocol asked to fill (its memory per read)."""
    largest, pos = 0, 0
    while pos < len(data) and not proto.transport.is_closing():  # type: ignore[union-attr]
        buf = proto.get_buffer(-1)
        largest = max(largest, len(buf))
        n = min(len(buf), step, len(data) - pos)
        buf[:n] = data[pos : pos + n]
        proto.buffer_updated(n)
        pos += n
    return largest


def open_healthy(
    receiver: TcpReceiver, session: bytes
) -> tuple[object, list[bytearray], list[bytes]]:
    rng = random.Random(7)
    src = [rng.randbytes(300), rng.randbytes(200)]
    dst = [bytearray(300), bytearray(200)]
    handle = receiver.expect("healthy", LAYOUT, [[memoryview(d)] for d in dst], 30)
    handle.begin(LAYOUT, b"")
    receiver._owner["healthy"] = session
    return handle, dst, src


def chunk_frames(tid: str, src: list[bytes], pieces: list[tuple[int, int, int]]) -> bytes:
    out = []
    for layer, off, n in pieces:
        payload = src[layer][off : off + n]
        out.append(
            wire.encode(wire.Chunk(tid, layer, off, n, wire.checksum([memoryview(payload)])))
            + payload
        )
    return b"".join(out)


def pieces_of(src: list[bytes], cut: int) -> list[tuple[int, int, int]]:
    return [
        (layer, off, min(cut, len(s) - off))
        for layer, s in enumerate(src)
        for off in range(0, len(s), cut)
    ]


hostile = st.one_of(
    st.binary(max_size=400),
    st.builds(
        lambda tid, layer, off, n, chk, payload: (
            wire.encode(wire.Chunk(tid, layer, off, n, chk)) + payload
        ),
        st.sampled_from(["healthy", "other", ""]),
        st.integers(0, 65_535),
        st.integers(0, 2**64 - 1),
        st.integers(0, wire.MAX_CHUNK),
        st.integers(0, 2**64 - 1),
        st.binary(max_size=300),
    ),
    st.builds(
        lambda data, cut: data[:cut],
        st.sampled_from(
            [
                wire.encode(wire.Open("x", LAYOUT, b"m")),
                wire.encode(wire.Done("healthy", 1, 2, b"t")),
            ]
        ),
        st.integers(0, 60),
    ),
    st.builds(
        lambda k, n: wire.HEADER.pack(wire.MAGIC, wire.VERSION, k, n),
        st.integers(0, 255),
        st.integers(0, 2**32 - 1),
    ),
)


@SETTINGS
@given(frames=st.lists(hostile, max_size=6), step=st.integers(1, 4096), cut=st.integers(1, 300))
async def test_hostile_session_never_hurts_a_healthy_transfer(
    frames: list[bytes], step: int, cut: int
) -> None:
    receiver = TcpReceiver(secret=b"s")
    handle, dst, src = open_healthy(receiver, b"good")
    good, evil = ReceiverProtocol(receiver, b"good"), ReceiverProtocol(receiver, b"evil")
    good.connection_made(FakeTransport())  # type: ignore[arg-type]
    evil.connection_made(FakeTransport())  # type: ignore[arg-type]
    pieces = pieces_of(src, cut)
    healthy_bytes = chunk_frames("healthy", src, pieces)
    # Interleave: half the healthy stream, all hostile frames on the other session, the rest.
    half = len(healthy_bytes) // 2
    feed(good, healthy_bytes[:half], step)
    largest = feed(evil, b"".join(frames), step)
    feed(good, healthy_bytes[half:], step)
    digest = sum(
        wire.digest_term(la, o, n, wire.checksum([memoryview(src[la][o : o + n])]))
        for la, o, n in pieces
    )
    feed(good, wire.encode(wire.Done("healthy", digest % 2**64, 500, b"tok")), step)
    assert largest <= max(wire.MAX_META, 64 << 10)
    assert handle.state == TransferState.DONE, handle.error  # type: ignore[attr-defined]
    assert [bytes(d) for d in dst] == src
    await receiver.close()


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), cut=st.integers(1, 300), flip=st.booleans())
async def test_chunks_in_any_order_assemble_or_fail_on_bad_checksum(
    seed: int, cut: int, flip: bool
) -> None:
    receiver = TcpReceiver(secret=b"s")
    handle, dst, src = open_healthy(receiver, b"good")
    proto = ReceiverProtocol(receiver, b"good")
    proto.connection_made(FakeTransport())  # type: ignore[arg-type]
    pieces = pieces_of(src, cut)
    random.Random(seed).shuffle(pieces)
    data = bytearray(chunk_frames("healthy", src, pieces))
    if flip:
        data[-1] ^= 0xFF  # corrupt the last payload byte
    feed(proto, bytes(data), 1 << 20)
    digest = sum(
        wire.digest_term(la, o, n, wire.checksum([memoryview(src[la][o : o + n])]))
        for la, o, n in pieces
    )
    feed(proto, wire.encode(wire.Done("healthy", digest % 2**64, 500, b"")), 1 << 20)
    if flip:
        assert handle.state == TransferState.FAILED and handle.dest is None  # type: ignore[attr-defined]
    else:
        assert handle.state == TransferState.DONE  # type: ignore[attr-defined]
        assert [bytes(d) for d in dst] == src
    await receiver.close()
    await asyncio.sleep(0)


async def test_abort_in_the_same_read_as_its_open_aborts_the_transfer() -> None:
    receiver = TcpReceiver(secret=b"s")
    handle = receiver.expect(
        "x", LAYOUT, [[memoryview(bytearray(300))], [memoryview(bytearray(200))]], 30
    )
    proto = ReceiverProtocol(receiver, b"good")
    proto.connection_made(FakeTransport())  # type: ignore[arg-type]
    data = wire.encode(wire.Open("x", LAYOUT, b"")) + wire.encode(wire.Abort("x", "gone"))
    feed(proto, data, len(data))
    assert handle.state == TransferState.ABORTED
    await receiver.close()

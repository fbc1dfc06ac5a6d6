"""The one cache-event kind (prfaas/cache_event_kind.py) is the wire's CacheEvent.Kind."""

from __future__ import annotations

from prfaas._proto.prfaas.v1 import worker_pb2
from prfaas.cache_event_kind import CacheEventKind


def test_every_kind_is_the_wire_number_of_the_same_name() -> None:
    wire = worker_pb2.CacheEvent.Kind
    assert {k.name: k.value for k in CacheEventKind} == {
        name: number for name, number in wire.items() if name != "KIND_UNSPECIFIED"
    }


def test_from_wire_reads_each_number_and_refuses_the_rest() -> None:
    for kind in CacheEventKind:
        assert CacheEventKind.from_wire(kind.value) is kind
    assert CacheEventKind.from_wire(worker_pb2.CacheEvent.KIND_UNSPECIFIED) is None
    assert CacheEventKind.from_wire(99) is None

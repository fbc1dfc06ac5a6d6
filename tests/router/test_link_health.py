"""Link health against a real userspace relay: a relay that is down or whose peer is gone probes
down, a live one up; a reported failure marks the link down until a probe brings it back."""

from __future__ import annotations

import asyncio

from prfaas.link.relay import LinkRelay
from prfaas.roles import Role
from prfaas.router.link_health import LinkHealth, LinkHealthConfig, probe_link
from prfaas.router.prefix_index import PrefixIndex
from prfaas.router.registry import WorkerHandle, WorkerRegistry

FAST = LinkHealthConfig(probe_interval_s=0.05, connect_timeout_s=1.0, hold_s=0.2)


async def _receiver() -> asyncio.Server:
    """Stands in for a KV receiver: accepts and waits for a HELLO that never comes."""

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    return await asyncio.start_server(hold, "127.0.0.1", 0)


async def test_probe_sees_relay_down_peer_gone_and_up() -> None:
    receiver = await _receiver()
    target = receiver.sockets[0].getsockname()[:2]
    relay = await LinkRelay(target).start()
    host, port = relay.address
    try:
        assert await probe_link(host, port, FAST) is None
        relay.set_down(True)  # accepts, then resets at once
        assert await probe_link(host, port, FAST) is not None
        relay.set_down(False)
        assert await probe_link(host, port, FAST) is None
        receiver.close()
        await receiver.wait_closed()
        assert await probe_link(host, port, FAST) is not None  # relay up, its peer gone
    finally:
        await relay.close()
    assert "connect failed" in (await probe_link(host, port, FAST) or "")  # relay gone


async def test_reported_failure_holds_the_link_down_until_a_probe_succeeds() -> None:
    receiver = await _receiver()
    relay = await LinkRelay(receiver.sockets[0].getsockname()[:2]).start()
    host, port = relay.address
    registry = WorkerRegistry(PrefixIndex(64))
    registry.add(
        WorkerHandle("pd-1", "pd", "pd", Role.DECODE, "127.0.0.1:1", "x:1", f"{host}:{port}")
    )
    links = LinkHealth(registry, FAST)
    try:
        relay.set_down(True)
        links.report_failure("pd-1", "kv_transfer_failed")
        assert not links.usable("pd-1") and links.usable("pd-0")
        await asyncio.sleep(0.6)  # several probes, all failing
        assert not links.usable("pd-1")
        relay.set_down(False)
        for _ in range(40):
            if links.usable("pd-1"):
                break
            await asyncio.sleep(0.05)
        assert links.usable("pd-1")
    finally:
        await links.close()
        await relay.close()
        receiver.close()
        await registry.stop()

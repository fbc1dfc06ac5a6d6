"""Scrape the router (and any workers' own endpoints) and keep what windows and outages need.

The poller never raises on a dead endpoint: a refused or timed-out scrape becomes a failed
`Scrape`, the view says so, and the next poll tries again (a restarted router or worker is picked
up by itself).
"""

from __future__ import annotations

import time

import httpx

from prfaas.tools.top.scrape import Scrape, failed_scrape, parse_scrape
from prfaas.tools.top.snapshot import TopSnapshot, build_snapshot


def metrics_url(router: str) -> str:
    """The router's /metrics from what a user has at hand: host:port, its base URL, its /v1."""
    url = router if "://" in router else f"http://{router}"
    url = url.rstrip("/")
    for suffix in ("/metrics", "/v1"):
        url = url.removesuffix(suffix)
    return f"{url}/metrics"


def scrape(client: httpx.Client, url: str) -> Scrape:
    now = time.time()
    try:
        response = client.get(url)
        response.raise_for_status()
    except httpx.HTTPStatusError as exc:
        return failed_scrape(url, now, f"HTTP {exc.response.status_code}")
    except httpx.HTTPError as exc:
        return failed_scrape(url, now, type(exc).__name__)
    return parse_scrape(url, response.text, now)


class TopPoller:
    """`poll()` -> the next `TopSnapshot`; percentiles and rates cover the time since the last."""

    def __init__(
        self, router: str, workers: dict[str, str] | None = None, timeout_s: float = 2.0
    ) -> None:
        self.router_url = metrics_url(router)
        self.worker_urls = workers or {}
        self.client = httpx.Client(timeout=timeout_s)
        self._previous: Scrape | None = None

    def poll(self) -> TopSnapshot:
        router = scrape(self.client, self.router_url)
        workers = {name: scrape(self.client, url) for name, url in self.worker_urls.items()}
        snap = build_snapshot(
            router, self._previous if router.ok else None, workers, last_good=self._previous
        )
        if router.ok:
            self._previous = router
        return snap

    def close(self) -> None:
        self.client.close()

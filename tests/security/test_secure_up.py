"""`prfaas up --secure`, the one-option path, as a user runs it (the CLI in a subprocess, real
processes): the router's HTTP port serves HTTPS with the deployment CA, `/v1/*` needs the generated
API key, and everything the launcher printed (https:// URLs, the CA, the key file) is what works.
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_up_cli import Up

BODY = {"model": "prfaas-tiny", "prompt": "The quick brown fox " * 30, "max_tokens": 4,
        "temperature": 0, "ignore_eos": True}  # fmt: skip


def _printed(up: Up, label: str) -> str:
    """The value `prfaas up` printed after `label:` (first whitespace-separated word)."""
    for line in up.stdout:
        match = re.match(rf"\s*{re.escape(label)}:\s+(\S+)", line)
        if match:
            return match.group(1)
    raise AssertionError(f"prfaas up printed no {label!r}:\n{''.join(up.stdout)}")


@pytest.fixture(scope="module")
def secure_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    up = Up(tmp_path_factory.mktemp("secure"), "--secure")
    try:
        up.wait_for("API key file", timeout_s=180)
        yield up
    finally:
        up.close()


def test_printed_endpoints_are_https_with_a_private_key_file(secure_up: Up) -> None:
    url = _printed(secure_up, "OpenAI endpoint")
    assert url.startswith("https://"), url
    assert _printed(secure_up, "metrics").startswith("https://")  # the router's /metrics
    key_file = Path(_printed(secure_up, "API key file"))
    assert os.stat(key_file).st_mode & 0o077 == 0
    assert Path(_printed(secure_up, "trust (CA)")).is_file()


def test_https_with_the_ca_and_the_key_works(secure_up: Up) -> None:
    url = _printed(secure_up, "OpenAI endpoint")
    ca = _printed(secure_up, "trust (CA)")
    key = Path(_printed(secure_up, "API key file")).read_text().strip()
    with httpx.Client(verify=ssl.create_default_context(cafile=ca), timeout=60) as client:
        reply = client.post(url + "/completions", json=BODY,
                            headers={"Authorization": f"Bearer {key}"})  # fmt: skip
        assert reply.status_code == 200, reply.text
        assert reply.json()["usage"]["completion_tokens"] == 4
        base = url.removesuffix("/v1")
        assert client.get(base + "/ready").status_code == 200  # probes, unauthenticated
        assert "prfaas_" in client.get(base + "/metrics").text


def test_no_api_key_is_401(secure_up: Up) -> None:
    url = _printed(secure_up, "OpenAI endpoint")
    ca = _printed(secure_up, "trust (CA)")
    with httpx.Client(verify=ssl.create_default_context(cafile=ca), timeout=30) as client:
        assert client.post(url + "/completions", json=BODY).status_code == 401
        wrong = {"Authorization": "Bearer not-the-key"}
        assert client.post(url + "/completions", json=BODY, headers=wrong).status_code == 401


def test_plain_http_to_the_tls_port_fails(secure_up: Up) -> None:
    url = _printed(secure_up, "OpenAI endpoint").replace("https://", "http://", 1)
    with pytest.raises(httpx.TransportError):  # the TLS server drops a plaintext request
        httpx.get(url + "/models", timeout=10)


def test_client_without_the_ca_fails_verification(secure_up: Up) -> None:
    url = _printed(secure_up, "OpenAI endpoint")
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(url + "/models", timeout=10)  # the system trust store does not know the dev CA

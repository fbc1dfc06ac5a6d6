"""Before `prfaas bench serve` sends load: is a server there, and does the workload fit it?

`GET {url}/models` answers with the served model's `max_model_len` (its context). A workload whose
longest prompt plus output exceeds it would be answered 400 request after request (the paper's
lengths reach 131K tokens; the embedded `small` model's context is far shorter), so it is refused
up front with the option that makes it fit. The load generator owns this module.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from prfaas.tools.loadgen.workloads import Workload


@dataclass(frozen=True)
class Target:
    model: str
    max_model_len: int | None


class PreflightError(RuntimeError):
    """The server is not there or the workload does not fit it; the message says what to do."""


def probe_target(url: str, api_key: str | None = None, timeout_s: float = 10.0) -> Target:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        reply = httpx.get(f"{url.rstrip('/')}/models", headers=headers, timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise PreflightError(
            f"no server answers at {url} ({type(exc).__name__}); start one with `prfaas up` "
            "(or `prfaas up --backend emulated`) or pass --url"
        ) from exc
    if reply.status_code != 200:
        raise PreflightError(f"{url}/models answered HTTP {reply.status_code}: {reply.text[:200]}")
    data = (reply.json().get("data") or [{}])[0]
    limit = data.get("max_model_len")
    return Target(str(data.get("id", "")), int(limit) if limit else None)


def check_fits(workload: Workload, target: Target, length_scale: float) -> None:
    """Raise PreflightError when some request's prompt + output exceeds the target's context."""
    if target.max_model_len is None or not workload.requests:
        return
    longest = max(r.input_tokens + r.output_tokens for r in workload.requests)
    if longest <= target.max_model_len:
        return
    fitting = length_scale * target.max_model_len / longest
    raise PreflightError(
        f"the longest request needs {longest} tokens but {target.model or 'the model'} serves "
        f"{target.max_model_len}: scale the workload (--length-scale {fitting:.3g}, or cap it "
        f"with --max-input-tokens), or serve a longer context (`prfaas up --backend emulated` "
        "for profiled timings at the paper's lengths)"
    )

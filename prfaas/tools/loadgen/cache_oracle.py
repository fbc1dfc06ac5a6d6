"""The prefix-cache oracle: what an unbounded prefix cache could have served, in arrival order.

`prfaas bench serve` reports the prompt tokens the deployment served from cache against this
bound. The oracle is computed from a Mooncake trace's hash ids, not from the system: request i's
prompt (workloads.py, prompts.py) is the server's `special_tokens` (one BOS) then the text of its
hash ids' blocks, `trace_block_tokens` each, cut at its length; two requests whose first k hash ids
agree share exactly `special + min(k·trace_block, n_i, n_j)` leading tokens (text past a differing
hash id, or a request's own filler, is drawn independently).

An unbounded cache of `block_size`-token blocks holds, after request j, every full block of j's
prompt. Request i can then reuse, from the earlier requests j,
  max_j min(shared prefix(i, j), full blocks of j)
rounded down to whole blocks, and at most (len_i - 1) rounded down: a worker always computes the
last prompt token (engine/kv_manager.py, the same cap). Every full block counts as checkpointed in
this bound (as `checkpoint_every_blocks` = 1 would), so the hybrid model's rule costs nothing
here. The engine checkpoints sparsely (prfaas/checkpoint_rule.py: each prompt's last full block,
where its cached KV stopped matching, and every 16 blocks by default); a conversation's next turn
reuses exactly the previous prompt's full blocks, which end at its prompt-end checkpoint, so the
rule loses against this bound only where a prefix is shared mid-prompt (up to 15 blocks for the
first request that shares it there). Requests without hash ids share only the BOS.

Cost: one walk of a trie of hash-id prefixes per request, O(total hash ids).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from prfaas.tools.loadgen.workloads import RequestSpec


@dataclass
class _Node:
    """Requests whose first `depth` hash ids are this node's path."""

    max_full_tokens: int = 0
    """Most prompt tokens in full blocks of any request through this node (its cached part)."""
    children: dict[int, _Node] = field(default_factory=dict)


def _full(tokens: int, block_size: int) -> int:
    return tokens // block_size * block_size


def oracle_cached_tokens(
    requests: Sequence[RequestSpec],
    *,
    block_size: int,
    trace_block_tokens: int,
    special_tokens: int = 1,
) -> list[int]:
    """Per request (in the order given, which must be arrival order), the prompt tokens an
    unbounded prefix cache of `block_size`-token blocks could serve. `trace_block_tokens` is the
    text tokens per hash id (the workload's scaled block); `input_tokens` counts the server's
    tokens, `special_tokens` of which precede the text."""
    if block_size <= 0 or trace_block_tokens <= 0:
        raise ValueError("block sizes must be positive")
    root = _Node()
    seen_any = False
    out: list[int] = []
    for req in requests:
        text = max(req.input_tokens - special_tokens, 0)
        best = 0
        node: _Node | None = root if seen_any else None
        for depth in range(len(req.hash_ids) + 1):
            if node is None:
                break
            shared = special_tokens + min(depth * trace_block_tokens, text)
            best = max(best, min(shared, node.max_full_tokens))
            if depth == len(req.hash_ids) or depth * trace_block_tokens >= text:
                break
            node = node.children.get(req.hash_ids[depth])
        out.append(_full(min(best, max(req.input_tokens - 1, 0)), block_size))
        full = _full(req.input_tokens, block_size)
        node, seen_any = root, True
        node.max_full_tokens = max(node.max_full_tokens, full)
        for h in req.hash_ids:
            node = node.children.setdefault(h, _Node())
            node.max_full_tokens = max(node.max_full_tokens, full)
    return out

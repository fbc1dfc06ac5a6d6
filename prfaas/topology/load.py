"""Reading a topology file: TOML in, a validated `Topology` out, or one line naming the bad key.

Paths in the file (`At(..., relative_path=True)`: the model directory, profiles, the API key file)
are relative to the file that names them, resolved through links: deploy/local.toml links to the
shipped prfaas/data/topologies/local.toml, whose profiles are ../case_study/*.csv.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import ValidationError

from prfaas.data import topology_file
from prfaas.topology.layout import TopologyError, describe, nest
from prfaas.topology.schema import Topology

DEFAULT_TOPOLOGY = topology_file("local.toml")
"""The default two-datacenter topology of `prfaas up`, shipped with the package."""


def load_topology(path: str | Path | None = None) -> Topology:
    """Parse a topology TOML file (default: `DEFAULT_TOPOLOGY`). Raises `TopologyError` whose one
    line names the file and the key: unknown sections and keys, wrong types and values."""
    path = Path(path) if path else DEFAULT_TOPOLOGY
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise TopologyError(f"cannot read topology {path}: {exc}") from exc
    directory = path.resolve().parent
    try:
        values = nest(raw, Topology, lambda value: str((directory / value).resolve()))
        return Topology.model_validate(values)
    except TopologyError as exc:
        raise TopologyError(f"topology {path}: {exc}") from None
    except ValidationError as exc:
        raise TopologyError(f"topology {path}: {describe(exc, Topology)}") from None

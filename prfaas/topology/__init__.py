"""The topology file's schema and reader, shared by the launcher (which starts what it describes)
and the router (which registers the workers it names).

- `layout.py`: how typed settings map onto `[section] key` lines of a TOML file, and one-line
  error messages that name the key;
- `security.py`: the `[security]` section;
- `schema.py`: `Topology` (every other section) and the worker addresses it implies;
- `load.py`: `load_topology`, the default file, and paths relative to the file.
"""

from __future__ import annotations

from prfaas.topology.load import DEFAULT_TOPOLOGY, load_topology
from prfaas.topology.schema import (
    BACKENDS,
    LINK_MODES,
    POLICIES,
    LinkSpec,
    Topology,
    TopologyError,
    WorkerAddress,
)
from prfaas.topology.security import SecuritySpec

__all__ = [
    "BACKENDS",
    "DEFAULT_TOPOLOGY",
    "LINK_MODES",
    "POLICIES",
    "LinkSpec",
    "SecuritySpec",
    "Topology",
    "TopologyError",
    "WorkerAddress",
    "load_topology",
]

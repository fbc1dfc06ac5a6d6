"""Worker roles have one owner (prfaas/roles.py): the CLI, the topology and the router agree on it."""

from __future__ import annotations

import pytest

from prfaas.cli import build_parser
from prfaas.roles import PD_ROLES, Role
from prfaas.topology import Topology, TopologyError


def test_pd_roles_are_the_plain_role_names_without_prfaas() -> None:
    assert all(type(r) is str for r in PD_ROLES)  # readable in CLI and topology error messages
    assert {Role(r) for r in PD_ROLES} == set(Role) - {Role.PRFAAS}


@pytest.mark.parametrize("role", PD_ROLES)
def test_the_pd_worker_cli_accepts_every_pd_role(role: str) -> None:
    argv = ["pd-worker", "--worker-id", "pd-0", "--role", role]
    assert build_parser(argv).parse_args(argv).role == role


def test_the_pd_worker_cli_refuses_the_prfaas_role() -> None:
    argv = ["pd-worker", "--worker-id", "pd-0", "--role", Role.PRFAAS.value]
    with pytest.raises(SystemExit):
        build_parser(argv).parse_args(argv)


def test_topology_workers_carry_role_names_and_refuse_prfaas_in_the_pd_cluster() -> None:
    topo = Topology(pd_roles=PD_ROLES)
    assert [Role(w.role) for w in topo.workers()] == [Role.PRFAAS, *map(Role, PD_ROLES)]
    with pytest.raises(TopologyError, match="pd.roles"):
        Topology(pd_roles=(Role.PRFAAS.value,))

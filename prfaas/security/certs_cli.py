"""`prfaas certs --topology deploy/local.toml --out DIR`: a development CA and one certificate per
process of a topology (router, every worker, optional named clients), keys 0600 in a 0700 DIR.

Give each process its files: `--tls-cert DIR/worker-pd-0.crt --tls-key DIR/worker-pd-0.key
--tls-ca DIR/ca.crt`. DIR/ca.key can sign more; keep it off the serving hosts.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from prfaas.security import certs, identities
from prfaas.topology import DEFAULT_TOPOLOGY, load_topology


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--topology", default=str(DEFAULT_TOPOLOGY), help="topology TOML file")
    parser.add_argument("--out", required=True, help="directory for the CA, certificates and keys")
    parser.add_argument("--days", type=int, default=certs.DEFAULT_DAYS, help="validity in days")
    parser.add_argument(
        "--client", action="append", default=[], help="also a client identity NAME (repeatable)"
    )


def run(args: argparse.Namespace) -> int:
    topo = load_topology(args.topology)
    out = Path(args.out)
    ca = certs.new_authority(days=args.days)
    certs.write_authority(ca, out)
    hosts: dict[str, tuple[str, ...]] = {identities.ROUTER: (topo.host,)}
    for w in topo.workers():
        hosts[identities.worker(w.worker_id)] = (w.grpc.rsplit(":", 1)[0],)
    for name in args.client:
        hosts[identities.client(name)] = ()
    for identity, addresses in hosts.items():
        files = certs.write_identity(ca, identity, out, addresses)
        print(f"{identity}: --tls-cert {files.cert} --tls-key {files.key} --tls-ca {files.ca}")
    return 0

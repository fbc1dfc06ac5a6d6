"""`prfaas sim`: a discrete-event simulator of a PrfaaS deployment that runs the router's own
decision code (`route()`, the prefix index, the short- and long-term controllers) against
simulated prefill and decode instances, per-instance hybrid prefix caches and a shared link.

Entry points: `SimConfig` + `Simulation.run(requests)` (simulation.py); `experiment_config`
(the `prfaas experiment` deployment, scale.py); the CLI (cli.py).
"""

from prfaas.tools.sim.cli import add_arguments, run

__all__ = ["add_arguments", "run"]

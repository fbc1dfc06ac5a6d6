"""`prfaas experiment`: the paper's case study end to end on real processes (issue 7 items 4-5).

Modules: scale (scaled inputs and the planner's prediction), deploy (one deployment per policy,
link re-shaping), sweep (offered-load points and the sustainability criterion), fluctuation (link
cut mid-run), report (JSON, Markdown, plots), cli (`add_arguments`, `run`).
"""

from prfaas.tools.experiment.cli import add_arguments, run

__all__ = ["add_arguments", "run"]

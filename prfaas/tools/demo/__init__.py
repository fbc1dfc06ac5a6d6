"""`prfaas demo`: the real model path once, then the three policies where homogeneous PD saturates
(main.py has the outline)."""

from prfaas.tools.demo.main import add_arguments, run

__all__ = ["add_arguments", "run"]

"""Local PD-cluster worker: roles mixed (prefill + decode), prefill (PD-P) and decode (PD-D)."""

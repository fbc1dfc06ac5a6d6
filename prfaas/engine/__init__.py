"""Engine shared by the prefill worker and the PD worker: request scheduling, the hybrid prefix
cache pool and execution backends. No networking here (no grpc, kvtransfer or router imports).

Entry point: `EngineCore` (core.py) with a backend from `backend_emulated` or `backend_torch`.
"""

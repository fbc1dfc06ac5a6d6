"""Chaos and soak tooling (not serving code): seeded, replayable fault schedules run against a
whole deployment while an open-loop workload runs, with assertions on what clients saw and on
per-process memory and file descriptors.

Modules: `targets` (the processes of a topology a fault can hit), `schedule` (faults generated from
a seed, JSON round trip), `injector` (applies a schedule to a running deployment), `resources`
(RSS / fd sampling and slopes), `verdict` (the assertions), `run` (one whole run), `cli`.
"""

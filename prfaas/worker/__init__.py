"""Runtime shared by both worker processes: compute thread, KV flows, gRPC scaffolding."""

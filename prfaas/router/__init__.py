"""Router: HTTP/gRPC front end, worker registry, prefix index, routing policy, control loops.

The pure parts (`prefix_index`, `policy`, `control`) import no networking and no torch.
"""

"""Tooling around the serving system: benchmarks, load generator, experiment, chaos, simulator,
`prfaas top` and the demo. Serving packages never import from here (pyproject [tool.importlinter])."""

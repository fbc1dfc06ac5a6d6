"""Benchmarks that drive real prfaas processes (`prfaas bench workers`, ...)."""

"""prfaas: Prefill-as-a-Service for hybrid-attention models (arXiv 2604.15039)."""

__version__ = "0.1.0"

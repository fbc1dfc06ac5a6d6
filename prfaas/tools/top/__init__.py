"""`prfaas top`: a live terminal view of a running deployment (tooling; reads /metrics only)."""

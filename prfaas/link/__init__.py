"""The link relay process (`prfaas link`): a TCP relay that shapes the cross-datacenter KV link."""

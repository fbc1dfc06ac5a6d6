"""`prfaas up`: start a whole two-datacenter deployment from one topology file."""

"""PrfaaS prefill worker: a stateless KVCache producer that never decodes."""

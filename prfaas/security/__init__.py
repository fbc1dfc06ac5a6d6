"""Who may talk to whom on the control plane, and how they prove it.

- `identities`: the names processes carry (SPIFFE-style URIs) and the TLS server names they imply.
- `secret_files`: secrets come from files only the user can read (never argv or the environment).
- `certs`: a development CA and per-process certificates (`prfaas certs`, `prfaas up --tls`).
- `credentials`: one process's gRPC credentials (token or mTLS) loaded from its options.
- `authz`: which identity may call which RPC.
- `interceptor`: the server-side check of every RPC; `channels`: the client side.
- `binding`: bind a gRPC port securely, refusing non-loopback binds without credentials.
- `api_keys`: the user-facing API keys of `/v1/*` and `Router.Generate`.
- `https`: TLS on the router's HTTP port (`--https-cert/--https-key`).
See docs/security.md for the threat model.
"""

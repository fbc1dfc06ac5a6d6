"""The topology's `[security]` section: what `prfaas up` turns on for a whole deployment.

    [security]
    tls = false               # mutual TLS on gRPC, HTTPS on the router (a dev CA made at start)
    kv_tls = true             # with tls: TLS on the KV channel too (false: HMAC-only plaintext)
    api_key_file = ""         # API keys for /v1/* (one per line, mode 0600; relative to the file)
    generate_api_key = false  # no key file: make a fresh key (0600, path printed by prfaas up)

`prfaas up --tls`, `--secure` and `--api-key-file` override these (an option only turns a setting
on, or names another file). The gRPC token and KV secret are made per deployment whatever this
says (secure by default); secrets are never written in the topology, only file paths.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from prfaas.topology.layout import At, Bool, Settings, Str


class SecuritySpec(Settings):
    tls: Annotated[Bool, At("security", "tls")] = False
    kv_tls: Annotated[Bool, At("security", "kv_tls")] = True
    api_key_file: Annotated[Str, At("security", "api_key_file", relative_path=True)] = ""
    generate_api_key: Annotated[Bool, At("security", "generate_api_key")] = False

    def with_options(
        self, *, tls: bool = False, secure: bool = False, api_key_file: str | None = None
    ) -> SecuritySpec:
        """These settings under `prfaas up`'s options (`--secure` = tls + a generated key)."""
        return SecuritySpec(
            tls=self.tls or tls or secure,
            kv_tls=self.kv_tls,
            api_key_file=str(Path(api_key_file).resolve()) if api_key_file else self.api_key_file,
            generate_api_key=self.generate_api_key or secure,
        )

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

from dataclasses import dataclass
from pathlib import Path
from typing import Any

KEYS = frozenset({"tls", "kv_tls", "api_key_file", "generate_api_key"})


@dataclass(frozen=True)
class SecuritySpec:
    tls: bool = False
    kv_tls: bool = True
    api_key_file: str = ""
    generate_api_key: bool = False

    @classmethod
    def from_toml(cls, section: dict[str, Any], topology_path: Path) -> SecuritySpec:
        """From a parsed `[security]` table; the key file is resolved against the topology's
        directory. Raises ValueError naming a key whose value is not of its type."""
        base = cls()
        for key in ("tls", "kv_tls", "generate_api_key"):
            if not isinstance(section.get(key, False), bool):
                raise ValueError(f"security.{key} must be true or false")
        key_file = section.get("api_key_file", "")
        if not isinstance(key_file, str):
            raise ValueError("security.api_key_file must be a path string")
        if key_file:
            key_file = str((topology_path.resolve().parent / key_file).resolve())
        return cls(
            tls=section.get("tls", base.tls),
            kv_tls=section.get("kv_tls", base.kv_tls),
            api_key_file=key_file,
            generate_api_key=section.get("generate_api_key", base.generate_api_key),
        )

    def to_toml(self) -> dict[str, object]:
        return {
            "tls": self.tls,
            "kv_tls": self.kv_tls,
            "api_key_file": self.api_key_file,
            "generate_api_key": self.generate_api_key,
        }

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

"""The user-facing API keys of `/v1/*` (HTTP `Authorization: Bearer`) and `Router.Generate`
(gRPC metadata `x-api-key`).

Keys come from `--api-key-file` (one per line; blank lines and `#` comments ignored; the file must
not be group/world-readable) and, for compatibility, the single `--api-key`. The file is re-read
when its modification time or size changes (checked on use) and on `reload()` (the router calls it
on SIGHUP), so removing a line revokes a key without a restart. A file that becomes unreadable or
insecure revokes every file key (fail closed) and logs why.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from prfaas.security.secret_files import InsecureSecretFile, check_private

log = logging.getLogger(__name__)


def parse_keys(text: str) -> tuple[bytes, ...]:
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return tuple(dict.fromkeys(line.encode() for line in lines if line))


class ApiKeys:
    def __init__(self, path: str | Path | None = None, static: Iterable[str] = ()) -> None:
        self.path = Path(path) if path else None
        self._static = tuple(k.encode() for k in static if k)
        self._from_file: tuple[bytes, ...] = ()
        self._stamp: tuple[int, int] | None = None
        if self.path is not None:
            self._from_file = parse_keys(check_private(self.path).read_text())
            self._stamp = self._file_stamp()

    @classmethod
    def of(cls, value: str | ApiKeys | None) -> ApiKeys | None:
        """An `ApiKeys` from what `create_app(api_key=...)` accepts (a single key or keys)."""
        if value is None or isinstance(value, ApiKeys):
            return value
        return cls(static=[value])

    def _file_stamp(self) -> tuple[int, int] | None:
        assert self.path is not None
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def reload(self) -> None:
        """Re-read the key file now (SIGHUP); on any problem accept no file key."""
        if self.path is None:
            return
        self._stamp = self._file_stamp()
        try:
            self._from_file = parse_keys(check_private(self.path).read_text())
        except (InsecureSecretFile, OSError, UnicodeDecodeError) as exc:
            log.error("API keys from %s revoked: %s", self.path, exc)
            self._from_file = ()
            return
        log.info("API keys reloaded from %s: %d keys", self.path, len(self._from_file))

    def __len__(self) -> int:
        return len(self._static) + len(self._from_file)

    def accepts(self, presented: str) -> bool:
        """Whether `presented` is a current key (every key compared, in constant time each)."""
        if self.path is not None and self._file_stamp() != self._stamp:
            self.reload()
        candidate = presented.encode()
        ok = False
        for key in (*self._static, *self._from_file):
            ok |= hmac.compare_digest(candidate, key)
        return ok

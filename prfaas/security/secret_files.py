"""Secrets live in files only their owner can read.

Command lines (`/proc/PID/cmdline`) and environments (`/proc/PID/environ`, `docker inspect`) are
readable by other local users or tooling, so tokens, API keys and private keys are passed as file
*paths*. A key or token file that its group or others may read is refused: on a shared host those
users are the first attackers.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class InsecureSecretFile(ValueError):
    """A secret file others can read, or one that is missing or empty."""


def check_private(path: str | Path) -> Path:
    """`path` if it is a regular file with no group/other permissions; raises otherwise."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError as exc:
        raise InsecureSecretFile(f"cannot read secret file {p}: {exc.strerror}") from exc
    if not stat.S_ISREG(st.st_mode):
        raise InsecureSecretFile(f"secret file {p} is not a regular file")
    if st.st_mode & 0o077:
        raise InsecureSecretFile(
            f"secret file {p} is readable by group/others (mode {stat.S_IMODE(st.st_mode):o}); "
            f"run: chmod 600 {p}"
        )
    return p


def read_secret(path: str | Path) -> bytes:
    """The stripped contents of a private secret file (refused when empty or not private)."""
    data = check_private(path).read_bytes().strip()
    if not data:
        raise InsecureSecretFile(f"secret file {path} is empty")
    return data


def private_dir(path: str | Path) -> Path:
    """Create (or tighten) a directory only its owner may enter (0700)."""
    p = Path(path)
    p.mkdir(parents=True, exist_ok=True)
    os.chmod(p, 0o700)
    return p


def write_private(path: str | Path, data: bytes) -> Path:
    """Write `data` to a new file created 0600 (never briefly world-readable)."""
    p = Path(path)
    p.unlink(missing_ok=True)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return p

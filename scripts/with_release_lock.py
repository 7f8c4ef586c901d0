"""Run a command while holding the release lock, a PostgreSQL advisory lock.

    python scripts/with_release_lock.py python -m flask tenancy upgrade

App Service starts every instance with ``scripts/appservice-start.sh``; this makes
instances that start together run the release step one at a time. The lock is held on
its own connection (``DATABASE_URL``, from the environment or Key Vault like the app's
settings) and released when that connection closes, also when this process dies.
"""

from __future__ import annotations

import subprocess
import sys

import psycopg
from sqlalchemy.engine import make_url

from api.settings import ConfigError, load

# pg_advisory_lock key: any constant no other code of ours locks ("clinai-release").
RELEASE_LOCK = 0x636C696E616972


def main(command: list[str]) -> int:
    if not command:
        print(__doc__, file=sys.stderr)
        return 2
    url = load().get("DATABASE_URL")
    if not url:
        raise ConfigError("DATABASE_URL is not set")
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=30) as conn:
        print("release: waiting for the release lock", file=sys.stderr, flush=True)
        conn.execute("SELECT pg_advisory_lock(%s)", (RELEASE_LOCK,))
        print(f"release: running {' '.join(command)}", file=sys.stderr, flush=True)
        # The command is this script's own argument list (the startup script's), not input.
        return subprocess.call(command)  # noqa: S603


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

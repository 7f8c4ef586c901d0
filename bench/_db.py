"""Shared benchmark helpers: a throw-away database with its own roles, env, percentiles.

``bench_database`` creates ``clinai_bench_<suffix>`` plus an owner and an app role whose
names carry the same suffix (roles are cluster-wide), runs ``ensure_roles`` and
``upgrade_public``, and drops the database and both roles when the block ends, also on
errors, Ctrl-C, SIGTERM and the watchdog timeout. Only loopback servers are accepted.
"""

from __future__ import annotations

import math
import os
import secrets
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import psycopg
from sqlalchemy.engine import make_url

from tenancy.database import DatabaseConfig, ensure_roles
from tenancy.migrate import upgrade_public

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
LOCAL_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
LOOPBACK = {"127.0.0.1", "::1", "localhost"}
# Subprocesses get only these variables from the caller's environment plus the settings
# of ``BenchDatabase.app_settings``: an OIDC issuer, Application Insights or another
# database configured in the caller's shell must not leak into a run.
PASSTHROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ")


class BenchTimeout(Exception):
    """The benchmark ran past its ``--timeout``."""


def default_server_url() -> str:
    return os.environ.get("TEST_DATABASE_URL") or LOCAL_SERVER


def _conninfo(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def require_loopback(url: str) -> None:
    host = make_url(url).host or "localhost"  # no host: the local Unix socket
    if host not in LOOPBACK and not host.startswith("/"):
        raise SystemExit(f"refusing to benchmark against non-loopback host {host!r}")


@dataclass(frozen=True, slots=True)
class BenchDatabase:
    server_url: str
    name: str
    url: str
    owner_role: str
    app_role: str
    app_password: str

    def config(self) -> DatabaseConfig:
        return DatabaseConfig(admin_url=self.url, app_password=self.app_password,
                              owner_role=self.owner_role, app_role=self.app_role)

    def app_settings(self) -> dict[str, str | None]:
        """Settings for ``create_app`` / the server: development issuer, this database."""
        return {
            "APP_ENV": "development",
            "DATABASE_URL": self.url,
            "DATABASE_APP_URL": None,
            "DATABASE_APP_PASSWORD": self.app_password,
            "DATABASE_OWNER_ROLE": self.owner_role,
            "DATABASE_APP_ROLE": self.app_role,
            "AUTH_OIDC_METADATA_URL": None,
            "AUTH_AUDIENCE": None,
            "APPLICATIONINSIGHTS_CONNECTION_STRING": None,
            "LOG_LEVEL": "WARNING",
        }

    def env(self, **extra: str) -> dict[str, str]:
        """A minimal environment for ``flask`` / ``gunicorn`` subprocesses."""
        env = {k: os.environ[k] for k in PASSTHROUGH if k in os.environ}
        env.update({k: v for k, v in self.app_settings().items() if v is not None})
        env.update(extra)
        return env


HARD_STOP_GRACE_S = 120


class Deadline:
    """Cooperative time limit: ``check()`` at safe points (between requests, tenants)."""

    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds

    def remaining(self) -> float:
        return max(0.0, self.at - time.monotonic())

    def check(self) -> None:
        if time.monotonic() > self.at:
            raise BenchTimeout("benchmark timed out")


def _hard_stop(_signum: int, _frame: FrameType | None) -> None:
    raise BenchTimeout("benchmark did not stop at a safe point; interrupted")


def _raise_exit(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


@contextmanager
def watchdog(seconds: int) -> Iterator[Deadline]:
    """Yield a ``Deadline``; past it plus a grace period, interrupt wherever the run is.

    SIGTERM becomes SystemExit, so the cleanup of ``bench_database`` runs either way.
    """
    previous_term = signal.signal(signal.SIGTERM, _raise_exit)
    previous_alarm = signal.signal(signal.SIGALRM, _hard_stop)
    signal.alarm(seconds + HARD_STOP_GRACE_S)
    try:
        yield Deadline(seconds)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous_alarm)
        signal.signal(signal.SIGTERM, previous_term)


@contextmanager
def bench_database(server_url: str) -> Iterator[BenchDatabase]:
    """Create a migrated database and roles for one benchmark run; drop them afterwards."""
    require_loopback(server_url)
    suffix = secrets.token_hex(4)
    name = f"clinai_bench_{suffix}"
    bench = BenchDatabase(
        server_url=server_url,
        name=name,
        url=make_url(server_url).set(database=name).render_as_string(hide_password=False),
        owner_role=f"clinai_bench_{suffix}_owner",
        app_role=f"clinai_bench_{suffix}_app",
        app_password=secrets.token_urlsafe(24),
    )
    with psycopg.connect(_conninfo(server_url), autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        config = bench.config()
        ensure_roles(config)
        upgrade_public(config)
        yield bench
    finally:
        # Ignore a second Ctrl-C / SIGTERM while dropping.
        old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        old_term = signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            with psycopg.connect(_conninfo(server_url), autocommit=True,
                                 connect_timeout=10) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                for role in (bench.app_role, bench.owner_role):
                    conn.execute(f'DROP ROLE IF EXISTS "{role}"')
            print(f"cleanup: dropped database {name} and roles {bench.owner_role}, "
                  f"{bench.app_role}", file=sys.stderr)
        finally:
            signal.signal(signal.SIGINT, old_int)
            signal.signal(signal.SIGTERM, old_term)


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return float(ordered[rank - 1])


def summary_ms(values_ms: Sequence[float]) -> dict[str, float | int]:
    return {
        "n": len(values_ms),
        "p50_ms": round(percentile(values_ms, 50), 1),
        "p95_ms": round(percentile(values_ms, 95), 1),
        "max_ms": round(max(values_ms), 1) if values_ms else math.nan,
    }


def run_main(main: Callable[[], int]) -> int:
    """Run a benchmark's ``main``; a timeout exits 2 after cleanup has dropped everything."""
    try:
        return main()
    except BenchTimeout:
        print("benchmark timed out (--timeout); created objects were dropped", file=sys.stderr)
        return 2

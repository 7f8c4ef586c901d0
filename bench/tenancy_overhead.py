"""Tenancy overhead: authenticated, tenant-scoped GET /api/v1/clients vs a plain endpoint.

Both served by gunicorn with the same settings (gunicorn.conf.py: 2 workers x 4
threads), one at a time, loaded by wrk on loopback; 1,000 clients, pages of 20. The
plain app also runs in variants that add the tenancy pieces one by one, to show where
the difference goes. Prints a table and a final JSON line.

    .venv/bin/python -m bench.tenancy_overhead [--duration 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from jwt.algorithms import RSAAlgorithm
from sqlalchemy import text

from api.auth import DevIssuer
from api.settings import DEV_AUDIENCE
from bench._db import bench_database
from tenancy.database import create_owner_engine
from tenancy.provisioning import create_tenant

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def server(app_spec: str, env: dict[str, str]) -> Iterator[str]:
    port = _free_port()
    full_env = {**os.environ, **env, "GUNICORN_BIND": f"127.0.0.1:{port}",
                "GUNICORN_WORKERS": "2", "GUNICORN_THREADS": "4", "LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen([str(BIN / "gunicorn"), app_spec], cwd=ROOT, env=full_env,  # noqa: S603
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                httpx.get(f"{base}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def wrk(url: str, token: str, duration: int, connections: int) -> float:
    out = subprocess.run(  # noqa: S603
        ["/usr/bin/wrk", "-t2", f"-c{connections}", f"-d{duration}s",
         "-H", f"Authorization: Bearer {token}", url],
        check=True, capture_output=True, text=True).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"non-2xx responses from {url}:\n{out}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert match, out
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url", default=os.environ.get(
        "TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", action="store_true",
                        help="also measure the plain app with each tenancy piece added")
    args = parser.parse_args()

    with bench_database(args.database_url) as bench:
        config = bench.config()
        owner = create_owner_engine(config)
        tenant = create_tenant(owner, name="Bench", admin_user_id="bench-admin",
                               app_role=config.app_role)
        with owner.begin() as conn:
            conn.execute(text("SELECT set_config('search_path', :s, true), "
                              "set_config('app.tenant_id', :t, true)"),
                         {"s": tenant.schema_name, "t": str(tenant.id)})
            conn.execute(text(
                "INSERT INTO clients (first_name, last_name, date_of_birth, contact, "
                "assigned_therapist_id) SELECT 'First' || i, 'Last' || lpad(i::text, 4, '0'), "
                "date '1980-01-01' + i, jsonb_build_object('email', 'c' || i || '@example.org'),"
                " 'bench-admin' FROM generate_series(1, 1000) AS i"))
        owner.dispose()

        issuer = DevIssuer(ROOT / "instance" / "dev-issuer-key.pem", DEV_AUDIENCE)
        token = issuer.mint(subject="bench-admin", tenant=str(tenant.id), role="admin",
                            tenant_claim="extension_tenant_id", role_claim="extension_role")
        jwk = RSAAlgorithm.to_jwk(issuer.key_for("clinai-dev-1"))
        clinai_env = {"APP_ENV": "development", "DATABASE_URL": config.admin_url,
                      "DATABASE_OWNER_ROLE": config.owner_role,
                      "DATABASE_APP_ROLE": config.app_role,
                      "DATABASE_APP_PASSWORD": config.app_password or ""}
        plain_env = {"BENCH_DATABASE_URL": config.admin_url, "BENCH_SCHEMA": tenant.schema_name,
                     "BENCH_JWK": jwk, "BENCH_AUDIENCE": DEV_AUDIENCE}
        targets: list[tuple[str, str, dict[str, str], str]] = [
            ("plain", "bench.plain_app:app", {**plain_env, "BENCH_VARIANT": "plain"}, "/clients"),
            ("clinai", "wsgi:app", clinai_env, "/api/v1/clients"),
        ]
        if args.variants:
            targets[1:1] = [
                (f"plain+{v}", "bench.plain_app:app", {**plain_env, "BENCH_VARIANT": v},
                 "/clients") for v in ("token", "context", "audit")
            ]
        results: dict[str, list[float]] = {name: [] for name, *_ in targets}
        for round_no in range(args.rounds):
            for name, spec, env, path in targets:
                with server(spec, env) as base:
                    wrk(base + path, token, 2, args.connections)  # warm-up
                    rps = wrk(base + path, token, args.duration, args.connections)
                results[name].append(rps)
                print(f"round {round_no + 1} {name:14s} {rps:8.1f} req/s", flush=True)

    medians = {name: statistics.median(v) for name, v in results.items()}
    base_rps = medians["plain"]
    print(f"\n{'target':14s} {'median req/s':>12s} {'vs plain':>9s}")
    for name, value in medians.items():
        print(f"{name:14s} {value:12.1f} {value / base_rps:9.3f}")
    # Each round measures plain and clinai back to back: the ratio within a round is less
    # exposed to the shared machine's noise than a ratio of medians across rounds.
    paired = [c / p for c, p in zip(results["clinai"], results["plain"], strict=True)]
    print("clinai/plain per round: " + ", ".join(f"{r:.3f}" for r in paired)
          + f"; median {statistics.median(paired):.3f}")
    summary: dict[str, Any] = {"medians": medians, "ratio": medians["clinai"] / base_rps,
                               "paired_ratios": paired,
                               "paired_ratio_median": statistics.median(paired),
                               "rounds": results, "duration_s": args.duration,
                               "connections": args.connections}
    print(json.dumps(summary))
    sys.exit(0)


if __name__ == "__main__":
    main()

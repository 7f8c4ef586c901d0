"""Tenancy overhead: authenticated, tenant-scoped GET /api/v1/clients vs a plain endpoint.

Both served by gunicorn with the same settings (gunicorn.conf.py: 2 workers x 4
threads), all servers up for the whole run, loaded one at a time by wrk on loopback in
short alternating runs; 1,000 clients, pages of 20. The plain app also runs in variants
that add the tenancy pieces one by one, to show where the difference goes. Besides
requests/s, the CPU time the server processes and PostgreSQL spent per request is
measured from /proc. Prints a table and a final JSON line.

``--pooler`` also serves both through Debian's PgBouncer in transaction mode (started
here, ``--pool-size`` server connections, as Azure's built-in PgBouncer on port 6432):
``clinai@pgbouncer`` with ``DATABASE_APP_URL`` on PgBouncer and
``DATABASE_APP_POOLER=transaction``, ``plain@pgbouncer`` the baseline through it. Its
CPU counts with PostgreSQL's. The ratios direct and pooled come from the same run.

    .venv/bin/python -m bench.tenancy_overhead [--duration 2] [--rounds 15] [--variants]
        [--pooler [--pool-size 4]]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from jwt.algorithms import RSAAlgorithm
from sqlalchemy import text
from sqlalchemy.engine import make_url

from api.settings import DEV_AUDIENCE
from api.tokens import DevIssuer
from bench._db import bench_database, free_port
from tenancy.database import create_owner_engine
from tenancy.provisioning import create_tenant
from tests.pgbouncer import pgbouncer

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"


@contextmanager
def server(app_spec: str, env: dict[str, str], cwd: Path = ROOT) -> Iterator[tuple[str, int]]:
    port = free_port()
    full_env = {**os.environ, **env, "GUNICORN_BIND": f"127.0.0.1:{port}",
                "GUNICORN_WORKERS": "2", "GUNICORN_THREADS": "4", "LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen([str(BIN / "gunicorn"), app_spec], cwd=cwd, env=full_env,  # noqa: S603
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                httpx.get(f"{base}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield base, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=20)


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
WRK = "/usr/bin/wrk"


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm may hold spaces: split after its closing parenthesis.
    head, _, rest = raw.rpartition(")")
    return [head.split(" (", 1)[1], *rest.split()]


def cpu_seconds(server_pid: int, pooler_pid: int = 0) -> tuple[float, float]:
    """CPU time used so far by the server's process tree and by every postgres process
    (plus the benchmark's PgBouncer, ``pooler_pid``)."""
    server = database = 0.0
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (st := _stat(int(entry.name))) is not None:
            stats[int(entry.name)] = st
    tree = {server_pid}
    for pid, st in sorted(stats.items()):
        if int(st[2]) in tree:  # field 4 of /proc/pid/stat: ppid
            tree.add(pid)
    for pid, st in stats.items():
        used = (int(st[12]) + int(st[13])) / CLOCK_TICKS  # utime + stime
        if pid in tree:
            server += used
        elif st[0] == "postgres" or pid == pooler_pid:
            database += used
    return server, database


@dataclass
class Load:
    rps: float
    requests: int
    server_cpu_us: float  # per request, the app server's processes
    database_cpu_us: float  # per request, all postgres processes (and the PgBouncer)


def wrk(url: str, token: str, duration: int, connections: int, server_pid: int = 0,
        pooler_pid: int = 0) -> Load:
    before = cpu_seconds(server_pid, pooler_pid) if server_pid else (0.0, 0.0)
    out = subprocess.run(  # noqa: S603
        [WRK, "-t2", f"-c{connections}", f"-d{duration}s",
         "-H", f"Authorization: Bearer {token}", url],
        check=True, capture_output=True, text=True).stdout
    after = cpu_seconds(server_pid, pooler_pid) if server_pid else (0.0, 0.0)
    if "Non-2xx" in out:
        raise RuntimeError(f"non-2xx responses from {url}:\n{out}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    count = re.search(r"(\d+) requests in", out)
    assert match and count, out
    n = int(count.group(1))
    return Load(rps=float(match.group(1)), requests=n,
                server_cpu_us=(after[0] - before[0]) / n * 1e6,
                database_cpu_us=(after[1] - before[1]) / n * 1e6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url", default=os.environ.get(
        "TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--duration", type=int, default=2)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--baseline", metavar="DIR",
                        help="also serve the API from this checkout (A/B against it)")
    parser.add_argument("--variants", action="store_true",
                        help="also measure the plain app with each tenancy piece added")
    parser.add_argument("--pooler", action="store_true",
                        help="also serve both through PgBouncer in transaction mode")
    parser.add_argument("--pool-size", type=int, default=4,
                        help="PgBouncer's server connections (default 4)")
    args = parser.parse_args()
    if not Path(WRK).is_file():
        raise SystemExit(f"{WRK} not found: this benchmark loads the servers with wrk "
                         "(Debian/Ubuntu: apt-get install -y wrk)")

    with bench_database(args.database_url) as bench, ExitStack() as pooler_stack:
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
        # Statistics and a visibility map, as autovacuum leaves them on a real server
        # (Azure's included): without them every query plans for an empty table. Some
        # servers, this machine's among them, run with autovacuum off.
        with owner.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(
                text(f"VACUUM (ANALYZE) {tenant.schema_name}.clients"))
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
        listing = "/api/v1/clients?page_size=20"
        targets: list[tuple[str, str, dict[str, str], str, Path]] = [
            ("plain", "bench.plain_app:app", {**plain_env, "BENCH_VARIANT": "plain"}, "/clients",
             ROOT),
            ("clinai", "wsgi:app", clinai_env, listing, ROOT),
        ]
        if args.variants:
            targets[1:1] = [
                (f"plain+{v}", "bench.plain_app:app", {**plain_env, "BENCH_VARIANT": v},
                 "/clients", ROOT) for v in ("token", "context", "audit")
            ]
        bouncer = None
        if args.pooler:
            bouncer = pooler_stack.enter_context(pgbouncer(
                bench.server_url, [config.app_role, make_url(config.admin_url).username or ""],
                pool_size=args.pool_size))
            pooled_app = bouncer.url(config.admin_url, username=config.app_role,
                                     password=config.app_password)
            targets += [
                ("plain@pgbouncer", "bench.plain_app:app",
                 {**plain_env, "BENCH_VARIANT": "plain", "BENCH_POOLED": "1",
                  "BENCH_DATABASE_URL": bouncer.url(config.admin_url)}, "/clients", ROOT),
                ("clinai@pgbouncer", "wsgi:app",
                 {**clinai_env, "DATABASE_APP_URL": pooled_app,
                  "DATABASE_APP_POOLER": "transaction"}, listing, ROOT),
            ]
        if args.baseline:  # another checkout of the API (say, the previous commit) to compare
            key = Path(args.baseline) / "instance" / "dev-issuer-key.pem"
            key.parent.mkdir(exist_ok=True)
            key.write_bytes((ROOT / "instance" / "dev-issuer-key.pem").read_bytes())
            targets.append(("baseline", "wsgi:app", clinai_env, listing, Path(args.baseline)))
        results: dict[str, list[float]] = {name: [] for name, *_ in targets}
        cpu: dict[str, list[tuple[float, float]]] = {name: [] for name, *_ in targets}
        with ExitStack() as stack:
            # Every server runs for the whole benchmark (an idle one costs nothing) and the
            # load alternates between them in short runs, so a slow spell of the shared
            # machine hits all of them alike instead of one round of one of them.
            bases = {}
            for name, spec, env, path, cwd in targets:
                base, pid = stack.enter_context(server(spec, env, cwd))
                bases[name] = (base + path, pid)
                wrk(base + path, token, 2, args.connections)  # warm-up
            for round_no in range(args.rounds):
                order = targets if round_no % 2 == 0 else targets[::-1]
                for name, *_ in order:
                    url, pid = bases[name]
                    load = wrk(url, token, args.duration, args.connections, pid,
                               bouncer.pid if bouncer is not None else 0)
                    results[name].append(load.rps)
                    cpu[name].append((load.server_cpu_us, load.database_cpu_us))
                    print(f"round {round_no + 1:2d} {name:16s} {load.rps:8.1f} req/s  CPU per "
                          f"request: server {load.server_cpu_us:6.0f} us, postgres "
                          f"{load.database_cpu_us:5.0f} us", flush=True)

    medians = {name: statistics.median(v) for name, v in results.items()}
    cpu_medians = {name: (statistics.median(s for s, _ in v), statistics.median(d for _, d in v))
                   for name, v in cpu.items()}
    base_rps = medians["plain"]
    base_cpu = sum(cpu_medians["plain"])
    print(f"\n{'target':16s} {'median req/s':>12s} {'vs plain':>9s} {'server us':>10s} "
          f"{'postgres us':>12s} {'CPU vs plain':>13s}")
    for name, value in medians.items():
        srv, pg = cpu_medians[name]
        print(f"{name:16s} {value:12.1f} {value / base_rps:9.3f} {srv:10.0f} {pg:12.0f} "
              f"{base_cpu / (srv + pg):13.3f}")
    # Each round measures plain and clinai back to back: the ratio within a round is less
    # exposed to the shared machine's noise than a ratio of medians across rounds.
    paired = [c / p for c, p in zip(results["clinai"], results["plain"], strict=True)]
    print("clinai/plain per round: " + ", ".join(f"{r:.3f}" for r in paired)
          + f"; median {statistics.median(paired):.3f}")
    summed = sum(results["clinai"]) / sum(results["plain"])
    print(f"clinai/plain over all rounds (sum of req/s): {summed:.3f}")
    if "baseline" in results:
        total = {name: sum(values) for name, values in results.items()}
        print(f"clinai/baseline over all rounds: {total['clinai'] / total['baseline']:.3f}; "
              f"baseline/plain: {total['baseline'] / total['plain']:.3f}")
    # CPU time per request (server processes + postgres) is what bounds throughput on a
    # CPU-bound machine, and other load moves it far less than it moves req/s.
    cpu_ratio = base_cpu / sum(cpu_medians["clinai"])
    print(f"plain/clinai CPU per request (throughput ratio predicted by CPU): {cpu_ratio:.3f}")
    summary: dict[str, Any] = {"medians": medians, "ratio": medians["clinai"] / base_rps,
                               "paired_ratios": paired,
                               "paired_ratio_median": statistics.median(paired),
                               "summed_ratio": summed,
                               "cpu_us_per_request": cpu_medians, "cpu_ratio": cpu_ratio,
                               "rounds": results, "duration_s": args.duration,
                               "connections": args.connections}
    if "clinai@pgbouncer" in results:
        # The same ratios with both servers behind the PgBouncer, from the same run.
        clinai, plain = results["clinai@pgbouncer"], results["plain@pgbouncer"]
        pooled_paired = [c / p for c, p in zip(clinai, plain, strict=True)]
        pooled = {
            "ratio": medians["clinai@pgbouncer"] / medians["plain@pgbouncer"],
            "paired_ratio_median": statistics.median(pooled_paired),
            "summed_ratio": sum(clinai) / sum(plain),
            "cpu_ratio": sum(cpu_medians["plain@pgbouncer"])
            / sum(cpu_medians["clinai@pgbouncer"]),
            "clinai_pooled_vs_direct": medians["clinai@pgbouncer"] / medians["clinai"],
            "pool_size": args.pool_size,
        }
        print("clinai@pgbouncer/plain@pgbouncer per round: "
              + ", ".join(f"{r:.3f}" for r in pooled_paired)
              + f"; median {pooled['paired_ratio_median']:.3f}")
        print(f"through PgBouncer ({args.pool_size} server connections): clinai/plain "
              f"(medians) {pooled['ratio']:.3f}, over all rounds {pooled['summed_ratio']:.3f}, "
              f"CPU {pooled['cpu_ratio']:.3f}; directly: {summary['ratio']:.3f}, "
              f"{summed:.3f}, CPU {cpu_ratio:.3f}; clinai through PgBouncer / clinai direct "
              f"(medians): {pooled['clinai_pooled_vs_direct']:.3f}")
        summary["pooled"] = pooled
    print(json.dumps(summary))
    sys.exit(0)


if __name__ == "__main__":
    main()

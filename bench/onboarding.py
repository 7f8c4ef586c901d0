"""Benchmark ``POST /api/v1/onboarding/tenants`` against the real gunicorn server.

Run from the project root (loopback only; everything created is dropped)::

    .venv/bin/python -m bench.onboarding --requests 50

On a fresh database ``clinai_bench_<suffix>`` with its own roles: ``flask tenancy upgrade``,
then ``gunicorn wsgi:app`` on 127.0.0.1:<free port> (2 workers, APP_ENV=development),
then ``--requests`` sequential onboarding requests over one keep-alive connection, each
with a token for a new subject minted in-process by the development issuer (same key
file as the server's). ``--warmup`` requests go first and are reported apart. The server
logs at INFO, so its access lines give the server-side time of every request (matched by
``X-Request-ID``). gunicorn is stopped by its PID at the end.

Prints human-readable lines, then one JSON line with every number.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import IO, Any

import httpx

from api import create_app
from bench._db import (
    ROOT,
    VENV_BIN,
    BenchDatabase,
    Deadline,
    bench_database,
    default_server_url,
    free_port,
    run_main,
    summary_ms,
    watchdog,
)

P50_TARGET_MS = 300.0
ROUTE = "/api/v1/onboarding/tenants"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


def flask_upgrade(bench: BenchDatabase) -> float:
    started = time.perf_counter()
    # Fixed argv: the project's own flask binary with literal arguments.
    result = subprocess.run(  # noqa: S603
        [str(VENV_BIN / "flask"), "tenancy", "upgrade"], cwd=ROOT, env=bench.env(),
        capture_output=True, text=True, timeout=300, check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"flask tenancy upgrade failed:\n{result.stdout}\n{result.stderr}")
    return time.perf_counter() - started


def mint_tokens(bench: BenchDatabase, count: int) -> tuple[list[str], float]:
    """Mint ``count`` onboarding tokens (no tenant claim) for fresh subjects."""
    app = create_app(bench.app_settings())
    try:
        issuer = app.extensions["clinai_dev_issuer"]
        tenant_claim, role_claim = app.config["AUTH_TENANT_CLAIM"], app.config["AUTH_ROLE_CLAIM"]
        started = time.perf_counter()
        tokens = [issuer.mint(subject=f"bench-onboard-{uuid.uuid4()}", tenant_claim=tenant_claim,
                              role_claim=role_claim) for _ in range(count)]
        per_token_ms = (time.perf_counter() - started) * 1000 / max(count, 1)
    finally:
        app.extensions["clinai_db"].dispose()
    return tokens, per_token_ms


def start_server(bench: BenchDatabase, port: int, log: IO[bytes]) -> subprocess.Popen[bytes]:
    env = bench.env(GUNICORN_BIND=f"127.0.0.1:{port}", GUNICORN_WORKERS="2", LOG_LEVEL="INFO")
    # Fixed argv: the project's own gunicorn binary with literal arguments.
    return subprocess.Popen(  # noqa: S603
        [str(VENV_BIN / "gunicorn"), "wsgi:app"], cwd=ROOT, env=env,
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )


def wait_ready(client: httpx.Client, server: subprocess.Popen[bytes], log_path: Path) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < START_TIMEOUT_S:
        if server.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {server.returncode}:\n"
                               f"{log_path.read_text(errors='replace')[-4000:]}")
        try:
            if client.get("/healthz", timeout=2).status_code == 200:
                return time.perf_counter() - started
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"gunicorn not ready after {START_TIMEOUT_S:.0f} s:\n"
                       f"{log_path.read_text(errors='replace')[-4000:]}")


def stop_server(server: subprocess.Popen[bytes]) -> int | None:
    """Stop the gunicorn master we started (it stops its own workers); return its exit code."""
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=STOP_TIMEOUT_S)
    return server.returncode


def onboard(client: httpx.Client, token: str, i: int, deadline: Deadline) -> tuple[str, float]:
    deadline.check()
    request_id = f"bench-{uuid.uuid4().hex}"
    started = time.perf_counter()
    response = client.post(ROUTE, json={"name": f"Bench practice {i}"},
                           headers={"Authorization": f"Bearer {token}",
                                    "X-Request-ID": request_id})
    elapsed_ms = (time.perf_counter() - started) * 1000
    if response.status_code != 201:
        raise RuntimeError(f"onboarding request {i} returned {response.status_code}: "
                           f"{response.text[:500]}")
    return request_id, elapsed_ms


def server_durations(log_path: Path) -> dict[str, float]:
    """Map request id -> server-side duration_ms from the app's JSON access lines."""
    durations: dict[str, float] = {}
    for line in log_path.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("route") == ROUTE and entry.get("duration_ms") is not None:
            durations[entry.get("client_request_id", "")] = float(entry["duration_ms"])
    return durations


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--database-url", default=default_server_url(),
                        help="administrative server URL (loopback only); default "
                             "$TEST_DATABASE_URL or postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=2,
                        help="requests sent first and reported apart (not in the percentiles)")
    parser.add_argument("--timeout", type=int, default=600,
                        help="give up (and clean up) after this many seconds")
    args = parser.parse_args(argv)

    results: dict[str, Any] = {"benchmark": "onboarding", "requests": args.requests,
                               "warmup": args.warmup}
    with watchdog(args.timeout) as deadline, bench_database(args.database_url) as bench, \
            tempfile.TemporaryDirectory(prefix="clinai_bench_gunicorn_") as tmp:
        print(f"database {bench.name} on {args.database_url} (roles {bench.owner_role}, "
              f"{bench.app_role})")
        results["flask_upgrade_s"] = round(flask_upgrade(bench), 2)
        print(f"flask tenancy upgrade: {results['flask_upgrade_s']} s wall")

        tokens, mint_ms = mint_tokens(bench, args.warmup + args.requests)
        results["mint_ms_per_token"] = round(mint_ms, 2)
        print(f"minted {len(tokens)} tokens in-process ({mint_ms:.2f} ms each)")

        port = free_port()
        log_path = Path(tmp) / "gunicorn.log"
        with log_path.open("wb") as log:
            server = start_server(bench, port, log)
            print(f"gunicorn pid {server.pid} on 127.0.0.1:{port}")
            try:
                with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                    results["server_ready_s"] = round(wait_ready(client, server, log_path), 2)
                    print(f"/healthz answered after {results['server_ready_s']} s")

                    health = []
                    for _ in range(20):
                        t0 = time.perf_counter()
                        client.get("/healthz").raise_for_status()
                        health.append((time.perf_counter() - t0) * 1000)
                    results["healthz"] = summary_ms(health)

                    warm = [onboard(client, tokens[i], i, deadline) for i in range(args.warmup)]
                    timed = [onboard(client, tokens[i], i, deadline)
                             for i in range(args.warmup, args.warmup + args.requests)]
            finally:
                results["gunicorn_exit"] = stop_server(server)
                print(f"gunicorn pid {server.pid} stopped (exit {results['gunicorn_exit']})")

        client_ms = [ms for _, ms in timed]
        results["warmup_ms"] = [round(ms, 1) for _, ms in warm]
        results["client"] = client_stats = summary_ms(client_ms)
        on_server = server_durations(log_path)
        server_ms = [on_server[rid] for rid, _ in timed if rid in on_server]
        results["server"] = server_stats = summary_ms(server_ms)
        results["target_p50_ms"] = P50_TARGET_MS
        results["meets_target"] = client_stats["p50_ms"] <= P50_TARGET_MS

        h = results["healthz"]
        print(f"GET /healthz x20: p50 {h['p50_ms']} ms, p95 {h['p95_ms']} ms, "
              f"max {h['max_ms']} ms")
        print(f"warm-up onboarding requests: {', '.join(map(str, results['warmup_ms']))} ms")
        print(f"POST {ROUTE} x{len(client_ms)} (client): p50 {client_stats['p50_ms']} ms, "
              f"p95 {client_stats['p95_ms']} ms, max {client_stats['max_ms']} ms; target p50 "
              f"<= {P50_TARGET_MS:.0f} ms: "
              f"{'OK' if results['meets_target'] else 'MISSED'}")
        print(f"  server-side (access log, {server_stats['n']} matched): p50 "
              f"{server_stats['p50_ms']} ms, p95 {server_stats['p95_ms']} ms, "
              f"max {server_stats['max_ms']} ms")

    print(json.dumps(results, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))

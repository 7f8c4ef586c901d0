"""LLM gateway overhead: ``Gateway.complete`` vs a direct SDK call to the same endpoint.

Run from the project root (loopback only; everything created is dropped)::

    .venv/bin/python -m bench.llm_gateway [--calls 300] [--warmup 30] [--sentences 12]

On a fresh database ``clinai_bench_<suffix>`` with its own roles, one tenant is
provisioned (``tenancy.provisioning.create_tenant``) and a ``Ledger`` is built on an
app-role engine (``tenancy.database.create_app_engine``, the pool ``api.llm`` uses) with
limits high enough never to refuse. ``llm.simulator.serve`` answers on 127.0.0.1; one
``AzureOpenAI`` client (``llm.client.create_client``: API key, ``max_retries=0``) is used
by both paths, so they share the keep-alive connection and every client setting:

- direct:  ``client.chat.completions.create`` with the already-pseudonymised draft
  prompt (the very bytes the gateway sends);
- gateway: ``Gateway.complete`` with the real prompt and a ``Pseudonymizer``: mask,
  count, reserve (one transaction), the same SDK call, settle + ledger row (one
  transaction), restore.

``serve()`` writes a response's headers and body in separate sends with Nagle's algorithm
on, so every non-streamed reply stalls ~40 ms on the client's delayed ACK; no real
endpoint behaves like that, and the stall would drown the difference measured here.
The benchmark therefore sets TCP_NODELAY on the server's connections (a handler
subclass); ``--keep-nagle`` measures the simulator as it is.

The calls alternate (direct/gateway, then gateway/direct, ...) after ``--warmup`` pairs
that are not counted, so drift of the machine hits both alike. The simulator runs in a
thread of this process, so its work shares the GIL with the caller on both paths.
Overhead is reported as the difference of the percentiles and as percentiles of the
per-pair difference, followed by a breakdown of the gateway's own steps measured alone.

Prints human-readable lines, then one JSON line with every number.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from http.server import ThreadingHTTPServer
from socketserver import StreamRequestHandler
from typing import Any

import psycopg
from openai import AzureOpenAI
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from bench._db import (
    BenchDatabase,
    Deadline,
    bench_database,
    default_server_url,
    percentile,
    run_main,
    watchdog,
)
from llm.client import DEFAULT_DEPLOYMENT, ProviderConfig, create_client
from llm.gateway import Gateway, RetryPolicy
from llm.ledger import Ledger, Limits, Reservation, UsageRecord
from llm.prompts import DRAFT_MAX_TOKENS, draft_messages
from llm.pseudonymize import Identity, Pseudonymizer
from llm.simulator import Simulator, serve
from llm.tokens import count_messages
from tenancy.actor import Actor
from tenancy.database import create_app_engine, create_owner_engine
from tenancy.provisioning import create_tenant

P50_TARGET_MS = 3.0
ADMIN = "bench-llm-admin"
PERSON = Identity(first_name="Quentin", last_name="Quenstedt",
                  email="q.quenstedt@example.org", phone="+49 30 1234567",
                  address="Hauptstraße 5, 10115 Berlin")
SENTENCES = (
    "Quentin Quenstedt says he slept better this week.",
    "Mr. Quenstedt walked daily and kept his appointments.",
    "Quenstedt's mood seems brighter than last month.",
    "He describes fewer intrusive thoughts in the evenings.",
    "Work remains stressful, especially the Monday meetings.",
    "Quentin practised the breathing exercise before two of them.",
    "He reports that his sister visited and that it went well.",
    "Appetite is normal; alcohol use unchanged at one glass on weekends.",
    "He wants to keep the weekly rhythm for now.",
    "We agreed to try a graded exposure at work next week.",
    "He can be reached at 030 1234567 if the appointment moves.",
    "No risk indicators were reported in this session.",
)
UNLIMITED = Limits(monthly_tokens=10**12, requests_per_minute=10**9, tokens_per_minute=10**12)


class TimedLedger(Ledger):
    """The ledger, timing its two transactions inside the measured gateway calls."""

    def __init__(self, engine: Engine, limits: Limits) -> None:
        super().__init__(engine, limits)
        self.reserve_ms: list[float] = []
        self.settle_ms: list[float] = []

    def reserve(self, tenant_id: uuid.UUID, tokens: int) -> Reservation:
        started = time.perf_counter()
        try:
            return super().reserve(tenant_id, tokens)
        finally:
            self.reserve_ms.append((time.perf_counter() - started) * 1000)

    def settle(self, reservation: Reservation, record: UsageRecord) -> None:
        started = time.perf_counter()
        try:
            super().settle(reservation, record)
        finally:
            self.settle_ms.append((time.perf_counter() - started) * 1000)


def serve_simulator(simulator: Simulator, *, nodelay: bool) -> ThreadingHTTPServer:
    """``llm.simulator.serve``, optionally with TCP_NODELAY on every accepted connection."""
    server = serve(simulator)
    if nodelay:
        handler: type[StreamRequestHandler] = server.RequestHandlerClass  # type: ignore[assignment]

        class NoDelay(handler):  # type: ignore[valid-type,misc]
            def setup(self) -> None:
                super().setup()
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        server.RequestHandlerClass = NoDelay
    return server


def transcript(sentences: int) -> str:
    return " ".join(SENTENCES[i % len(SENTENCES)] for i in range(sentences))


def timed_ms(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def stats(values_ms: list[float]) -> dict[str, float | int]:
    return {"n": len(values_ms),
            "p50_ms": round(percentile(values_ms, 50), 3),
            "p99_ms": round(percentile(values_ms, 99), 3),
            "mean_ms": round(statistics.fmean(values_ms), 3) if values_ms else float("nan")}


def ledger_state(bench: BenchDatabase, tenant_id: uuid.UUID) -> dict[str, int]:
    """Count the ledger rows and read the counters as the admin login (bypasses RLS)."""
    conninfo = make_url(bench.url).set(drivername="postgresql").render_as_string(
        hide_password=False)
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
        rows = conn.execute("SELECT count(*) FROM public.llm_usage WHERE tenant_id = %s "
                            "AND status = 'ok'", (tenant_id,)).fetchone()
        budget = conn.execute("SELECT used, reserved FROM public.llm_budgets "
                              "WHERE tenant_id = %s", (tenant_id,)).fetchone()
    assert rows is not None and budget is not None
    return {"ok_rows": int(rows[0]), "used": int(budget[0]), "reserved": int(budget[1])}


def measure(client: AzureOpenAI, gateway: Gateway, ctx: Actor,
            messages: list[dict[str, Any]], pseudonymizer: Pseudonymizer, *, calls: int,
            warmup: int, max_tokens: int, deadline: Deadline) -> tuple[list[float], list[float]]:
    """Alternate direct and gateway calls; return the timed (direct, gateway) latencies."""
    masked = pseudonymizer.pseudonymize_messages(messages)

    def direct() -> None:
        response = client.chat.completions.create(
            model=gateway.deployment, messages=masked,  # type: ignore[arg-type]
            max_tokens=max_tokens, timeout=gateway.retry.total_timeout)
        assert response.choices[0].message.content

    def through_gateway() -> None:
        # Masking is the caller's step now (api.common.mask_for_model): timed here too.
        completion = gateway.complete(ctx, "note_draft",
                                      pseudonymizer.pseudonymize_messages(messages),
                                      max_tokens=max_tokens, pseudonymizer=pseudonymizer)
        assert "Quenstedt" in completion.text and completion.usage.source == "provider"

    direct_ms: list[float] = []
    gateway_ms: list[float] = []
    for i in range(warmup + calls):
        deadline.check()
        if i % 2 == 0:
            d, g = timed_ms(direct), timed_ms(through_gateway)
        else:
            g, d = timed_ms(through_gateway), timed_ms(direct)
        if i >= warmup:
            direct_ms.append(d)
            gateway_ms.append(g)
    return direct_ms, gateway_ms


def breakdown(ledger: Ledger, tenant_id: uuid.UUID, messages: list[dict[str, Any]],
              pseudonymizer: Pseudonymizer, reply: str, n: int) -> dict[str, float]:
    """Median time of each of the gateway's own steps, measured alone (ms)."""
    masked = pseudonymizer.pseudonymize_messages(messages)
    masked_reply = pseudonymizer.pseudonymize(reply)
    record = UsageRecord(tenant_id=tenant_id, user_id=ADMIN, feature="bench",
                         deployment=DEFAULT_DEPLOYMENT, prompt_tokens=0, completion_tokens=0,
                         cached_tokens=0, reasoning_tokens=0, cost=Decimal(0),
                         price_version="bench", currency="EUR", latency_ms=0, attempts=1,
                         status="ok", usage_source="none", request_id=None)
    steps: dict[str, Callable[[], object]] = {
        "pseudonymize_messages": lambda: pseudonymizer.pseudonymize_messages(messages),
        "count_messages": lambda: count_messages(masked),
        "restore": lambda: pseudonymizer.restore(masked_reply),
        "pseudonymizer_for_people": lambda: Pseudonymizer.for_people([PERSON]),
    }
    result = {name: round(statistics.median(timed_ms(step) for _ in range(n)), 3)
              for name, step in steps.items()}
    reserve: list[float] = []
    settle: list[float] = []
    for _ in range(n):
        started = time.perf_counter()
        reservation = ledger.reserve(tenant_id, 1000)
        reserved = time.perf_counter()
        ledger.settle(reservation, record)
        reserve.append((reserved - started) * 1000)
        settle.append((time.perf_counter() - reserved) * 1000)
    result["ledger_reserve"] = round(statistics.median(reserve), 3)
    result["ledger_settle"] = round(statistics.median(settle), 3)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--database-url", default=default_server_url(),
                        help="administrative server URL (loopback only); default "
                             "$TEST_DATABASE_URL or postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--calls", type=int, default=300, help="timed calls per path")
    parser.add_argument("--warmup", type=int, default=30, help="untimed pairs first")
    parser.add_argument("--sentences", type=int, default=12,
                        help="transcript length in sentences (the prompt size)")
    parser.add_argument("--max-tokens", type=int, default=DRAFT_MAX_TOKENS)
    parser.add_argument("--keep-nagle", action="store_true",
                        help="leave Nagle's algorithm on in the simulator's server")
    parser.add_argument("--timeout", type=int, default=600,
                        help="give up (and clean up) after this many seconds")
    args = parser.parse_args(argv)

    results: dict[str, Any] = {"benchmark": "llm_gateway", "calls": args.calls,
                               "warmup": args.warmup, "sentences": args.sentences,
                               "max_tokens": args.max_tokens,
                               "server_nodelay": not args.keep_nagle}
    with watchdog(args.timeout) as deadline, bench_database(args.database_url) as bench:
        print(f"database {bench.name} on {args.database_url} (roles {bench.owner_role}, "
              f"{bench.app_role})")
        config = bench.config()
        owner = create_owner_engine(config)
        try:
            tenant = create_tenant(owner, name="Bench LLM", admin_user_id=ADMIN,
                                   app_role=bench.app_role)
        finally:
            owner.dispose()
        engine = create_app_engine(config, pool_size=5, max_overflow=20)
        simulator = Simulator()
        server = serve_simulator(simulator, nodelay=not args.keep_nagle)
        port = server.server_address[1]
        endpoint = f"http://127.0.0.1:{port}"
        client = create_client(ProviderConfig(endpoint=endpoint, api_key="bench-key",
                                               deployment=DEFAULT_DEPLOYMENT,
                                               request_timeout=60.0))
        print(f"simulator on {endpoint}; tenant {tenant.id}")
        try:
            ledger = TimedLedger(engine, UNLIMITED)
            gateway = Gateway(client=client, deployment=DEFAULT_DEPLOYMENT, ledger=ledger,
                              retry=RetryPolicy(max_attempts=3, total_timeout=60.0))
            ctx = Actor(tenant_id=tenant.id, user_id=ADMIN, role="admin", request_id="bench")
            messages = draft_messages("SOAP", transcript(args.sentences), modality="video",
                                      duration_minutes=50)
            pseudonymizer = Pseudonymizer.for_people([PERSON])
            results["prompt_tokens"] = count_messages(
                pseudonymizer.pseudonymize_messages(messages))

            direct_ms, gateway_ms = measure(
                client, gateway, ctx, messages, pseudonymizer, calls=args.calls,
                warmup=args.warmup, max_tokens=args.max_tokens, deadline=deadline)
            timed = slice(-args.calls, None)  # the ledger calls of the timed gateway calls
            results["in_call_ledger"] = {"reserve": stats(ledger.reserve_ms[timed]),
                                         "settle": stats(ledger.settle_ms[timed])}
            sent = simulator.requests
            assert len(sent) == 2 * (args.warmup + args.calls), len(sent)
            assert all("Quenstedt" not in json.dumps(r) for r in sent)
            state = ledger_state(bench, tenant.id)
            assert state["ok_rows"] == args.warmup + args.calls, state
            assert state["reserved"] == 0, state
            results["ledger"] = state
            reply = gateway.complete(ctx, "note_draft",
                                     pseudonymizer.pseudonymize_messages(messages),
                                     max_tokens=args.max_tokens,
                                     pseudonymizer=pseudonymizer).text
            results["steps_median_ms"] = breakdown(ledger, tenant.id, messages,
                                                   pseudonymizer, reply, 100)
        finally:
            server.shutdown()
            server.server_close()
            client.close()
            engine.dispose()
            print(f"simulator on {endpoint} stopped")

    direct, through = stats(direct_ms), stats(gateway_ms)
    paired = [g - d for d, g in zip(direct_ms, gateway_ms, strict=True)]
    results["direct"], results["gateway"] = direct, through
    results["overhead"] = {
        "p50_ms": round(float(through["p50_ms"]) - float(direct["p50_ms"]), 3),
        "p99_ms": round(float(through["p99_ms"]) - float(direct["p99_ms"]), 3),
        "paired_p50_ms": round(percentile(paired, 50), 3),
        "paired_p99_ms": round(percentile(paired, 99), 3),
    }
    results["target_p50_ms"] = P50_TARGET_MS
    results["meets_target"] = results["overhead"]["p50_ms"] <= P50_TARGET_MS

    o = results["overhead"]
    print(f"prompt: {results['prompt_tokens']} tokens; {args.calls} timed calls per path "
          f"after {args.warmup} warm-up pairs, interleaved")
    print(f"direct SDK call     : p50 {direct['p50_ms']:7.3f} ms   p99 {direct['p99_ms']:7.3f} ms")
    print(f"Gateway.complete    : p50 {through['p50_ms']:7.3f} ms   "
          f"p99 {through['p99_ms']:7.3f} ms")
    print(f"overhead (gw - sdk) : p50 {o['p50_ms']:7.3f} ms   p99 {o['p99_ms']:7.3f} ms")
    print(f"per-pair difference : p50 {o['paired_p50_ms']:7.3f} ms   "
          f"p99 {o['paired_p99_ms']:7.3f} ms")
    print(f"target overhead p50 <= {P50_TARGET_MS:.0f} ms: "
          f"{'OK' if results['meets_target'] else 'MISSED'}")
    inside = results["in_call_ledger"]
    print(f"ledger inside calls : reserve p50 {inside['reserve']['p50_ms']} ms, settle p50 "
          f"{inside['settle']['p50_ms']} ms")
    print("gateway steps alone (median ms): " + ", ".join(
        f"{k} {v}" for k, v in results["steps_median_ms"].items()))
    print(json.dumps(results, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))

"""Billing month export: 1,000 practices and 1,000,000 ledger rows, time and memory.

In a throw-away database (``bench._db.bench_database``, dropped at the end) and a
temporary local storage folder:

1. Seeds, as the superuser with set-based ``INSERT ... SELECT ... FROM generate_series``
   (the ledger's insert trigger assigns ``billing_period``): ``--prev-rows`` rows in the
   month before ``--period``, which is then closed (``close_period``); ``--rows`` rows of
   ``--practices`` practices in ``--period`` (spread evenly over the month, features
   ``note_draft``/``case_chat`` 60/40, deployment ``gpt-4o-mini``, a price change on the
   15th at 12:00 UTC, ~2% ``usage_source='estimated'``, ~1% failed with
   ``usage_source='none'`` and zero tokens, EUR); ``--late-rows`` rows started on the
   last day of the closed month, which become corrections of ``--period``; and
   ``--small-rows`` rows of ``--small-practices`` practices in the month after (the 1/10
   scale run that shows whether memory grows with the month). Then ``VACUUM ANALYZE``
   (as autovacuum would after a bulk load). The seed time is printed; it is not measured.
2. Times ``export_period`` of both months, ``--repeat`` times each, every run in a fresh
   (spawned) child process: wall time of the call, the child's peak RSS before and
   after it (``VmHWM``; see ``_rss_mb``), files written, line items, bytes in storage.
   Also, per run, the line-item query alone (``ledger_totals`` plus draining
   ``line_items``, no files) to split database and fetch time from file building.
3. Times ``close_period`` of both months (``now`` one hour after the grace window;
   between repeats the bench deletes the month's ``billing_periods`` row as the superuser
   to close it again), then ``export_period`` of the closed, sealed month (verify only),
   and checks that every file is byte-identical across runs (manifest SHA-256 and every
   file's own SHA-256) and that the close changed ``manifest.json`` only.

``--explain`` prints EXPLAIN (ANALYZE, BUFFERS) of the line-item and totals queries as
the owner role, and the line-item query's plan as the export runs it (server-side
cursor, via ``auto_explain``); ``--profile`` runs one export of ``--period`` under
cProfile in this process and prints the top functions.

    .venv/bin/python -m bench.billing_export [--rows 1000000] [--practices 1000]
        [--small-rows 100000] [--small-practices 100] [--repeat 3] [--explain] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import hashlib
import io
import json
import multiprocessing
import pstats
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import Engine, text

from api.billing import files as billing_files
from api.billing import periods as billing_periods
from api.billing.files import ledger_totals, line_items
from api.billing.periods import (
    ExportReport,
    closable_from,
    close_period,
    export_period,
    period_bounds,
)
from bench._db import (
    BenchDatabase,
    Deadline,
    _conninfo,
    bench_database,
    default_server_url,
    run_main,
    watchdog,
)
from storage.base import BILLING_CONTAINER, Storage
from storage.local import DownloadSigner, LocalStorage
from tenancy.database import DatabaseConfig, create_owner_engine

SIGNING_KEY = b"b" * 32
GRACE_HOURS = 48  # the BILLING_GRACE_HOURS default (api/settings.py)
DEPLOYMENT = "gpt-4o-mini"
# (input, cached input, output) per 1M tokens, EUR: before and after the mid-month change.
PRICES_BEFORE = ("0.138", "0.069", "0.552")
PRICES_AFTER = ("0.147", "0.0735", "0.588")

# One ledger row per g.i; every choice comes from hashes of g.i (deterministic, so two
# bench runs seed the same rows). Practices are 00000000-0000-4000-8000-<12 hex digits>.
_SEED = """
INSERT INTO public.llm_usage (tenant_id, user_id, feature, deployment, prompt_tokens,
    completion_tokens, cached_tokens, reasoning_tokens, cost, price_version, currency,
    latency_ms, attempts, status, usage_source, started_at, created_at)
SELECT t.tenant_id, 'bench-user-' || (g.i / %(practices)s) %% 5, s.feature, %(deployment)s,
       k.prompt, k.completion, k.cached, 0,
       CASE WHEN s.source = 'none' THEN 0
            ELSE round(((k.prompt - k.cached) * p.input + k.cached * p.cached_input
                        + k.completion * p.output) / 1000000, 8) END,
       p.version, 'EUR', s.latency, 1, s.status, s.source,
       t.started_at, t.started_at + s.latency * interval '1 millisecond'
FROM generate_series(0, %(rows)s - 1) AS g(i)
CROSS JOIN LATERAL (SELECT
    ('00000000-0000-4000-8000-' || lpad(to_hex(g.i %% %(practices)s), 12, '0'))::uuid
        AS tenant_id,
    %(start)s::timestamptz + (g.i + 0.5) / %(rows)s
        * (%(end)s::timestamptz - %(start)s::timestamptz) AS started_at,
    hashint8extended(g.i, %(salt)s) & 2147483647 AS h1,
    hashint8extended(g.i, %(salt)s + 1) & 2147483647 AS h2,
    hashint8extended(g.i, %(salt)s + 2) & 2147483647 AS h3) t
CROSS JOIN LATERAL (SELECT
    CASE WHEN t.h1 %% 1000 < 10 THEN 'none'
         WHEN t.h1 %% 1000 < 30 THEN 'estimated' ELSE 'provider' END AS source,
    CASE WHEN t.h1 %% 1000 < 10 THEN 'failed' ELSE 'ok' END AS status,
    CASE WHEN t.h1 / 1000 %% 10 < 6 THEN 'note_draft' ELSE 'case_chat' END AS feature,
    (200 + t.h2 %% 9800)::int AS latency) s
CROSS JOIN LATERAL (SELECT
    CASE WHEN s.source = 'none' THEN 0 ELSE (300 + t.h3 %% 3700)::int END AS prompt,
    CASE WHEN s.source = 'none' THEN 0 ELSE (20 + t.h2 / 10000 %% 900)::int END
        AS completion,
    CASE WHEN s.source = 'provider' AND t.h3 / 3700 %% 3 = 0
         THEN ((300 + t.h3 %% 3700) / 256 * 128)::int ELSE 0 END AS cached) k
CROSS JOIN LATERAL (SELECT
    CASE WHEN t.started_at < %(change)s THEN %(v_before)s ELSE %(v_after)s END AS version,
    CASE WHEN t.started_at < %(change)s THEN %(in_before)s ELSE %(in_after)s END::numeric
        AS input,
    CASE WHEN t.started_at < %(change)s THEN %(ci_before)s ELSE %(ci_after)s END::numeric
        AS cached_input,
    CASE WHEN t.started_at < %(change)s THEN %(out_before)s ELSE %(out_after)s END::numeric
        AS output) p
"""


def _shift(period: str, months: int) -> str:
    year, month = (int(x) for x in period.split("-"))
    index = year * 12 + month - 1 + months
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def _change(period: str) -> dt.datetime:
    """The month's price change: the 15th, 12:00 UTC."""
    return period_bounds(period)[0] + dt.timedelta(days=14, hours=12)


def _version(at: dt.datetime) -> str:
    return f"{at:%Y-%m-%dT%H}.{DEPLOYMENT}"


def seed(server: str, period: str, rows: int, practices: int, *, salt: int,
         start: dt.datetime | None = None, end: dt.datetime | None = None) -> float:
    """Insert ``rows`` ledger rows started in [start, end) (default: the whole month);
    return the seconds it took."""
    first, last = period_bounds(period)
    change = _change(period)
    params = {
        "rows": rows, "practices": practices, "salt": salt, "deployment": DEPLOYMENT,
        "start": start or first, "end": end or last, "change": change,
        "v_before": _version(_change(_shift(period, -1))), "v_after": _version(change),
        **{f"{key}_before": value for key, value in zip(("in", "ci", "out"), PRICES_BEFORE,
                                                        strict=True)},
        **{f"{key}_after": value for key, value in zip(("in", "ci", "out"), PRICES_AFTER,
                                                       strict=True)},
    }
    started = time.perf_counter()
    with psycopg.connect(server) as conn:
        conn.execute(_SEED, params)
    return time.perf_counter() - started


def vacuum(server: str) -> float:
    started = time.perf_counter()
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) public.llm_usage")
    return time.perf_counter() - started


def reopen(server: str, period: str) -> None:
    """Undo a close (bench only: lets ``close_period`` be timed more than once)."""
    with psycopg.connect(server) as conn:
        conn.execute("DELETE FROM public.billing_periods WHERE period = %s", (period,))


def _ledger_rows(server: str, period: str) -> dict[str, int]:
    with psycopg.connect(server) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT tenant_id), "
            "count(*) FILTER (WHERE to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM') "
            "<> billing_period) FROM public.llm_usage WHERE billing_period = %s",
            (period,)).fetchone()
    assert row is not None
    return {"rows": row[0], "practices": row[1], "late_rows": row[2]}


# -- measured in a child process -----------------------------------------------------------


def _rss_mb(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process, in MB (Linux).

    Not ``ru_maxrss``: Linux carries the parent's peak over the fork and exec that start a
    spawned child, so a child's ``ru_maxrss`` never reads below the bench's own RSS (after
    ``--profile`` that hid a child's growth entirely). ``VmHWM`` belongs to the child's
    own address space.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: KiB


def _child(config: DatabaseConfig, root: str, period: str, action: str,
           now: dt.datetime | None) -> dict[str, Any]:
    """One measured call in a fresh interpreter, so its peak RSS is this call's alone."""
    engine = create_owner_engine(config)
    store = LocalStorage(Path(root), DownloadSigner(SIGNING_KEY))
    with engine.connect() as conn:  # connect (and its imports) before the baseline
        conn.execute(text("SELECT 1"))
    before = _rss_mb("VmHWM")
    started = time.perf_counter()
    out: dict[str, Any] = {}
    if action == "query":
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                totals = ledger_totals(conn, period)
                out["totals_s"] = time.perf_counter() - started
                out["line_items"] = sum(1 for _ in line_items(conn, period))
                out["ledger_rows"] = sum(t["rows"] for t in totals.values())
    else:
        if action == "close":
            assert now is not None
            # Time the files' part of the close apart from its lock and insert (wrapping
            # the module's ``_export`` in this child only; the code is not changed).
            inner, spent = billing_periods._export, []

            def timed(engine: Engine, store: Storage, period: str) -> ExportReport:
                begun = time.perf_counter()
                try:
                    return inner(engine, store, period)
                finally:
                    spent.append(time.perf_counter() - begun)

            billing_periods._export = timed
            outcome = close_period(engine, store, period, now=now, grace_hours=GRACE_HOURS)
            out["closed_now"] = outcome.closed_now
            out["files_s"] = sum(spent)
            report = outcome.report
        else:
            report = export_period(engine, store, period)
        out |= {"practices": report.practices, "line_items": report.line_items,
                "ledger_rows": report.ledger_rows, "written": report.written,
                "verified": report.verified, "restored": len(report.restored),
                "mismatched": len(report.mismatched), "closed": report.closed,
                "manifest_sha256": report.manifest_sha256}
    out["seconds"] = time.perf_counter() - started
    out["rss_before_mb"] = before
    out["rss_peak_mb"] = _rss_mb("VmHWM")
    engine.dispose()
    return out


def in_child(config: DatabaseConfig, root: str, period: str, action: str,
             now: dt.datetime | None = None) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        result: dict[str, Any] = pool.submit(_child, config, root, period, action,
                                             now).result()
    return result


# -- checks and output ----------------------------------------------------------------------


def stored_files(root: str, period: str) -> dict[str, str]:
    """Every stored file of the month: name -> SHA-256 of its bytes."""
    base = Path(root) / BILLING_CONTAINER / period
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(base.iterdir()) if p.is_file()}


def stored_sizes(root: str, period: str) -> dict[str, int]:
    base = Path(root) / BILLING_CONTAINER / period
    return {p.name: p.stat().st_size for p in base.iterdir() if p.is_file()}


@dataclass
class Series:
    """The runs of one measurement."""

    label: str
    runs: list[dict[str, Any]]

    def values(self, key: str) -> list[float]:
        return [float(run[key]) for run in self.runs]

    def growth(self) -> list[float]:
        return [run["rss_peak_mb"] - run["rss_before_mb"] for run in self.runs]

    def summary(self) -> dict[str, Any]:
        seconds, growth = self.values("seconds"), self.growth()
        return {"runs": len(self.runs),
                "seconds_min": round(min(seconds), 2),
                "seconds_median": round(statistics.median(seconds), 2),
                "seconds_max": round(max(seconds), 2),
                "rss_growth_mb_min": round(min(growth), 1),
                "rss_growth_mb_median": round(statistics.median(growth), 1),
                "rss_peak_mb_max": round(max(self.values("rss_peak_mb")), 1)}

    def line(self) -> str:
        s = self.summary()
        return (f"{self.label}: {s['seconds_min']:.2f} s min / {s['seconds_median']:.2f} s "
                f"median / {s['seconds_max']:.2f} s max over {s['runs']} runs; RSS growth "
                f"{s['rss_growth_mb_min']:.1f} / {s['rss_growth_mb_median']:.1f} MB "
                f"(min / median), peak RSS {s['rss_peak_mb_max']:.0f} MB")


def _run_line(run: dict[str, Any]) -> str:
    parts = [f"{run['seconds']:6.2f} s", f"RSS {run['rss_before_mb']:.0f} -> "
             f"{run['rss_peak_mb']:.0f} MB (+{run['rss_peak_mb'] - run['rss_before_mb']:.1f})"]
    for key in ("practices", "line_items", "ledger_rows", "written", "verified",
                "restored", "mismatched"):
        if run.get(key):
            parts.append(f"{key.replace('_', ' ')} {run[key]:,}")
    if "totals_s" in run:
        parts.append(f"totals query {run['totals_s']:.2f} s")
    if "files_s" in run:
        parts.append(f"of which writing the files {run['files_s']:.2f} s")
    return "  " + ", ".join(parts)


def repeat(label: str, times: int, deadline: Deadline,
           measure: Callable[[int], dict[str, Any]]) -> Series:
    series = Series(label, [])
    print(f"{label}:")
    for number in range(times):
        deadline.check()
        run = measure(number)
        series.runs.append(run)
        print(_run_line(run), flush=True)
    print(series.line(), flush=True)
    return series


def explain(engine: Engine, period: str) -> None:
    """EXPLAIN (ANALYZE, BUFFERS) of the export's two queries, as the owner role."""
    queries = (("line items", billing_files._LINE_ITEMS.format(tenant_filter="")),
               ("ledger totals", billing_files._LEDGER))
    with engine.connect() as conn:
        for label, sql in queries:
            plan = conn.execute(text(f"EXPLAIN (ANALYZE, BUFFERS) {sql}"),
                                {"period": period}).scalars().all()
            print(f"EXPLAIN ANALYZE, {label} ({period}):")
            for line in plan:
                print(f"  {line}")
        conn.rollback()


def explain_cursor(server: str, owner_role: str, period: str) -> None:
    """The line-item query's plan as the export runs it: through a server-side cursor
    (planned for a fast start, ``cursor_tuple_fraction``), as the owner role, in a
    REPEATABLE READ transaction; logged by ``auto_explain`` at NOTICE level."""
    notices: list[str] = []
    sql = billing_files._LINE_ITEMS.format(tenant_filter="").replace(":period",
                                                                      "%(period)s")
    with psycopg.connect(server, autocommit=True) as conn:
        conn.add_notice_handler(lambda notice: notices.append(notice.message_primary or ""))
        for statement in ("LOAD 'auto_explain'", "SET auto_explain.log_min_duration = 0",
                          "SET auto_explain.log_analyze = on",
                          "SET auto_explain.log_buffers = on",
                          "SET auto_explain.log_level = notice", f'SET ROLE "{owner_role}"'):
            conn.execute(statement)
        conn.autocommit = False
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        with conn.transaction(), conn.cursor(name="bench_line_items") as cursor:
            cursor.execute(sql, {"period": period})
            while cursor.fetchmany(2000):
                pass
    print(f"auto_explain, line items through the export's server-side cursor ({period}):")
    for notice in notices:
        for line in notice.splitlines():
            print(f"  {line}")


def profile(engine: Engine, root: str, period: str, top: int = 25) -> None:
    store = LocalStorage(Path(root), DownloadSigner(SIGNING_KEY))
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    export_period(engine, store, period)
    profiler.disable()
    took = time.perf_counter() - started
    for order in ("tottime", "cumulative"):
        buffer = io.StringIO()
        pstats.Stats(profiler, stream=buffer).sort_stats(order).print_stats(top)
        print(f"cProfile of export_period({period}) ({took:.1f} s under the profiler), "
              f"top {top} by {order}:")
        print("\n".join(line for line in buffer.getvalue().splitlines()[4:] if line.strip()))


# -- main -----------------------------------------------------------------------------------


def _seed_all(args: argparse.Namespace, bench: BenchDatabase, root: str,
              results: dict[str, Any]) -> None:
    server = _conninfo(bench.url)
    period, prev, small = args.period, _shift(args.period, -1), _shift(args.period, 1)
    config = bench.config()
    took: dict[str, float] = {}
    if args.late_rows:
        took["prev"] = seed(server, prev, args.prev_rows, args.practices, salt=1)
        closed = in_child(config, root, prev, "close",
                          closable_from(prev, GRACE_HOURS) + dt.timedelta(hours=1))
        print(f"closed {prev} ({args.prev_rows:,} rows): {closed['seconds']:.2f} s")
    took["month"] = seed(server, period, args.rows, args.practices, salt=100)
    if args.late_rows:
        end = period_bounds(prev)[1]
        took["late"] = seed(server, prev, args.late_rows, args.practices, salt=200,
                            start=end - dt.timedelta(hours=6), end=end)
    if args.small_rows:
        took["small"] = seed(server, small, args.small_rows, args.small_practices, salt=300)
    took["vacuum"] = vacuum(server)
    results["seed_s"] = {key: round(value, 1) for key, value in took.items()}
    results["ledger"] = {p: _ledger_rows(server, p) for p in (period, small)
                         if p == period or args.small_rows}
    print(f"seeded in {sum(took.values()):.1f} s (not measured): "
          + ", ".join(f"{key} {value:.1f} s" for key, value in took.items()))
    for p, counts in results["ledger"].items():
        print(f"  {p}: {counts['rows']:,} ledger rows, {counts['practices']:,} practices, "
              f"{counts['late_rows']:,} started in an earlier month (corrections)")


def _exports(args: argparse.Namespace, config: DatabaseConfig, root: str,
             deadline: Deadline, results: dict[str, Any]) -> None:
    """The open-month exports (and query-only runs) of both sizes; the files must be
    byte-identical in every run (else SystemExit)."""
    months = [(args.period, f"{args.rows:,} rows, {args.practices:,} practices")]
    if args.small_rows:
        months.insert(0, (_shift(args.period, 1),
                          f"{args.small_rows:,} rows, {args.small_practices:,} practices"))
    for period, label in months:
        seen: list[dict[str, str]] = []

        def export(_: int, period: str = period, seen: list[dict[str, str]] = seen
                   ) -> dict[str, Any]:
            run = in_child(config, root, period, "export")
            seen.append(stored_files(root, period))
            sizes = stored_sizes(root, period)
            run["bytes"] = sum(sizes.values())
            run["largest"] = max(sizes.items(), key=lambda item: item[1])
            return run

        series = repeat(f"export_period {period} (open; {label})", args.repeat, deadline,
                        export)
        def query_only(_: int, period: str = period) -> dict[str, Any]:
            return in_child(config, root, period, "query")

        query = repeat(f"  line-item query only {period} (ledger_totals + line_items, no "
                       "files)", args.repeat, deadline, query_only)
        if any(files != seen[0] for files in seen):
            raise SystemExit(f"{period}: the files differ between runs")
        last = series.runs[-1]
        results[period] = {"label": label, "export": series.summary(),
                           "query_only": query.summary(),
                           "files": last["written"], "line_items": last["line_items"],
                           "practices": last["practices"], "bytes": last["bytes"],
                           "largest_file": f"{last['largest'][0]} "
                                           f"{last['largest'][1] / 1e6:.1f} MB",
                           "manifest_sha256": last["manifest_sha256"],
                           "identical_across_runs": True}
        print(f"  {last['written']:,} files, {last['bytes'] / 1e6:.1f} MB (largest: "
              f"{results[period]['largest_file']}), byte-identical in all {args.repeat} runs "
              f"(manifest sha256 {last['manifest_sha256'][:16]}...)")
    if len(months) == 2:
        small, full = (results[p] for p, _ in months)
        ratio = {"seconds": full["export"]["seconds_median"] / small["export"]["seconds_median"],
                 "rss_growth": (full["export"]["rss_growth_mb_median"]
                                / max(small["export"]["rss_growth_mb_median"], 0.1))}
        results["full_over_small"] = {k: round(v, 2) for k, v in ratio.items()}
        print(f"full / small (medians of this run): time x{ratio['seconds']:.2f}, "
              f"RSS growth x{ratio['rss_growth']:.2f}")


def _close_and_verify(args: argparse.Namespace, bench: BenchDatabase, root: str,
                      deadline: Deadline, results: dict[str, Any], period: str) -> None:
    """Close the month (``--repeat`` times, reopened in between), then export the sealed
    month (verify only); every file must stay byte-identical (else SystemExit)."""
    config = bench.config()
    open_files = stored_files(root, period)
    now = closable_from(period, GRACE_HOURS) + dt.timedelta(hours=1)

    def close(number: int) -> dict[str, Any]:
        if number:
            reopen(_conninfo(bench.url), period)
        return in_child(config, root, period, "close", now)

    def verify(_: int) -> dict[str, Any]:
        return in_child(config, root, period, "export")

    label = results[period]["label"]
    closes = repeat(f"close_period {period} ({label}; now {now:%Y-%m-%dT%H:%MZ}; reopened "
                    "by the bench between runs)", args.repeat, deadline, close)
    closed_files = stored_files(root, period)
    changed = sorted(name for name, sha in closed_files.items() if open_files.get(name) != sha)
    manifest = closes.runs[-1]["manifest_sha256"]
    verifies = repeat(f"export_period {period} (closed and sealed: verify only)",
                      args.repeat, deadline, verify)
    same = (all(run["manifest_sha256"] == manifest for run in verifies.runs)
            and stored_files(root, period) == closed_files)
    clean = all(run["verified"] == len(closed_files) and not run["written"]
                and not run["restored"] and not run["mismatched"] for run in verifies.runs)
    results[period] |= {
        "close": closes.summary(), "changed_by_close": changed,
        "sealed_export": verifies.summary() | {"verified": verifies.runs[-1]["verified"],
                                               "identical_to_close": same, "clean": clean}}
    print(f"  files that differ between the open month's export and the close: {changed} "
          "(expected: only manifest.json, which says closed and closed_at)")
    print(f"  sealed re-exports: manifest sha256 {'==' if same else '!='} the close's, "
          f"{verifies.runs[-1]['verified']:,} of {len(closed_files):,} files verified"
          f"{'' if clean else '; NOT CLEAN'}", flush=True)
    if not (same and clean):
        raise SystemExit(f"{period}: the sealed month's files changed or did not verify")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--database-url", default=default_server_url())
    parser.add_argument("--period", default="2026-10", help="the measured month (YYYY-MM)")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--practices", type=int, default=1000)
    parser.add_argument("--small-rows", type=int, default=100_000,
                        help="rows of the 1/10 run in the month after (0: skip)")
    parser.add_argument("--small-practices", type=int, default=100)
    parser.add_argument("--prev-rows", type=int, default=2000,
                        help="rows of the month before, closed before the late rows")
    parser.add_argument("--late-rows", type=int, default=300,
                        help="rows started in the closed month before (0: none, no close)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--explain", action="store_true")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--timeout", type=int, default=1800)
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.rows < 1 or args.practices < 1:
        parser.error("--repeat, --rows and --practices must be positive")
    results: dict[str, Any] = {"benchmark": "billing_export", "period": args.period,
                               "rows": args.rows, "practices": args.practices,
                               "repeat": args.repeat}
    with (watchdog(args.timeout) as deadline, bench_database(args.database_url) as bench,
          tempfile.TemporaryDirectory(prefix="clinai-bench-billing-") as root):
        _seed_all(args, bench, root, results)
        _exports(args, bench.config(), root, deadline, results)
        if args.explain or args.profile:
            owner = create_owner_engine(bench.config())
            try:
                if args.explain:
                    explain(owner, args.period)
                    explain_cursor(_conninfo(bench.url), bench.owner_role, args.period)
                if args.profile:
                    profile(owner, root, args.period)
            finally:
                owner.dispose()
        for period in (args.period, _shift(args.period, 1))[:2 if args.small_rows else 1]:
            _close_and_verify(args, bench, root, deadline, results, period)
        if args.small_rows:
            small, full = results[_shift(args.period, 1)], results[args.period]
            ratio = (full["sealed_export"]["rss_growth_mb_median"]
                     / max(small["sealed_export"]["rss_growth_mb_median"], 0.1))
            results["full_over_small"]["sealed_rss_growth"] = round(ratio, 2)
            print(f"sealed verify, full / small (medians of this run): RSS growth x{ratio:.2f}"
                  f" (largest file {full['largest_file']} / {small['largest_file']})")
    print(json.dumps(results), file=sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))

"""Benchmark tenant provisioning and the migration fan-out over many tenant schemas.

Run from the project root (loopback PostgreSQL only; everything created is dropped)::

    .venv/bin/python -m bench.fanout --tenants 1000 --jobs 2 [--serial-too]

Steps, on a fresh database ``clinai_bench_<suffix>`` with its own roles:

1. create ``--tenants`` tenants with ``tenancy.provisioning.create_tenant``;
2. no-op upgrade: ``flask tenancy upgrade --jobs J`` as a subprocess (whole-command wall
   time; ``flask tenancy --help`` is timed too, as the start-up baseline) and
   ``upgrade_tenants(config, jobs=J)`` in-process;
3. a real upgrade: an extra tenant revision (nullable text column ``bench_note`` on
   ``clients`` plus an index) from a temp dir, fanned out with ``jobs=J``; with
   ``--serial-too`` a second revision (``bench_note_serial``) is then applied with
   ``jobs=1`` for comparison.

Prints human-readable lines, then one JSON line with every number.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy.pool import NullPool

from bench._db import (
    ROOT,
    VENV_BIN,
    BenchDatabase,
    Deadline,
    bench_database,
    default_server_url,
    run_main,
    summary_ms,
    watchdog,
)
from tenancy import migrate
from tenancy.database import DatabaseConfig, create_owner_engine
from tenancy.migrate import TenantOutcome, tenant_script_directory, upgrade_tenants
from tenancy.provisioning import create_tenant

NOOP_TARGET_S = 3.0
MIGRATE_TARGET_S = 60.0
CLI_TIMEOUT_S = 600

REVISION_FILE = '''\
"""Benchmark-only tenant revision: a nullable text column on clients and its index."""

import sqlalchemy as sa
from alembic import op

revision = "{revision}"
down_revision = "{down_revision}"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("clients", sa.Column("{column}", sa.Text(), nullable=True))
    op.create_index("ix_clients_{column}", "clients", ["{column}"])


def downgrade():
    op.drop_index("ix_clients_{column}", "clients")
    op.drop_column("clients", "{column}")
'''
CLI_SUMMARY = re.compile(
    r"tenants: (?P<total>\d+) total, (?P<at_head>\d+) already at \S+, "
    r"(?P<migrated>\d+) migrated, (?P<failed>\d+) failed \((?P<seconds>[\d.]+) s\)"
)


def write_revision(directory: Path, down_revision: str, column: str) -> str:
    revision = f"b9_bench_{uuid.uuid4().hex[:12]}"
    (directory / f"{revision}.py").write_text(
        REVISION_FILE.format(revision=revision, down_revision=down_revision, column=column)
    )
    return revision


def create_tenants(config: DatabaseConfig, count: int, deadline: Deadline) -> dict[str, Any]:
    engine = create_owner_engine(config)
    durations: list[float] = []
    started = time.perf_counter()
    try:
        for i in range(count):
            deadline.check()
            t0 = time.perf_counter()
            create_tenant(engine, name=f"Bench practice {i}",
                          admin_user_id=f"bench-admin-{i}-{uuid.uuid4().hex[:8]}",
                          app_role=config.app_role)
            durations.append((time.perf_counter() - t0) * 1000)
            if (i + 1) % 100 == 0 or i + 1 == count:
                elapsed = time.perf_counter() - started
                print(f"  created {i + 1}/{count} ({(i + 1) / elapsed:.1f} tenants/s, "
                      f"last 100 p50 {summary_ms(durations[-100:])['p50_ms']} ms)", flush=True)
    finally:
        engine.dispose()
    seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 2), "tenants_per_s": round(count / seconds, 1),
            "first_ms": round(durations[0], 1) if durations else None,
            **summary_ms(durations)}


def run_cli(bench: BenchDatabase, deadline: Deadline,
            *args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    deadline.check()
    started = time.perf_counter()
    # Fixed argv: the project's own flask binary with literal arguments.
    result = subprocess.run(  # noqa: S603
        [str(VENV_BIN / "flask"), *args], cwd=ROOT, env=bench.env(),
        capture_output=True, text=True, check=False,
        timeout=min(CLI_TIMEOUT_S, deadline.remaining() + 1),
    )
    return time.perf_counter() - started, result


def noop_upgrade(bench: BenchDatabase, jobs: int, deadline: Deadline) -> dict[str, Any]:
    startup_s, help_result = run_cli(bench, deadline, "tenancy", "--help")
    if help_result.returncode != 0:
        raise RuntimeError(f"flask tenancy --help failed:\n{help_result.stderr}")
    cli_s, result = run_cli(bench, deadline, "tenancy", "upgrade", "--jobs", str(jobs))
    if result.returncode != 0:
        raise RuntimeError(f"flask tenancy upgrade failed ({result.returncode}):\n"
                           f"{result.stdout}\n{result.stderr}")
    match = CLI_SUMMARY.search(result.stdout)
    if match is None:
        raise RuntimeError(f"unexpected flask tenancy upgrade output:\n{result.stdout}")
    print(f"  flask tenancy --help (start-up baseline): {startup_s:.2f} s wall")
    print(f"  flask tenancy upgrade --jobs {jobs}: {cli_s:.2f} s wall; "
          f"it printed: {match.group(0)}")

    report = upgrade_tenants(bench.config(), jobs=jobs)
    print(f"  in-process upgrade_tenants(jobs={jobs}): {report.seconds:.3f} s "
          f"(total {report.total}, at head {report.at_head}, work {len(report.outcomes)}) "
          f"target <= {NOOP_TARGET_S:.0f} s: "
          f"{'OK' if report.seconds <= NOOP_TARGET_S else 'MISSED'}")
    return {
        "cli_wall_s": round(cli_s, 2),
        "cli_startup_wall_s": round(startup_s, 2),
        "cli_reported_tenants_s": float(match.group("seconds")),
        "cli_total": int(match.group("total")),
        "cli_at_head": int(match.group("at_head")),
        "cli_migrated": int(match.group("migrated")),
        "cli_failed": int(match.group("failed")),
        "inprocess_s": round(report.seconds, 3),
        "inprocess_total": report.total,
        "inprocess_at_head": report.at_head,
        "inprocess_work": len(report.outcomes),
        "target_s": NOOP_TARGET_S,
        "meets_target": report.seconds <= NOOP_TARGET_S,
    }


def real_upgrade(config: DatabaseConfig, locations: list[Path], jobs: int,
                 expected_head: str, deadline: Deadline) -> dict[str, Any]:
    deadline.check()
    done = 0

    def progress(_outcome: TenantOutcome) -> None:
        nonlocal done
        deadline.check()  # with jobs > 1 the pool still drains its queue before this raises
        done += 1
        if done % 200 == 0:
            print(f"    {done} done", flush=True)

    report = upgrade_tenants(config, jobs=jobs, extra_version_locations=locations,
                             on_outcome=progress)
    assert report.head == expected_head, (report.head, expected_head)
    failed = report.failed
    migrated = len(report.outcomes) - len(failed)
    durations = [float(o.duration_ms) for o in report.outcomes if o.status == "migrated"]
    stats = summary_ms(durations)
    busy_s = sum(durations) / 1000

    engine = create_owner_engine(config, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            versions = migrate.tenant_versions(conn)
    finally:
        engine.dispose()
    at_new_head = sum(1 for v in versions.values() if v == expected_head)

    print(f"  jobs={jobs}: {report.seconds:.2f} s, migrated {migrated}, failed {len(failed)}, "
          f"at new head afterwards {at_new_head}/{len(versions)}; per tenant p50 "
          f"{stats['p50_ms']} ms, p95 {stats['p95_ms']} ms, max {stats['max_ms']} ms; "
          f"sum of per-tenant durations {busy_s:.1f} s "
          f"(= {busy_s / report.seconds:.2f} tenants in flight on average); "
          f"target <= {MIGRATE_TARGET_S:.0f} s: "
          f"{'OK' if report.seconds <= MIGRATE_TARGET_S else 'MISSED'}")
    for outcome in failed[:5]:
        print(f"    failed {outcome.tenant_id}: {outcome.error}")
    return {
        "jobs": jobs,
        "seconds": round(report.seconds, 2),
        "total": report.total,
        "migrated": migrated,
        "failed": len(failed),
        "at_new_head_after": at_new_head,
        "sum_tenant_s": round(busy_s, 2),
        **{f"tenant_{k}": v for k, v in stats.items()},
        "target_s": MIGRATE_TARGET_S,
        "meets_target": report.seconds <= MIGRATE_TARGET_S,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--database-url", default=default_server_url(),
                        help="administrative server URL (loopback only); default "
                             "$TEST_DATABASE_URL or postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--serial-too", action="store_true",
                        help="after the jobs=J upgrade, apply a second revision with jobs=1")
    parser.add_argument("--timeout", type=int, default=1800,
                        help="give up (and clean up) after this many seconds")
    args = parser.parse_args(argv)

    results: dict[str, Any] = {"benchmark": "fanout", "tenants": args.tenants,
                               "jobs": args.jobs}
    with watchdog(args.timeout) as deadline, bench_database(args.database_url) as bench, \
            tempfile.TemporaryDirectory(prefix="clinai_bench_rev_") as tmp:
        config = bench.config()
        print(f"database {bench.name} on {args.database_url} (roles {bench.owner_role}, "
              f"{bench.app_role})")

        print(f"1. create {args.tenants} tenants (create_tenant, sequential)")
        results["create"] = create = create_tenants(config, args.tenants, deadline)
        print(f"  {create['seconds']} s, {create['tenants_per_s']} tenants/s, per tenant p50 "
              f"{create['p50_ms']} ms, p95 {create['p95_ms']} ms, max {create['max_ms']} ms "
              f"(first {create['first_ms']} ms)")

        print(f"2a. no-op upgrade, jobs={args.jobs}")
        results["noop"] = noop_upgrade(bench, args.jobs, deadline)

        base_head = tenant_script_directory().get_current_head()
        assert base_head is not None
        first_dir = Path(tmp) / "parallel"
        first_dir.mkdir()
        revision = write_revision(first_dir, base_head, "bench_note")
        print(f"2b. upgrade {base_head} -> {revision} (add clients.bench_note + index), "
              f"jobs={args.jobs}")
        results["migrate"] = [real_upgrade(config, [first_dir], args.jobs, revision, deadline)]

        if args.serial_too:
            # A separate directory: upgrade_tenants caches script directories per location
            # tuple, so reusing ``first_dir`` with a new file could see a stale head.
            second_dir = Path(tmp) / "serial"
            second_dir.mkdir()
            for source in first_dir.glob("*.py"):
                (second_dir / source.name).write_text(source.read_text())
            serial_revision = write_revision(second_dir, revision, "bench_note_serial")
            print(f"2b'. upgrade {revision} -> {serial_revision} "
                  "(add clients.bench_note_serial + index), jobs=1")
            results["migrate"].append(real_upgrade(config, [second_dir], 1, serial_revision,
                                                   deadline))

    print(json.dumps(results, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))

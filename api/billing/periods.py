"""Billing months: writing a month's files, and closing a month (``flask usage ...``).

Both run as the owner role (the platform path of docs/decisions/tenancy.md): its
``platform_access`` policy sees every practice's ledger rows; the app role never does.

``export_period`` writes, in the platform's ``billing`` container, under ``<period>/``:
``<tenant_id>.csv`` and ``<tenant_id>.json`` for every practice with usage billed in the
month (offboarded ones included: the ledger keeps their rows), ``summary.csv``,
``focus.csv`` (FOCUS 1.2) and ``manifest.json`` (every file's SHA-256 and row count, the
ledger's own totals for the month, and whether the month is closed). All of it is read in
one REPEATABLE READ snapshot, and the line items must add up to the ledger's totals or
nothing more is written. For a closed month the files are written once (then the month
is *sealed*); after that a run only rebuilds them to check the stored bytes, restores a
missing file, and never overwrites one that differs (``mismatched``).

``close_period`` refuses before the month's end plus ``BILLING_GRACE_HOURS``, then closes
the month under a SHARE lock on the ledger (migration 0010 says why nothing can be billed
in it afterwards) and writes and seals its files. Both take a per-month advisory lock, so
an export of the still-open month cannot overwrite the closed month's files.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import OperationalError

from api.billing.files import (
    FOCUS_COLUMNS,
    SUMMARY_COLUMNS,
    HashingFile,
    csv_bytes,
    focus_row,
    ledger_totals,
    line_items,
    money,
    practice_csv,
    practice_json,
    totals_of,
    utc_text,
)
from storage.base import BILLING_CONTAINER, BlobNotFound, Storage

PERIOD_RE = re.compile(r"(19|20)\d\d-(0[1-9]|1[0-2])")  # fullmatch: no trailing newline
_LOCK_CLASS = 4712  # pg advisory lock class of billing months (4711: practices)


class BillingError(Exception):
    """A billing command cannot do what was asked; ``message`` says why (one line)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def check_period(period: str) -> str:
    if not PERIOD_RE.fullmatch(period):
        raise BillingError(f"{period!r} is not a month (YYYY-MM)")
    return period


def period_bounds(period: str) -> tuple[dt.datetime, dt.datetime]:
    """The UTC bounds [start, end) of a ``YYYY-MM`` period."""
    year, month = (int(x) for x in check_period(period).split("-"))
    start = dt.datetime(year, month, 1, tzinfo=dt.UTC)
    end = dt.datetime(year + month // 12, month % 12 + 1, 1, tzinfo=dt.UTC)
    return start, end


def blob_name(period: str, file: str) -> str:
    return f"{period}/{file}"


@dataclass(frozen=True)
class PeriodState:
    closed_at: dt.datetime | None = None
    sealed_at: dt.datetime | None = None

    @property
    def closed(self) -> bool:
        return self.closed_at is not None


def period_state(conn: Connection, period: str) -> PeriodState:
    row = conn.execute(text("SELECT closed_at, sealed_at FROM public.billing_periods "
                            "WHERE period = :p"), {"p": period}).one_or_none()
    return PeriodState(row.closed_at, row.sealed_at) if row else PeriodState()


@contextmanager
def _period_lock(engine: Engine, period: str) -> Iterator[None]:
    """Hold the month's advisory lock (a session lock, taken before any snapshot)."""
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:c, hashtext(:p))"),
                     {"c": _LOCK_CLASS, "p": period})
        conn.commit()
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:c, hashtext(:p))"),
                         {"c": _LOCK_CLASS, "p": period})
            conn.commit()


@dataclass
class ExportReport:
    period: str
    closed: bool = False
    practices: int = 0
    line_items: int = 0
    ledger_rows: int = 0
    written: int = 0  # files written (an open month, or a closed one not yet sealed)
    verified: int = 0  # files of a sealed month whose stored bytes are as built again
    restored: list[str] = field(default_factory=list)  # sealed, but missing: written
    mismatched: list[str] = field(default_factory=list)  # sealed, stored bytes differ
    manifest_sha256: str = ""

    def lines(self) -> list[str]:
        state = "closed" if self.closed else "open (files change until it is closed)"
        out = [f"{self.period}: {state}; {self.practices} practice(s), {self.line_items} "
               f"line item(s), {self.ledger_rows} ledger row(s); container "
               f"{BILLING_CONTAINER!r}, prefix {self.period}/"]
        if self.written:
            out.append(f"{self.period}: {self.written} file(s) written")
        if self.verified:
            out.append(f"{self.period}: {self.verified} file(s) unchanged since the close")
        out += [f"{self.period}: restored missing {name}" for name in self.restored]
        out += [f"error: stored {name} differs from the closed month's ledger rows; left "
                "as it is" for name in self.mismatched]
        out.append(f"{self.period}: manifest.json sha256 {self.manifest_sha256}")
        return out


class _Writer:
    """Puts a month's files, or, for a sealed month, checks them against its manifest."""

    def __init__(self, store: Storage, period: str, state: PeriodState,
                 report: ExportReport) -> None:
        self.store, self.period, self.report = store, period, report
        self.sealed = state.sealed_at is not None
        self.files: list[dict[str, Any]] = []
        self.existing = (set(store.list(BILLING_CONTAINER, prefix=f"{period}/"))
                         if self.sealed else set())

    def add(self, file: str, data: bytes | HashingFile, rows: int, content_type: str) -> None:
        name = blob_name(self.period, file)
        payload: bytes | IO[bytes]
        if isinstance(data, HashingFile):
            sha, payload = data.digest.hexdigest(), data.rewound()
        else:
            sha, payload = hashlib.sha256(data).hexdigest(), data
        self.files.append({"name": name, "sha256": sha, "rows": rows})
        self.put(name, sha, payload, content_type)

    def put(self, name: str, sha: str, payload: bytes | IO[bytes], content_type: str
            ) -> None:
        if not self.sealed:
            self.store.put(BILLING_CONTAINER, name, payload, content_type=content_type)
            self.report.written += 1
        elif name not in self.existing:
            self.store.put(BILLING_CONTAINER, name, payload, content_type=content_type)
            self.report.restored.append(name)
        elif self.store.sha256(BILLING_CONTAINER, name) != sha:  # chunked, never whole
            self.report.mismatched.append(name)
        else:
            self.report.verified += 1


def export_period(engine: Engine, store: Storage, period: str, *,
                  now: dt.datetime | None = None) -> ExportReport:
    """Write (or, for a sealed month, verify) the month's files; see the module doc.
    A month that has not begun (at ``now``, default: the current time) is refused."""
    check_period(period)
    if period_bounds(period)[0] > (now or dt.datetime.now(dt.UTC)):
        raise BillingError(f"{period} has not begun: nothing can be billed in it yet")
    with _period_lock(engine, period):
        return _export(engine, store, period)


def _export(engine: Engine, store: Storage, period: str) -> ExportReport:
    report = ExportReport(period)
    start, end = period_bounds(period)
    summary, focus = HashingFile(), HashingFile()
    try:
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                state = period_state(conn, period)
                ledger = ledger_totals(conn, period)
                writer = _Writer(store, period, state, report)
                summary.write(csv_bytes([SUMMARY_COLUMNS]))
                focus.write(csv_bytes([FOCUS_COLUMNS]))
                month_totals: dict[str, dict[str, Any]] = {}
                for tenant_id, group in itertools.groupby(line_items(conn, period),
                                                          key=lambda item: item.tenant_id):
                    items = list(group)
                    _practice_files(writer, period, tenant_id, items)
                    totals = totals_of(items)
                    summary.write(csv_bytes(
                        [str(tenant_id), currency, *(money(v) if k.endswith("cost") else v
                                                     for k, v in total.items())]
                        for currency, total in totals.items()), rows=len(totals))
                    focus.write(csv_bytes(focus_row(item, start.date(), end.date())
                                          for item in items), rows=len(items))
                    for currency, total in totals.items():
                        into = month_totals.setdefault(currency, dict.fromkeys(total, 0))
                        for key, value in total.items():
                            into[key] += value
                    report.practices += 1
                    report.line_items += len(items)
        _check_adds_up(period, month_totals, ledger)
        report.closed = state.closed
        report.ledger_rows = sum(t["rows"] for t in ledger.values())
        writer.add("summary.csv", summary, summary.rows, "text/csv; charset=utf-8")
        writer.add("focus.csv", focus, focus.rows, "text/csv; charset=utf-8")
        manifest = _manifest(period, state, ledger, writer.files)
        report.manifest_sha256 = hashlib.sha256(manifest).hexdigest()
        writer.put(blob_name(period, "manifest.json"), report.manifest_sha256, manifest,
                   "application/json")
    finally:
        summary.close()
        focus.close()
    if state.closed and not writer.sealed:
        with engine.begin() as conn:
            conn.execute(text("UPDATE public.billing_periods SET sealed_at = now() "
                              "WHERE period = :p AND sealed_at IS NULL"), {"p": period})
    return report


def _practice_files(writer: _Writer, period: str, tenant_id: uuid.UUID,
                    items: list[Any]) -> None:
    writer.add(f"{tenant_id}.csv", practice_csv(items), len(items), "text/csv; charset=utf-8")
    writer.add(f"{tenant_id}.json", practice_json(period, tenant_id, items), len(items),
               "application/json")


def _check_adds_up(period: str, month: dict[str, dict[str, Any]],
                   ledger: dict[str, dict[str, Any]]) -> None:
    """The line items' sums must be the ledger's, per currency, or nothing is written."""
    keys = ("requests", "prompt_tokens", "cached_tokens", "completion_tokens",
            "estimated_tokens", "cost", "correction_requests")
    seen = {c: tuple(t[k] for k in keys) for c, t in month.items()}
    expected = {c: (t["rows"], *(t[k] for k in keys[1:6]), t["correction_rows"])
                for c, t in ledger.items()}
    if seen != expected:
        raise BillingError(f"{period}: the line items do not add up to the ledger's totals; "
                           "no summary or manifest was written")


def _manifest(period: str, state: PeriodState, ledger: dict[str, dict[str, Any]],
              files: list[dict[str, Any]]) -> bytes:
    start, end = period_bounds(period)
    document = {
        "period": period,
        "billing_period_start": utc_text(start), "billing_period_end": utc_text(end),
        "closed": state.closed,
        "closed_at": utc_text(state.closed_at) if state.closed_at else None,
        "ledger": {currency: {key: money(value) if key == "cost" else value
                              for key, value in total.items()}
                   for currency, total in ledger.items()},
        "files": sorted(files, key=lambda f: f["name"]),
    }
    return (json.dumps(document, indent=2) + "\n").encode()


@dataclass(frozen=True)
class CloseOutcome:
    closed_now: bool  # False: it was closed before (the files were checked again)
    closed_at: dt.datetime
    report: ExportReport


def closable_from(period: str, grace_hours: int) -> dt.datetime:
    return period_bounds(period)[1] + dt.timedelta(hours=grace_hours)


def close_period(engine: Engine, store: Storage, period: str, *, now: dt.datetime,
                 grace_hours: int) -> CloseOutcome:
    """Close the month (refused before its end plus the grace window), then write and seal
    its files. Closing a closed month again only checks (and restores) its files."""
    check_period(period)
    with _period_lock(engine, period):
        with engine.connect() as conn:
            state = period_state(conn, period)
        closed_now = False
        if not state.closed:
            opens = closable_from(period, grace_hours)
            if now < opens:
                raise BillingError(
                    f"{period} can be closed from {utc_text(opens)} on: the month's end "
                    f"plus BILLING_GRACE_HOURS ({grace_hours} h) for late settlements")
            try:
                with engine.begin() as conn:
                    conn.execute(text("SET LOCAL lock_timeout = '60s'"))
                    # Waits for every ledger insert under way; holds new ones until commit.
                    conn.execute(text("LOCK TABLE public.llm_usage IN SHARE MODE"))
                    conn.execute(text("INSERT INTO public.billing_periods (period) "
                                      "VALUES (:p) ON CONFLICT (period) DO NOTHING"),
                                 {"p": period})
                    state = period_state(conn, period)
            except OperationalError as exc:
                if getattr(exc.orig, "sqlstate", None) != "55P03":  # lock_not_available
                    raise
                raise BillingError(f"{period} was not closed: the ledger stayed locked for "
                                   "60 s (a long transaction writes to it); run it again"
                                   ) from exc
            closed_now = True
        report = _export(engine, store, period)
    assert state.closed_at is not None
    return CloseOutcome(closed_now, state.closed_at, report)


def practice_file(conn: Connection, store: Storage, tenant_id: uuid.UUID, period: str,
                  fmt: str) -> tuple[bytes, PeriodState]:
    """One practice's line items for the month as ``csv`` or ``json``.

    A sealed month's stored file is served as it is (the bytes the billing team invoiced
    from); otherwise (an open month, a close whose files were not all written yet, a
    practice without usage that month) the file is built from the ledger rows ``conn`` may
    see - by the same function that writes the stored files.
    """
    state = period_state(conn, period)
    if state.sealed_at is not None:  # closed and written (not before: a close cut short)
        try:
            return store.get(BILLING_CONTAINER, blob_name(period, f"{tenant_id}.{fmt}")), state
        except BlobNotFound:
            pass
    items = list(line_items(conn, period, tenant_id))
    data = practice_csv(items) if fmt == "csv" else practice_json(period, tenant_id, items)
    return data, state

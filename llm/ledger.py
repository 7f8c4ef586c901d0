"""Admission (reserve -> settle -> release) and the usage ledger, in PostgreSQL.

Reserving is one UPDATE on the tenant's budget row guarded by the limits in its WHERE
clause: concurrent reservations serialise on the row lock and each re-checks the
committed counters, so N concurrent requests can never reserve past the budget.
Reservations of calls still in flight count across a month's rollover. A reservation
that was never settled (a crashed process) is dropped once the row has been idle for
15 minutes: every call reserves (touching the row), is opened within its deadline and,
if streamed, is cut off after ``STREAM_MAX_SECONDS`` (5 minutes), so after that long no
reserved call can still be running.
Settling releases the reservation, adds the provider-reported usage and appends the
ledger row in one transaction. The row carries its cost at the price version valid when
the call started (``llm.prices``), that version's id and currency, and the artifact it
served (a therapy session or a conversation, by id). Rows are only ever inserted: a later
price change never rewrites one. Each transaction sets ``app.tenant_id``: the tables are
under row-level security like every tenant table.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine, text

from llm.errors import BudgetExhausted, RateLimited, RequestTooLarge
from tenancy.context import enter_as_platform
from tenancy.fastpath import pipelined


@dataclass(frozen=True, kw_only=True)
class Limits:
    monthly_tokens: int = 2_000_000
    requests_per_minute: int = 60
    tokens_per_minute: int = 200_000


@dataclass(frozen=True)
class Reservation:
    tenant_id: uuid.UUID
    tokens: int
    period: str
    minute: dt.datetime


@dataclass(frozen=True, kw_only=True)
class UsageRecord:
    tenant_id: uuid.UUID
    user_id: str
    feature: str
    deployment: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    cost: Decimal  # at ``price_version`` (llm/prices.py), in ``currency``
    price_version: str
    currency: str
    latency_ms: int
    attempts: int
    status: str  # ok | failed | filtered | disconnected
    usage_source: str  # provider | estimated | none
    request_id: str | None
    artifact_kind: str | None = None  # session | conversation (ARTIFACT_KINDS)
    artifact_id: uuid.UUID | None = None
    # When the call started (UTC): its price version's instant and its line item's date.
    # The ledger's trigger bills the row in the first open month from then on.
    started_at: dt.datetime | None = None


# What a ledger row may say it served: a therapy session's note draft, a case chat.
ARTIFACT_KINDS = frozenset({"session", "conversation"})

# A reservation not settled after this long belongs to a crashed process (module docstring).
RESERVATION_EXPIRY = dt.timedelta(minutes=15)


def _live_reserved(row: str = "") -> str:
    """SQL for the row's reservations, minus those older than ``RESERVATION_EXPIRY``."""
    seconds = int(RESERVATION_EXPIRY.total_seconds())
    return (f"(CASE WHEN {row}updated_at < now() - interval '{seconds} seconds' THEN 0 "
            f"ELSE {row}reserved END)")


# Raw SQL on purpose: admission and settlement are the gateway's measured hot path
# (docs/PERFORMANCE.md, gateway overhead), each a fixed statement pipelined in one round
# trip. The columns are those of models.LlmBudget and models.LlmUsage.
_ENSURE = """
INSERT INTO public.llm_budgets (tenant_id, period)
VALUES (%(t)s, to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM'))
ON CONFLICT (tenant_id) DO NOTHING
"""
_RESERVE = f"""
UPDATE public.llm_budgets AS b SET
    period = p.period,
    used = CASE WHEN b.period = p.period THEN b.used ELSE 0 END,
    reserved = {_live_reserved("b.")} + %(n)s,
    minute_start = p.minute,
    minute_requests = CASE WHEN b.minute_start = p.minute THEN b.minute_requests ELSE 0 END + 1,
    minute_tokens = CASE WHEN b.minute_start = p.minute THEN b.minute_tokens ELSE 0 END + %(n)s,
    updated_at = now()
FROM (SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM') AS period,
             date_trunc('minute', now()) AS minute) AS p
WHERE b.tenant_id = %(t)s
  AND (CASE WHEN b.period = p.period THEN b.used ELSE 0 END)
      + {_live_reserved("b.")}
      + %(n)s <= coalesce(b.monthly_tokens, %(budget)s)
  AND (CASE WHEN b.minute_start = p.minute THEN b.minute_requests ELSE 0 END) + 1 <= %(rpm)s
  AND (CASE WHEN b.minute_start = p.minute THEN b.minute_tokens ELSE 0 END) + %(n)s <= %(tpm)s
RETURNING p.period, p.minute
"""
_WHY = f"""
SELECT (CASE WHEN b.period = p.period THEN b.used ELSE 0 END)
       + {_live_reserved("b.")}
       + %(n)s > coalesce(b.monthly_tokens, %(budget)s) AS over_budget,
       extract(epoch FROM (date_trunc('month', now() AT TIME ZONE 'UTC') + interval '1 month')
               - now() AT TIME ZONE 'UTC')::int AS to_next_month,
       60 - extract(second FROM now())::int AS to_next_minute
FROM public.llm_budgets b,
     (SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM') AS period) p
WHERE b.tenant_id = %(t)s
"""
_SETTLE = """
UPDATE public.llm_budgets SET
    reserved = greatest(reserved - %(n)s, 0),
    used = used + %(actual)s,
    minute_tokens = CASE WHEN minute_start = %(minute)s
                         THEN greatest(minute_tokens - %(n)s + %(actual)s, 0)
                         ELSE minute_tokens END,
    updated_at = now()
WHERE tenant_id = %(t)s
"""
_RECORD = """
INSERT INTO public.llm_usage (tenant_id, user_id, feature, deployment, prompt_tokens,
    completion_tokens, cached_tokens, reasoning_tokens, cost, price_version, currency,
    latency_ms, attempts, status, usage_source, request_id, artifact_kind, artifact_id,
    started_at)
VALUES (%(tenant_id)s, %(user_id)s, %(feature)s, %(deployment)s, %(prompt_tokens)s,
    %(completion_tokens)s, %(cached_tokens)s, %(reasoning_tokens)s, %(cost)s,
    %(price_version)s, %(currency)s, %(latency_ms)s, %(attempts)s, %(status)s,
    %(usage_source)s, %(request_id)s, %(artifact_kind)s, %(artifact_id)s,
    %(started_at)s)
"""


@contextmanager
def _pipelined(engine: Engine, tenant_id: uuid.UUID, *, durable: bool = True) -> Iterator[Any]:
    """One transaction in tenant context, sent as a single pipelined round trip.

    Yields what ``tenancy.fastpath.pipelined`` gives: the psycopg connection in pipeline
    mode, or, behind a transaction pooler, a batch sent as one message at the end of the
    block; either way results can be fetched after the block. A reservation
    is not ``durable``: its commit skips the WAL-flush wait, because after a database
    crash a lost reservation only means in-flight calls settle without one.
    """
    with pipelined(engine) as driver:
        enter_as_platform(driver, tenant_id, public_only=True)
        if not durable:
            driver.execute("SELECT set_config('synchronous_commit', 'off', true)")
        yield driver


class Ledger:
    """Budgets and usage of every tenant, through the app role under RLS."""

    def __init__(self, engine: Engine, limits: Limits) -> None:
        self.engine = engine
        self.limits = limits

    def reserve(self, tenant_id: uuid.UUID, tokens: int) -> Reservation:
        """Reserve ``tokens`` or raise ``BudgetExhausted`` / ``RateLimited``.

        A request larger than the per-minute token limit could never be admitted:
        ``RequestTooLarge`` says so instead of a retry that can't succeed.
        """
        if tokens > self.limits.tokens_per_minute:
            raise RequestTooLarge("the request needs more tokens than the per-minute limit")
        params: dict[str, Any] = {"t": tenant_id, "n": tokens,
                                  "budget": self.limits.monthly_tokens,
                                  "rpm": self.limits.requests_per_minute,
                                  "tpm": self.limits.tokens_per_minute}
        with _pipelined(self.engine, tenant_id, durable=False) as conn:
            conn.execute(_ENSURE, params)
            reserved = conn.execute(_RESERVE, params)
        row = reserved.fetchone()
        if row is not None:
            return Reservation(tenant_id, tokens, row[0], row[1])
        with _pipelined(self.engine, tenant_id) as conn:  # refused: say which limit, and when
            why = conn.execute(_WHY, params)
        over_budget, to_next_month, to_next_minute = why.fetchone()
        if over_budget:
            raise BudgetExhausted("the practice's monthly token budget is used up",
                                  retry_after=max(1, int(to_next_month)))
        raise RateLimited("too many AI requests this minute; retry shortly",
                          retry_after=max(1, int(to_next_minute)))

    def settle(self, reservation: Reservation, record: UsageRecord) -> None:
        """Release the reservation, count the actual usage, append the ledger row."""
        actual = record.prompt_tokens + record.completion_tokens
        with _pipelined(self.engine, reservation.tenant_id) as conn:
            conn.execute(_SETTLE, {"t": reservation.tenant_id, "n": reservation.tokens,
                                   "actual": actual, "period": reservation.period,
                                   "minute": reservation.minute})
            conn.execute(_RECORD, record.__dict__)

    def budget(self, tenant_id: uuid.UUID,
               connection: Connection | None = None) -> dict[str, int]:
        """Return this month's budget counters of a tenant.

        ``connection``: an open transaction already in the tenant's context (a request's
        own), read instead of taking a second connection from the pool while the request
        holds one -- behind a transaction pooler both would need one of the same few
        server connections, and requests holding one each while waiting for another
        would stall the pool.
        """
        if connection is None:
            with self.engine.begin() as conn:
                enter_as_platform(conn, tenant_id, public_only=True)
                return self._budget(conn, tenant_id)
        return self._budget(connection, tenant_id)

    def _budget(self, conn: Connection, tenant_id: uuid.UUID) -> dict[str, int]:
        row = conn.execute(text(f"""
SELECT coalesce(monthly_tokens, :budget) AS monthly_tokens,
       CASE WHEN period = to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM') THEN used ELSE 0 END
           AS used,
       {_live_reserved()} AS reserved
FROM public.llm_budgets WHERE tenant_id = :t
"""), {"t": tenant_id, "budget": self.limits.monthly_tokens}).one_or_none()
        monthly = row.monthly_tokens if row else self.limits.monthly_tokens
        used, reserved = (row.used, row.reserved) if row else (0, 0)
        return {"monthly_tokens": int(monthly), "used": int(used), "reserved": int(reserved),
                "remaining": max(0, int(monthly) - int(used) - int(reserved))}

"""The cross-tenant usage summary, read through ``public.billing_usage_summary``.

The app role cannot see another practice's ledger rows (row-level security); the summary
comes from the SECURITY DEFINER function of migration 0009, which answers this one
question and nothing else. Who may ask is checked before (``api.billing.views``).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, text

TOKEN_COLUMNS = ("prompt_tokens", "cached_tokens", "completion_tokens", "estimated_tokens")
_SUMMARY = text("""
SELECT tenant_id, tenant_name, tenant_status, currency, requests, prompt_tokens,
       cached_tokens, completion_tokens, estimated_tokens, cost
FROM public.billing_usage_summary(:start, :end)
ORDER BY tenant_id, currency
""")


def period_bounds(period: str) -> tuple[dt.datetime, dt.datetime]:
    """The UTC bounds [start, end) of a ``YYYY-MM`` period."""
    year, month = (int(x) for x in period.split("-"))
    start = dt.datetime(year, month, 1, tzinfo=dt.UTC)
    end = dt.datetime(year + month // 12, month % 12 + 1, 1, tzinfo=dt.UTC)
    return start, end


def usage_summary(conn: Connection, period: str) -> dict[str, Any]:
    """Every practice's ledger totals for ``period`` (UTC month), per currency.

    One entry per practice and currency, ordered by practice id, then currency; offboarded
    practices included. ``totals`` sums the entries per currency (EUR and legacy USD are
    never added together). Provider-reported and estimated tokens stay apart.
    """
    start, end = period_bounds(period)
    practices: list[dict[str, Any]] = []
    totals: dict[str, dict[str, Any]] = {}
    for row in conn.execute(_SUMMARY, {"start": start, "end": end}):
        entry = {"tenant_id": row.tenant_id, "name": row.tenant_name,
                 "status": row.tenant_status, "currency": row.currency,
                 "requests": int(row.requests), "cost": Decimal(row.cost),
                 **{column: int(getattr(row, column)) for column in TOKEN_COLUMNS}}
        practices.append(entry)
        total = totals.setdefault(row.currency, {
            "practices": 0, "requests": 0, **dict.fromkeys(TOKEN_COLUMNS, 0),
            "cost": Decimal(0)})
        total["practices"] += 1
        for key in ("requests", "cost", *TOKEN_COLUMNS):
            total[key] += entry[key]
    return {"period": period, "practices": practices, "totals": totals}

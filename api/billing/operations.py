"""The cross-tenant usage summary, read through ``public.billing_usage_summary``.

The app role cannot see another practice's ledger rows (row-level security); the summary
comes from the SECURITY DEFINER function of migrations 0009 and 0010, which answers this one
question and nothing else. Who may ask is checked before (``api.billing.views``).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, text

from api.billing.files import TOKEN_COLUMNS
from llm.prices import QUANTUM

_SUMMARY = text("""
SELECT tenant_id, tenant_name, tenant_status, currency, requests, prompt_tokens,
       cached_tokens, completion_tokens, estimated_tokens, cost, correction_requests,
       correction_cost
FROM public.billing_usage_summary(:period)
ORDER BY tenant_id, currency
""")
MONEY = ("cost", "correction_cost")
COUNTS = ("requests", *TOKEN_COLUMNS, "correction_requests")


def usage_summary(conn: Connection, period: str) -> dict[str, Any]:
    """Every practice's totals billed in ``period`` (``llm_usage.billing_period``), per
    currency: what the month's ``summary.csv`` says.

    One entry per practice and currency, ordered by practice id, then currency; offboarded
    practices included. ``totals`` sums the entries per currency (EUR and legacy USD are
    never added together). Provider-reported and estimated tokens stay apart. ``closed``:
    whether ``flask usage close`` closed the month (its figures no longer change).
    """
    practices: list[dict[str, Any]] = []
    totals: dict[str, dict[str, Any]] = {}
    for row in conn.execute(_SUMMARY, {"period": period}):
        entry = {"tenant_id": row.tenant_id, "name": row.tenant_name,
                 "status": row.tenant_status, "currency": row.currency,
                 **{column: int(getattr(row, column)) for column in COUNTS},
                 **{column: Decimal(getattr(row, column)).quantize(QUANTUM)
                    for column in MONEY}}
        practices.append(entry)
        total = totals.setdefault(row.currency, {
            "practices": 0, **dict.fromkeys(COUNTS, 0), **dict.fromkeys(MONEY, Decimal(0))})
        total["practices"] += 1
        for key in (*COUNTS, *MONEY):
            total[key] += entry[key]
    closed = conn.execute(text("SELECT closed_at FROM public.billing_periods "
                               "WHERE period = :p"), {"p": period}).scalar_one_or_none()
    return {"period": period, "closed": closed is not None, "closed_at": closed,
            "practices": practices, "totals": totals}

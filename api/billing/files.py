"""A billing month's files: line items per practice, the summary, FOCUS, the manifest.

Every file is a function of the ledger rows billed in the month (``llm_usage
.billing_period``, migration 0010) and of whether the month is closed: no generation
time, no name from the registry, stable ordering, exact decimals. Re-running gives the
same bytes; a closed month's rows never change, so neither do its files.

Line items: one per practice x day (of the call's start, UTC) x feature x deployment x
price version x currency x charge class. ``charge_class`` is ``correction`` for rows that
started in an earlier, already closed month (the date names that original day) and empty
otherwise. Provider-reported tokens (``prompt_tokens``, ``cached_tokens`` - part of
``prompt_tokens`` -, ``completion_tokens``) and locally ``estimated_tokens`` (input plus
output of calls the provider reported no usage for) come from different ledger rows and
never mix.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import IO, Any

from sqlalchemy import Connection, text

from llm.prices import QUANTUM

LINE_COLUMNS = ("date", "tenant_id", "feature", "deployment", "requests", "prompt_tokens",
                "cached_tokens", "completion_tokens", "estimated_tokens", "cost", "currency",
                "price_version", "charge_class")
TOKEN_COLUMNS = ("prompt_tokens", "cached_tokens", "completion_tokens", "estimated_tokens")
SUMMARY_COLUMNS = ("tenant_id", "currency", "line_items", "requests", *TOKEN_COLUMNS, "cost",
                   "correction_requests", "correction_cost")
CORRECTION = "correction"

_SUMS = """
count(*) AS requests,
coalesce(sum(u.prompt_tokens::bigint) FILTER (WHERE u.usage_source = 'provider'), 0)
    AS prompt_tokens,
coalesce(sum(u.cached_tokens::bigint) FILTER (WHERE u.usage_source = 'provider'), 0)
    AS cached_tokens,
coalesce(sum(u.completion_tokens::bigint) FILTER (WHERE u.usage_source = 'provider'), 0)
    AS completion_tokens,
coalesce(sum(u.prompt_tokens::bigint + u.completion_tokens::bigint)
         FILTER (WHERE u.usage_source = 'estimated'), 0) AS estimated_tokens,
sum(u.cost) AS cost
"""
# Text columns sort with the "C" collation: the same bytes whatever the server's locale.
_LINE_ITEMS = f"""
SELECT u.tenant_id,
       (u.started_at AT TIME ZONE 'UTC')::date AS day,
       u.feature, u.deployment, u.price_version, u.currency::text AS currency,
       to_char(u.started_at AT TIME ZONE 'UTC', 'YYYY-MM') <> u.billing_period
           AS correction,
       {_SUMS}
FROM public.llm_usage u
WHERE u.billing_period = :period {{tenant_filter}}
GROUP BY u.tenant_id, 2, u.feature, u.deployment, u.price_version, u.currency, 7
ORDER BY u.tenant_id, 7, 2, u.feature COLLATE "C", u.deployment COLLATE "C",
         u.price_version COLLATE "C", u.currency COLLATE "C"
"""
_LEDGER = f"""
SELECT u.currency::text AS currency,
       count(*) FILTER (WHERE to_char(u.started_at AT TIME ZONE 'UTC', 'YYYY-MM')
                              <> u.billing_period) AS correction_requests,
       {_SUMS}
FROM public.llm_usage u WHERE u.billing_period = :period
GROUP BY u.currency ORDER BY u.currency COLLATE "C"
"""


@dataclass(frozen=True)
class LineItem:
    tenant_id: uuid.UUID
    day: dt.date
    feature: str
    deployment: str
    price_version: str
    currency: str
    correction: bool
    requests: int
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    estimated_tokens: int
    cost: Decimal

    @property
    def charge_class(self) -> str:
        return CORRECTION if self.correction else ""

    def values(self) -> list[Any]:
        """The row in ``LINE_COLUMNS`` order, as the CSV writes it."""
        return [self.day.isoformat(), str(self.tenant_id), self.feature, self.deployment,
                self.requests, self.prompt_tokens, self.cached_tokens,
                self.completion_tokens, self.estimated_tokens, money(self.cost),
                self.currency, self.price_version, self.charge_class]


def money(amount: Decimal) -> str:
    """An exact amount with the ledger's 8 places, never in exponent notation."""
    return format(Decimal(amount).quantize(QUANTUM), "f")


def line_items(conn: Connection, period: str,
               tenant_id: uuid.UUID | None = None) -> Iterator[LineItem]:
    """The month's line items, ordered by practice, charge class, date, feature,
    deployment, price version, currency; streamed from a server-side cursor.

    The ledger rows seen are those the connection's role may see: every practice's for
    the owner (``flask usage export``), the one practice's for the app role in a
    practice's context (the admin download). ``tenant_id`` narrows to one practice.
    """
    sql = _LINE_ITEMS.format(tenant_filter="AND u.tenant_id = :tenant" if tenant_id else "")
    result = conn.execution_options(stream_results=True, yield_per=2000).execute(
        text(sql), {"period": period, "tenant": tenant_id})
    for row in result:
        yield LineItem(tenant_id=row.tenant_id, day=row.day, feature=row.feature,
                       deployment=row.deployment, price_version=row.price_version,
                       currency=row.currency.strip(), correction=bool(row.correction),
                       requests=int(row.requests), prompt_tokens=int(row.prompt_tokens),
                       cached_tokens=int(row.cached_tokens),
                       completion_tokens=int(row.completion_tokens),
                       estimated_tokens=int(row.estimated_tokens), cost=Decimal(row.cost))


def ledger_totals(conn: Connection, period: str) -> dict[str, dict[str, Any]]:
    """The ledger's own totals for the month per currency (the manifest's cross-check)."""
    return {row.currency.strip(): {
        "rows": int(row.requests), "correction_rows": int(row.correction_requests),
        **{column: int(getattr(row, column)) for column in TOKEN_COLUMNS},
        "cost": Decimal(row.cost)}
        for row in conn.execute(text(_LEDGER), {"period": period})}


# -- one practice's files ------------------------------------------------------------------


def csv_bytes(rows: Iterable[Sequence[Any]]) -> bytes:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerows(rows)
    return buffer.getvalue().encode()


def practice_csv(items: Sequence[LineItem]) -> bytes:
    """``<period>/<tenant_id>.csv``: a header and one row per line item (RFC 4180)."""
    return csv_bytes([LINE_COLUMNS, *(item.values() for item in items)])


def totals_of(items: Iterable[LineItem]) -> dict[str, dict[str, Any]]:
    """Sum line items per currency (amounts in different currencies are never added)."""
    totals: dict[str, dict[str, Any]] = {}
    for item in items:
        total = totals.setdefault(item.currency, {
            "line_items": 0, "requests": 0, **dict.fromkeys(TOKEN_COLUMNS, 0),
            "cost": Decimal(0), "correction_requests": 0, "correction_cost": Decimal(0)})
        total["line_items"] += 1
        total["requests"] += item.requests
        for column in TOKEN_COLUMNS:
            total[column] += getattr(item, column)
        total["cost"] += item.cost
        if item.correction:
            total["correction_requests"] += item.requests
            total["correction_cost"] += item.cost
    return dict(sorted(totals.items()))


def _json_totals(totals: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {currency: {key: money(value) if isinstance(value, Decimal) else value
                       for key, value in total.items()} for currency, total in totals.items()}


def practice_json(period: str, tenant_id: uuid.UUID, items: Sequence[LineItem]) -> bytes:
    """``<period>/<tenant_id>.json``: the same line items (``cost`` a decimal string,
    ``charge_class`` null or ``"correction"``) and their totals per currency."""
    document = {
        "period": period, "tenant_id": str(tenant_id),
        "line_items": [dict(zip(LINE_COLUMNS, item.values(), strict=True))
                       | {"charge_class": item.charge_class or None} for item in items],
        "totals": _json_totals(totals_of(items)),
    }
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode()


# -- FOCUS 1.2 --------------------------------------------------------------------------

FOCUS_COLUMNS = (
    "BilledCost", "BillingAccountId", "BillingAccountName", "BillingCurrency",
    "BillingPeriodEnd", "BillingPeriodStart", "ChargeCategory", "ChargeClass",
    "ChargeDescription", "ChargeFrequency", "ChargePeriodEnd", "ChargePeriodStart",
    "ConsumedQuantity", "ConsumedUnit", "ContractedCost", "EffectiveCost",
    "InvoiceIssuerName", "ListCost", "PricingCategory", "PricingQuantity", "PricingUnit",
    "ProviderName", "PublisherName", "RegionId", "RegionName", "ServiceCategory",
    "ServiceName", "ServiceSubcategory", "SkuId", "SkuPriceId", "SubAccountId",
    "SubAccountName",
    "x_UsageDate", "x_Feature", "x_Requests", "x_PromptTokens", "x_CachedTokens",
    "x_CompletionTokens", "x_EstimatedTokens", "x_PriceVersion")
PLATFORM = "ClinAI"
REGION = ("germanywestcentral", "Germany West Central")


def utc_text(at: dt.datetime) -> str:
    """An instant as FOCUS and the manifest write it: ``YYYY-MM-DDTHH:MM:SSZ`` (UTC)."""
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _instant(day: dt.date) -> str:
    return utc_text(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC))


def focus_row(item: LineItem, period_start: dt.date, period_end: dt.date) -> list[Any]:
    """One line item in the FinOps FOCUS 1.2 column set (``FOCUS_COLUMNS``).

    The practice is both the billing account (it gets the invoice) and the sub account;
    names stay out of the files (ids only). A correction keeps its original day as charge
    period and the month that bills it as billing period (``ChargeClass`` Correction).
    ``ConsumedQuantity`` is every token of the line item (provider-reported plus
    estimated); the ``x_`` columns keep the kinds apart.
    """
    tenant = str(item.tenant_id)
    cost = money(item.cost)
    tokens = item.prompt_tokens + item.completion_tokens + item.estimated_tokens
    return [
        cost, tenant, tenant, item.currency, _instant(period_end), _instant(period_start),
        "Usage", "Correction" if item.correction else "",
        f"AI tokens: {item.feature} on {item.deployment}", "Usage-Based",
        _instant(item.day + dt.timedelta(days=1)), _instant(item.day),
        tokens, "Tokens", cost, cost, PLATFORM, cost, "Standard", tokens, "Tokens",
        PLATFORM, PLATFORM, *REGION, "AI and Machine Learning", "ClinAI AI assistance",
        "Generative AI", item.deployment, item.price_version, tenant, tenant,
        item.day.isoformat(), item.feature, item.requests, item.prompt_tokens,
        item.cached_tokens, item.completion_tokens, item.estimated_tokens,
        item.price_version,
    ]


# -- the month's files ------------------------------------------------------------------


@dataclass
class HashingFile:
    """A temporary file (in memory up to 8 MiB) that counts rows and hashes its bytes."""

    handle: IO[bytes] = field(default_factory=lambda: tempfile.SpooledTemporaryFile(  # noqa: SIM115 - closed by close()
        max_size=8 * 1024 * 1024))
    digest: Any = field(default_factory=hashlib.sha256)
    rows: int = 0

    def write(self, data: bytes, rows: int = 0) -> None:
        self.handle.write(data)
        self.digest.update(data)
        self.rows += rows

    def rewound(self) -> IO[bytes]:
        self.handle.seek(0)
        return self.handle

    def close(self) -> None:
        self.handle.close()

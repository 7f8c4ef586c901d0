"""Versioned LLM prices: what one call costs, in EUR, at the time it was made.

The price table comes from a TOML or JSON file (``LLM_PRICES_FILE``; default: the
checked-in ``llm/prices.toml``). Each entry is one *price version* of one deployment:
prices per 1M tokens for input, cached input and output, the currency (EUR), the
instant it takes effect (``valid_from``, inclusive) and optionally the instant it ends
(``valid_to``, exclusive). The versions of one deployment may not overlap; a version id
is unique in the file (it is recorded on every ledger row the version rated, so a later
price change never rewrites a past row).

Prices are exact decimals written as strings (``"0.138"``): a float in the file is
refused, as are negative prices, unknown currencies, unknown keys, naive timestamps and
overlapping versions. A bad file raises ``PriceFileError`` with a one-line message
(``api.llm`` turns it into a ``ConfigError`` at start-up).

Rating (``PriceTable.rate``): the version valid at the call's start (UTC); in a gap
between versions, or after the last one ended, the latest version that began before the
call (the row records which one). A deployment with no version that began at or before
the call has no price: ``NoPrice``. The gateway checks at start-up that its deployment
has a version valid then, and rates each call before it is sent, so a call is never made
that could not be rated.

Cost = ((prompt - cached) x input + cached x cached_input + completion x output) / 1e6,
exact, quantized to 8 places with ROUND_HALF_EVEN (``Numeric(14, 8)`` of the ledger).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation, localcontext
from pathlib import Path
from typing import Any

DEFAULT_PRICES_FILE = Path(__file__).with_name("prices.toml")
CURRENCIES = frozenset({"EUR"})
QUANTUM = Decimal("0.00000001")
PER_TOKENS = Decimal(1_000_000)
_REQUIRED = ("deployment", "version", "currency", "input", "cached_input", "output",
             "valid_from")
_KEYS = frozenset({*_REQUIRED, "valid_to"})
_PRICE_KEYS = ("input", "cached_input", "output")
MAX_NAME = 64  # the ledger's deployment and price_version columns


class PriceFileError(ValueError):
    """The price file cannot be used; the message is one line naming the problem."""


class NoPrice(LookupError):
    """No price version of the deployment began at or before the call."""


@dataclass(frozen=True, kw_only=True)
class PriceVersion:
    deployment: str
    version: str
    currency: str
    input: Decimal  # per 1M tokens
    cached_input: Decimal
    output: Decimal
    valid_from: dt.datetime  # inclusive, UTC
    valid_to: dt.datetime | None = None  # exclusive, UTC; None: open-ended

    def valid_at(self, at: dt.datetime) -> bool:
        return self.valid_from <= at and (self.valid_to is None or at < self.valid_to)

    def cost(self, prompt: int, cached: int, completion: int) -> Decimal:
        """The exact cost of a call's tokens (``prompt`` includes ``cached``)."""
        with localcontext(prec=60):
            total = ((prompt - cached) * self.input + cached * self.cached_input
                     + completion * self.output) / PER_TOKENS
            return total.quantize(QUANTUM, rounding=ROUND_HALF_EVEN)


class PriceTable:
    """The price versions of every deployment, validated."""

    def __init__(self, versions: list[PriceVersion], *, source: str = "<memory>") -> None:
        self.source = source
        by_deployment: dict[str, list[PriceVersion]] = {}
        seen: set[str] = set()
        for version in versions:
            if version.version in seen:
                raise PriceFileError(f"{source}: version {version.version!r} appears twice")
            seen.add(version.version)
            by_deployment.setdefault(version.deployment, []).append(version)
        for deployment, listed in by_deployment.items():
            listed.sort(key=lambda v: v.valid_from)
            for before, after in itertools.pairwise(listed):
                if before.valid_to is None or before.valid_to > after.valid_from:
                    raise PriceFileError(
                        f"{source}: versions {before.version!r} and {after.version!r} of "
                        f"{deployment!r} overlap")
        self._versions = by_deployment

    def versions(self, deployment: str) -> list[PriceVersion]:
        return list(self._versions.get(deployment, []))

    def rate(self, deployment: str, at: dt.datetime) -> PriceVersion:
        """The version valid at ``at``, else the latest one that began before it."""
        at = _utc(at)
        began = [v for v in self._versions.get(deployment, []) if v.valid_from <= at]
        if not began:
            raise NoPrice(f"no price for deployment {deployment!r} at {at.isoformat()}")
        return began[-1]  # sorted by valid_from, non-overlapping

    def require(self, deployment: str, at: dt.datetime) -> PriceVersion:
        """The version valid at ``at`` exactly (no fallback); ``PriceFileError`` if none."""
        at = _utc(at)
        for version in self._versions.get(deployment, []):
            if version.valid_at(at):
                return version
        raise PriceFileError(f"{self.source}: no price version of deployment {deployment!r} "
                             f"is valid now ({at.isoformat(timespec='seconds')})")


def load_prices(path: str | Path | None = None) -> PriceTable:
    """Read and validate a price file (``.toml`` or ``.json``); default: llm/prices.toml."""
    file = Path(path) if path is not None else DEFAULT_PRICES_FILE
    source = str(file)
    suffix = file.suffix.lower()
    if suffix not in (".toml", ".json"):
        raise PriceFileError(f"{source}: a price file must end in .toml or .json")
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        raise PriceFileError(f"{source}: no such price file") from None
    except OSError as exc:
        raise PriceFileError(f"{source}: cannot read the price file ({exc.strerror})") from None
    try:
        document: Any = (tomllib.loads(raw.decode("utf-8")) if suffix == ".toml"
                         else json.loads(raw, parse_float=_refuse_float))
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PriceFileError(f"{source}: not valid {suffix[1:].upper()} ({message})") from None
    except _FloatInJson:
        raise PriceFileError(f"{source}: write prices as strings (\"0.138\"), never as "
                             "floating-point numbers") from None
    if not isinstance(document, dict) or set(document) != {"prices"} or not isinstance(
            document["prices"], list) or not document["prices"]:
        raise PriceFileError(f"{source}: expected one non-empty list `prices` of price "
                             "versions and nothing else")
    versions = [_version(entry, f"{source}: prices[{i}]")
                for i, entry in enumerate(document["prices"])]
    return PriceTable(versions, source=source)


class _FloatInJson(Exception):
    pass


def _refuse_float(_text: str) -> Decimal:
    raise _FloatInJson


def _version(entry: Any, where: str) -> PriceVersion:
    if not isinstance(entry, Mapping):
        raise PriceFileError(f"{where}: a price version must be a table/object")
    unknown = sorted(set(entry) - _KEYS)
    if unknown:
        raise PriceFileError(f"{where}: unknown key(s) {', '.join(unknown)}")
    missing = [key for key in _REQUIRED if key not in entry]
    if missing:
        raise PriceFileError(f"{where}: missing key(s) {', '.join(missing)}")
    for key in ("deployment", "version", "currency"):
        value = entry[key]
        if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME:
            raise PriceFileError(f"{where}: {key} must be a non-empty string of at most "
                                 f"{MAX_NAME} characters")
    where = f"{where} ({entry['version']})"
    if entry["currency"] not in CURRENCIES:
        raise PriceFileError(f"{where}: unknown currency {entry['currency']!r} "
                             f"(known: {', '.join(sorted(CURRENCIES))})")
    prices = {key: _price(entry[key], f"{where}: {key}") for key in _PRICE_KEYS}
    valid_from = _instant(entry["valid_from"], f"{where}: valid_from")
    valid_to = (_instant(entry["valid_to"], f"{where}: valid_to")
                if entry.get("valid_to") is not None else None)
    if valid_to is not None and valid_to <= valid_from:
        raise PriceFileError(f"{where}: valid_to must be after valid_from")
    return PriceVersion(deployment=entry["deployment"], version=entry["version"],
                        currency=entry["currency"], valid_from=valid_from, valid_to=valid_to,
                        **prices)


def _price(value: Any, where: str) -> Decimal:
    if isinstance(value, float):
        raise PriceFileError(f"{where}: write prices as strings (\"0.138\"), never as "
                             "floating-point numbers")
    if not isinstance(value, str):
        raise PriceFileError(f"{where}: a price must be a decimal string such as \"0.138\"")
    try:
        price = Decimal(value.strip())
    except InvalidOperation:
        raise PriceFileError(f"{where}: {value!r} is not a decimal number") from None
    if not price.is_finite():
        raise PriceFileError(f"{where}: {value!r} is not a finite decimal number")
    if price < 0:
        raise PriceFileError(f"{where}: a price may not be negative ({value})")
    return price


def _instant(value: Any, where: str) -> dt.datetime:
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            raise PriceFileError(f"{where}: {value!r} is not an ISO 8601 timestamp") from None
    if not isinstance(value, dt.datetime):
        raise PriceFileError(f"{where}: expected a timestamp with a UTC offset, "
                             "such as 2026-11-01T00:00:00Z")
    if value.tzinfo is None or value.utcoffset() is None:
        raise PriceFileError(f"{where}: the timestamp needs a UTC offset (…Z or +01:00)")
    return value.astimezone(dt.UTC)


def _utc(at: dt.datetime) -> dt.datetime:
    if at.tzinfo is None:
        raise ValueError("rate with an aware datetime (UTC)")
    return at.astimezone(dt.UTC)

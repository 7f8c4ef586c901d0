"""The LLM gateway: admission, the provider call with retries, metering, restoring names.

Every call, whatever its outcome, reserves before it leaves, settles exactly once and
appends one ledger row. Usage is what the provider reported; only when a stream never
delivered its usage chunk are the tokens counted locally and the row flagged
``estimated``; nothing adds the two kinds together. Each call is rated before it is sent
with the price version valid at its start (UTC, ``llm.prices``); a call whose deployment
has no price is refused (503) before anything is reserved or sent, so every row has a
cost. The gateway is the only retry loop (the SDK has ``max_retries=0``).
Messages arrive masked (``api.common.mask_for_model``); the caller's pseudonymiser
restores the reply.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import openai
import sqlalchemy.exc
from openai import AzureOpenAI
from opentelemetry import metrics

from llm.errors import AdmissionRefused, ContentFiltered, LLMUnavailable, RequestTooLarge
from llm.ledger import ARTIFACT_KINDS, Ledger, Reservation, UsageRecord
from llm.prices import NoPrice, PriceTable, PriceVersion, load_prices
from llm.pseudonymize import Pseudonymizer
from llm.tokens import count_messages, count_text
from tenancy.actor import Actor

log = logging.getLogger(__name__)
_meter = metrics.get_meter("clinai.llm")
_tokens = _meter.create_counter(
    "clinai.llm.tokens", unit="token",
    description="LLM tokens metered, as in the ledger: prompt, completion, and cached (the "
                "part of prompt the provider served from its cache)")
_refusals = _meter.create_counter(
    "clinai.llm.budget_refusals", unit="{call}",
    description="Calls refused before they were sent: budget, per-minute limits, size")
_errors = _meter.create_counter(
    "clinai.llm.errors", unit="{error}",
    description="Provider errors, one per failed attempt or broken stream, by kind")
# Each exported metric and its dimensions (api.telemetry keeps only these, at most 10).
METRICS: dict[str, frozenset[str]] = {
    "clinai.llm.tokens": frozenset({"tenant_id", "feature", "deployment", "kind"}),
    "clinai.llm.budget_refusals": frozenset({"tenant_id", "feature", "reason"}),
    "clinai.llm.errors": frozenset({"tenant_id", "feature", "deployment", "kind"}),
}

RETRYABLE = (openai.RateLimitError, openai.InternalServerError, openai.APITimeoutError,
             openai.APIConnectionError)


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    source: str = "none"  # provider | estimated | none

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_dict(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "total_tokens": self.total_tokens}

    @classmethod
    def from_provider(cls, usage: Any) -> Usage:
        prompt_details = getattr(usage, "prompt_tokens_details", None)
        completion_details = getattr(usage, "completion_tokens_details", None)
        return cls(
            prompt_tokens=int(usage.prompt_tokens or 0),
            completion_tokens=int(usage.completion_tokens or 0),
            cached_tokens=int(getattr(prompt_details, "cached_tokens", 0) or 0),
            reasoning_tokens=int(getattr(completion_details, "reasoning_tokens", 0) or 0),
            source="provider",
        )


@dataclass(frozen=True)
class Completion:
    text: str
    usage: Usage


@dataclass(kw_only=True)
class OpenCall:
    """A provider call under way: its reservation, price and what was sent."""

    actor: Actor
    feature: str
    reservation: Reservation
    masked: list[dict[str, Any]]
    started: float
    price: PriceVersion
    started_at: dt.datetime  # UTC: the instant the price was chosen for
    artifact: tuple[str, uuid.UUID] | None = None
    attempts: int = 0
    response: Any = None


# A streamed reply is cut off after this long, however slowly its consumer reads. It
# bounds how long a reservation can stay in flight (llm/ledger.py drops reservations of a
# budget row idle for 15 minutes).
STREAM_MAX_SECONDS = 300.0


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    max_attempts: int = 3
    total_timeout: float = 60.0
    backoff: float = 0.5
    max_backoff: float = 8.0


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Gateway:
    def __init__(self, *, client: AzureOpenAI, deployment: str, ledger: Ledger,
                 prices: PriceTable | None = None, retry: RetryPolicy | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], dt.datetime] = utc_now,
                 on_auth_failure: Callable[[], bool] | None = None) -> None:
        """``prices`` default to llm/prices.toml; the deployment must have a price valid
        now (``PriceFileError`` otherwise). ``clock`` gives a call's start time (UTC).
        ``on_auth_failure`` re-reads a rotated API key after a 401 (True: a new key, so
        the call is tried once more)."""
        self.client = client
        self.deployment = deployment
        self.ledger = ledger
        self.prices = prices if prices is not None else load_prices()
        self.prices.require(deployment, clock())
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.clock = clock
        self.on_auth_failure = on_auth_failure

    # -- public ------------------------------------------------------------------------

    def complete(self, actor: Actor, feature: str, messages: list[dict[str, Any]], *,
                 max_tokens: int, pseudonymizer: Pseudonymizer | None = None,
                 artifact: tuple[str, uuid.UUID] | None = None) -> Completion:
        """Run one non-streamed completion for ``actor``'s ``feature`` (metered to the
        actor's practice, and to ``artifact``, ``(kind, id)``, if given); return the
        reply with real names restored."""
        call = self._open(actor, feature, messages, max_tokens, stream=False,
                          artifact=artifact)
        response = call.response
        usage = Usage.from_provider(response.usage) if response.usage else Usage()
        text = response.choices[0].message.content or "" if response.choices else ""
        filtered = bool(response.choices) and response.choices[0].finish_reason == "content_filter"
        self._settle(call, usage, "filtered" if filtered else "ok")
        if filtered:
            raise ContentFiltered("the provider's content filter withheld the reply")
        return Completion(pseudonymizer.restore(text) if pseudonymizer else text, usage)

    def stream(self, actor: Actor, feature: str, messages: list[dict[str, Any]], *,
               max_tokens: int, pseudonymizer: Pseudonymizer | None = None,
               artifact: tuple[str, uuid.UUID] | None = None) -> GatewayStream:
        """Open a streamed completion. Admission and connection errors raise here, before
        anything is sent to the user; iterate the result for the text. ``artifact`` as
        for ``complete``."""
        call = self._open(actor, feature, messages, max_tokens, stream=True,
                          artifact=artifact)
        return GatewayStream(self, call, pseudonymizer)

    # -- internals ---------------------------------------------------------------------

    def _open(self, actor: Actor, feature: str, messages: list[dict[str, Any]],
              max_tokens: int, *, stream: bool,
              artifact: tuple[str, uuid.UUID] | None) -> OpenCall:
        """Rate, reserve, call with retries; a call that never got a reply is settled
        here. ``messages`` go to the provider as given (masked by the caller)."""
        if artifact is not None and (artifact[0] not in ARTIFACT_KINDS
                                     or not isinstance(artifact[1], uuid.UUID)):
            raise ValueError(f"an artifact is (kind, uuid) with kind in {sorted(ARTIFACT_KINDS)}")
        masked = messages
        started_at = self.clock()
        try:
            price = self.prices.rate(self.deployment, started_at)
        except NoPrice as exc:  # start-up checked the deployment; only a clock change gets here
            log.error("no price for deployment %s at %s; call refused", self.deployment,
                      started_at.isoformat())
            raise LLMUnavailable("the AI service is not priced; try again later") from exc
        try:
            reservation = self.ledger.reserve(actor.tenant_id,
                                              count_messages(masked) + max_tokens)
        except (AdmissionRefused, RequestTooLarge) as exc:
            _refusals.add(1, {"tenant_id": str(actor.tenant_id), "feature": feature,
                              "reason": exc.code})
            raise
        call = OpenCall(actor=actor, feature=feature, reservation=reservation, masked=masked,
                        started=time.monotonic(), price=price, started_at=started_at,
                        artifact=artifact)
        try:
            call.response = self._call(call, max_tokens, stream=stream)
        except BaseException as exc:
            call.attempts = max(call.attempts, 1)
            self._settle(call, Usage(),
                         "filtered" if isinstance(exc, ContentFiltered) else "failed")
            raise
        return call

    def _call(self, call: OpenCall, max_tokens: int, *, stream: bool) -> Any:
        messages = call.masked
        deadline = time.monotonic() + self.retry.total_timeout
        last: Exception | None = None
        wait_hint = 30
        key_reread = False
        attempts = self.retry.max_attempts  # one more after a rotated key was re-read
        attempt = 0
        while attempt < attempts:
            attempt += 1
            call.attempts = attempt
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                extra: dict[str, Any] = (
                    {"stream": True, "stream_options": {"include_usage": True}} if stream else {})
                response = self.client.chat.completions.create(
                    model=self.deployment, messages=messages,  # type: ignore[arg-type]
                    max_tokens=max_tokens, timeout=remaining, **extra)
                return response
            except openai.BadRequestError as exc:
                self._count_error(call, "content_filter" if _is_content_filter(exc)
                                  else "bad_request")
                if _is_content_filter(exc):
                    raise ContentFiltered("the provider's content filter refused the request"
                                          ) from exc
                raise LLMUnavailable("the AI provider rejected the request") from exc
            except RETRYABLE as exc:
                last = exc
                self._count_error(call, error_kind(exc))
                if attempt == attempts:
                    break
                # The provider's retry-after is honoured as given; a wait that would not
                # fit in the call's deadline ends the call instead of retrying early.
                delay = self._delay(exc, attempt)
                if time.monotonic() + delay >= deadline:
                    wait_hint = max(1, math.ceil(delay))  # the provider's wait, passed on
                    break
                log.warning("llm attempt %d failed (%s); retrying in %.1f s",
                            attempt, type(exc).__name__, delay)
                self.sleep(delay)
            except openai.AuthenticationError as exc:
                last = exc
                self._count_error(call, "auth")
                if key_reread or self.on_auth_failure is None or not self.on_auth_failure():
                    break
                key_reread = True  # the key was rotated: once more with the new one
                attempts += 1
                log.warning("llm authentication failed; retrying with the re-read key")
            except openai.APIStatusError as exc:
                last = exc
                self._count_error(call, error_kind(exc))
                break
        log.error("llm unavailable after retries (%s)", type(last).__name__ if last else "-")
        raise LLMUnavailable("the AI service is unavailable; try again later",
                             retry_after=wait_hint) from last

    def _count_error(self, call: OpenCall, kind: str) -> None:
        _errors.add(1, {"tenant_id": str(call.actor.tenant_id), "feature": call.feature,
                        "deployment": self.deployment, "kind": kind})

    def _delay(self, exc: Exception, attempt: int) -> float:
        response = getattr(exc, "response", None)
        header = response.headers.get("retry-after") if response is not None else None
        if header:
            try:
                return max(0.0, float(header))
            except ValueError:
                pass
        return min(float(self.retry.backoff * (2 ** (attempt - 1))), self.retry.max_backoff)

    def _settle(self, call: OpenCall, usage: Usage, status: str) -> None:
        """Meter the call; retried, because the provider has billed it either way."""
        actor = call.actor
        record = UsageRecord(
            tenant_id=actor.tenant_id, user_id=actor.user_id, feature=call.feature,
            deployment=self.deployment, prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens, cached_tokens=usage.cached_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            cost=call.price.cost(usage.prompt_tokens, usage.cached_tokens,
                                 usage.completion_tokens),
            price_version=call.price.version, currency=call.price.currency,
            latency_ms=int((time.monotonic() - call.started) * 1000), attempts=call.attempts,
            status=status, usage_source=usage.source, request_id=actor.request_id,
            artifact_kind=call.artifact[0] if call.artifact else None,
            artifact_id=call.artifact[1] if call.artifact else None,
            started_at=call.started_at)
        for attempt in range(3):
            try:
                self.ledger.settle(call.reservation, record)
                break
            except sqlalchemy.exc.TimeoutError:
                # No connection from the pool: nothing was sent, so a retry can't count
                # twice. Any other failure may have committed; it is not retried.
                if attempt == 2:
                    log.error("settling an LLM call failed (pool exhausted); reservation "
                              "left to expire")
                    raise
                self.sleep(0.2 * (attempt + 1))
        attributes = {"tenant_id": str(actor.tenant_id), "feature": call.feature,
                      "deployment": self.deployment}
        _tokens.add(usage.prompt_tokens, {**attributes, "kind": "prompt"})
        _tokens.add(usage.completion_tokens, {**attributes, "kind": "completion"})
        _tokens.add(usage.cached_tokens, {**attributes, "kind": "cached"})


def error_kind(exc: Exception) -> str:
    """A provider error's kind, for the ``clinai.llm.errors`` metric (a short fixed set)."""
    if isinstance(exc, openai.RateLimitError):
        return "rate_limited"
    if isinstance(exc, openai.APITimeoutError):  # before its base, APIConnectionError
        return "timeout"
    if isinstance(exc, openai.APIConnectionError):
        return "connection"
    if isinstance(exc, openai.InternalServerError):
        return "server_error"
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return "auth"
    if isinstance(exc, openai.APIStatusError):
        return "status_error"
    return "other"


def _is_content_filter(exc: openai.BadRequestError) -> bool:
    body = exc.body if isinstance(exc.body, dict) else {}
    return "content_filter" in str(body.get("code", "")) or "content_filter" in str(exc.code)


class GatewayStream:
    """The text of a streamed completion, metered exactly once however it ends.

    Iterating yields text pieces with names restored. If the consumer stops early (the
    user disconnected), ``close()`` keeps reading the upstream to its end to get the
    provider's usage. Raises ``LLMUnavailable`` if the upstream breaks off and
    ``ContentFiltered`` if the provider's filter stops the reply.
    """

    def __init__(self, gateway: Gateway, call: OpenCall,
                 pseudonymizer: Pseudonymizer | None) -> None:
        self._gateway = gateway
        self._call = call
        self._upstream = call.response
        self._pseudonymizer = pseudonymizer
        self._received: list[str] = []
        self._provider_usage: Usage | None = None
        self._finish: str | None = None
        self._error: Exception | None = None
        self._settled = False
        self._exhausted = False
        self.usage: Usage | None = None

    def _raw(self) -> Iterator[str]:
        deadline = self._call.started + STREAM_MAX_SECONDS
        try:
            for chunk in self._upstream:
                if time.monotonic() > deadline:
                    raise TimeoutError("stream exceeded its time limit")
                if chunk.usage is not None:
                    self._provider_usage = Usage.from_provider(chunk.usage)
                for choice in chunk.choices or []:
                    if choice.finish_reason:
                        self._finish = choice.finish_reason
                    piece = choice.delta.content if choice.delta else None
                    if piece:
                        self._received.append(piece)
                        yield piece
        except Exception as exc:  # any break in the upstream fails the reply
            self._error = exc
            self._gateway._count_error(self._call, "stream_broken")
        self._exhausted = True

    def __iter__(self) -> Iterator[str]:
        pieces = self._raw()
        restored = (self._pseudonymizer.restore_stream(pieces) if self._pseudonymizer
                    else pieces)
        try:
            yield from restored
        finally:
            self.close()
        if self._error is not None:
            raise LLMUnavailable("the AI reply broke off; nothing was saved") from self._error
        if self._finish == "content_filter":
            raise ContentFiltered("the provider's content filter stopped the reply")

    @property
    def text(self) -> str:
        """The whole reply so far, with names restored."""
        joined = "".join(self._received)
        return self._pseudonymizer.restore(joined) if self._pseudonymizer else joined

    def close(self) -> None:
        """Finish reading the upstream (for its usage) and meter the call, once."""
        if self._settled:
            return
        disconnected = not self._exhausted
        if disconnected:
            for _ in self._raw():  # drain: the usage chunk comes last (errors end _raw)
                pass
        self._settled = True
        close_upstream = getattr(self._upstream, "close", None)
        if close_upstream is not None:
            close_upstream()  # release the HTTP connection, also after an error
        if self._provider_usage is not None:
            usage = self._provider_usage
        else:
            # The provider never sent usage: count what was sent and received, and say so.
            usage = Usage(prompt_tokens=count_messages(self._call.masked),
                          completion_tokens=count_text("".join(self._received)),
                          source="estimated")
        status = ("failed" if self._error is not None
                  else "filtered" if self._finish == "content_filter"
                  else "disconnected" if disconnected else "ok")
        self.usage = usage
        self._gateway._settle(self._call, usage, status)

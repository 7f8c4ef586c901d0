"""Exceptions raised by the LLM gateway.

    LLMError
    ├── AdmissionRefused          the tenant may not spend now (HTTP 429)
    │   ├── BudgetExhausted       the monthly token budget would be exceeded
    │   └── RateLimited           the per-minute request or token limit is reached
    ├── RequestTooLarge           one request needs more tokens than a limit allows (HTTP 413)
    ├── LLMUnavailable            the provider stayed unavailable past retries (HTTP 503)
    └── ContentFiltered           the provider's content filter refused the request (HTTP 422)

``retry_after`` (seconds) is set where a retry can succeed later. Messages never
contain prompt or completion text.
"""

from __future__ import annotations


class LLMError(Exception):
    code = "llm_error"

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class AdmissionRefused(LLMError):
    code = "admission_refused"


class BudgetExhausted(AdmissionRefused):
    code = "token_budget_exhausted"


class RateLimited(AdmissionRefused):
    code = "rate_limited"


class RequestTooLarge(LLMError):
    code = "request_too_large"


class LLMUnavailable(LLMError):
    code = "llm_unavailable"


class ContentFiltered(LLMError):
    code = "content_filtered"

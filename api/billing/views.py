"""The platform's billing read: every practice's AI usage for a month.

Not a practice route: the caller's token names no practice (or any), and only the
subjects listed in ``BILLING_PRINCIPALS`` may read. The cross-tenant totals come from
``public.billing_usage_summary`` (migrations 0009, 0010), a SECURITY DEFINER function granted to
the app role; row-level security on the ledger stays as strict as for every request.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from flask import current_app
from flask.views import MethodView

from api.admin.schemas import UsageQueryArgsSchema
from api.apidoc import document_errors
from api.auth import authenticated, caller_id
from api.billing import operations
from api.billing.schemas import BillingUsageSchema
from api.blueprint import Blueprint
from api.db import get_db
from api.errors import abort
from api.examples import BILLING_USAGE

P = ParamSpec("P")
R = TypeVar("R")

blp = Blueprint("billing", __name__, url_prefix="/api/v1/billing",
                description="The platform's billing team: AI usage of every practice, per "
                            "month (billing principals only).")


def billing_principal(view: Callable[P, R]) -> Callable[P, R]:
    """Require a valid token whose subject is listed in ``BILLING_PRINCIPALS``.

    A practice membership grants nothing here: an admin of a practice is refused like
    anyone else who is not listed.
    """

    @functools.wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if caller_id() not in current_app.config["BILLING_PRINCIPALS"]:
            abort(403, "not_billing_principal",
                  "Only the platform's billing principals may read billing data.")
        get_db().verify()  # the app role's start-up safety check, as for practice routes
        return view(*args, **kwargs)

    return authenticated(document_errors(wrapper, "not_billing_principal",
                                         "unsafe_database_role"))


@blp.route("/usage")
class BillingUsage(MethodView):
    @billing_principal
    @blp.arguments(UsageQueryArgsSchema(), location="query")
    @blp.response(200, BillingUsageSchema, example=BILLING_USAGE)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """Read every practice's AI usage for a month, for invoicing.

        For the platform's billing team: the caller's token subject (`oid`, else `sub`)
        must be listed in the server setting `BILLING_PRINCIPALS` (403
        `not_billing_principal` otherwise, for practice admins and therapists too). The
        token needs no practice.

        `period` is a UTC month, `YYYY-MM` (default: the current month). One entry per
        practice and currency billed in the month, ordered by `tenant_id`, then
        `currency`, summed from the metering ledger (every metered AI call, failed ones
        included): the figures of the month's `summary.csv` (`flask usage export`).
        A call is billed in the month it started (UTC), unless that month was already
        closed when the call was metered (a late settlement): then it is billed in the
        next open month and counted in `correction_requests`/`correction_cost` too.
        Practices that left the platform (`status` `erased`) are still listed for the
        months they used. `currency` is `EUR` (each call rated with the price version
        valid when it started, `LLM_PRICES_FILE`), or `USD` for calls rated before prices
        were versioned: amounts in different currencies are never added, and `totals`
        sums the entries per currency. `cost` is an exact decimal sent as a string.

        Tokens: `prompt_tokens`, `cached_tokens` (part of `prompt_tokens`) and
        `completion_tokens` are what the provider reported; `estimated_tokens` (input plus
        output) were counted locally for calls the provider reported no usage for. The two
        never overlap, so provider totals can be reconciled with Azure's own cost export.

        An open month still grows as calls are metered; a `closed` month's figures never
        change.
        """
        period = args["period"]
        with get_db().engine.connect() as conn:
            return operations.usage_summary(conn, period)

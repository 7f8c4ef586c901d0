"""Wire the LLM gateway into the app (its errors are mapped in ``api.errors``)."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable

from flask import Flask, current_app

from api.secrets import current_secrets
from api.settings import ConfigError
from llm.client import ProviderConfig, create_client
from llm.gateway import Gateway, RetryPolicy
from llm.ledger import Ledger, Limits
from llm.prices import PriceFileError, PriceTable, load_prices
from llm.simulator import Simulator
from tenancy.database import create_app_engine

EXTENSION = "clinai_llm"
SIMULATOR = "clinai_llm_simulator"


def init_app(app: Flask) -> None:
    c = app.config
    prices = _prices(c["LLM_PRICES_FILE"], c["AZURE_OPENAI_CHAT_DEPLOYMENT"])
    simulator = None
    if not c["AZURE_OPENAI_ENDPOINT"]:
        simulator = Simulator()
        app.extensions[SIMULATOR] = simulator
    secrets = current_secrets(app)
    api_key: str | Callable[[], str] | None = c["AZURE_OPENAI_API_KEY"]
    on_auth_failure: Callable[[], bool] | None = None
    if secrets.rotating("AZURE_OPENAI_API_KEY"):
        # From Key Vault: the SDK asks for the current key on every request, and a 401
        # re-reads it once (the key was rotated).
        handed = threading.local()  # the key this thread's last request carried

        def api_key() -> str:
            handed.key = secrets.get("AZURE_OPENAI_API_KEY") or ""
            return str(handed.key)

        def on_auth_failure() -> bool:
            return secrets.refresh("AZURE_OPENAI_API_KEY", getattr(handed, "key", None))

    client = create_client(ProviderConfig(
        endpoint=c["AZURE_OPENAI_ENDPOINT"], api_key=api_key,
        api_version=c["OPENAI_API_VERSION"], deployment=c["AZURE_OPENAI_CHAT_DEPLOYMENT"],
        request_timeout=float(c["LLM_TIMEOUT_SECONDS"]),
    ), simulator)
    from api.db import EXTENSION as DB_EXTENSION
    from api.db import get_db_config

    # Metering has its own small pool: a request holds one connection while its
    # reservation and settlement need another.
    engine = create_app_engine(get_db_config(app), pool_size=5, max_overflow=20)
    app.extensions[DB_EXTENSION].extra_engines.append(engine)
    ledger = Ledger(engine, Limits(
        monthly_tokens=c["LLM_DEFAULT_MONTHLY_TOKEN_BUDGET"],
        requests_per_minute=c["LLM_TENANT_REQUESTS_PER_MINUTE"],
        tokens_per_minute=c["LLM_TENANT_TOKENS_PER_MINUTE"],
    ))
    app.extensions[EXTENSION] = Gateway(
        client=client, deployment=c["AZURE_OPENAI_CHAT_DEPLOYMENT"], ledger=ledger,
        prices=prices, on_auth_failure=on_auth_failure,
        retry=RetryPolicy(max_attempts=c["LLM_MAX_ATTEMPTS"],
                          total_timeout=float(c["LLM_TIMEOUT_SECONDS"])),
    )


def _prices(path: str | None, deployment: str) -> PriceTable:
    """The price table (``LLM_PRICES_FILE``, default llm/prices.toml), refused at start-up
    when it is invalid or has no price valid now for the chat deployment."""
    try:
        table = load_prices(path)
        table.require(deployment, dt.datetime.now(dt.UTC))
    except PriceFileError as exc:
        raise ConfigError(f"LLM_PRICES_FILE: {exc}") from exc
    return table


def gateway() -> Gateway:
    g: Gateway = current_app.extensions[EXTENSION]
    return g

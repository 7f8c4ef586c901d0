"""The baseline: a plain single-tenant Flask + SQLAlchemy endpoint over the same data.

``GET /clients`` answers what ``GET /api/v1/clients`` answers (a page of 20 clients by
last name, with the total for pagination, dumped by the same schema), with no token,
no tenant context and no audit. ``BENCH_VARIANT`` adds the tenancy pieces one at a time
so their cost can be told apart: ``token`` (RS256 verification), ``context`` (token +
the API's ``enter_tenant``: BEGIN, settings and membership read in one message),
``audit`` (token + context + the API's audit INSERT sent with COMMIT). The variants run
on the admin login, so without row-level security.

With ``BENCH_POOLED=1`` the baseline is the same endpoint as a client of a transaction
pooler (``bench.tenancy_overhead --pooler``): no server-side prepared statements, and the
schema named in each statement instead of a ``search_path`` set at connection start-up
(PgBouncer forwards no ``options``).

Run: BENCH_DATABASE_URL=... BENCH_SCHEMA=t_... gunicorn bench.plain_app:app
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import jwt
from flask import Flask, jsonify, request
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from api.clients.schemas import ClientSchema
from api.db import AUDIT_KEY, commit_request
from models import Client
from tenancy.context import enter_tenant


def create_plain_app() -> Flask:
    url = os.environ["BENCH_DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://", 1)
    schema = os.environ["BENCH_SCHEMA"]
    variant = os.environ.get("BENCH_VARIANT", "plain")
    if os.environ.get("BENCH_POOLED"):
        engine = create_engine(url, pool_size=10, max_overflow=0,
                               connect_args={"prepare_threshold": None},
                               execution_options={"schema_translate_map": {None: schema}})
    else:
        engine = create_engine(url, pool_size=10, max_overflow=0,
                               connect_args={"options": f"-csearch_path={schema},public"})
    public_key = None
    if variant != "plain":
        public_key = jwt.PyJWK.from_json(os.environ["BENCH_JWK"]).key
    schema_dump = ClientSchema(many=True)
    app = Flask(__name__)

    @app.get("/clients")
    def clients() -> Any:
        claims: dict[str, Any] = {}
        if public_key is not None:
            token = request.headers["Authorization"].removeprefix("Bearer ")
            claims = jwt.decode(token, public_key, algorithms=["RS256"],
                                audience=os.environ["BENCH_AUDIENCE"])
        with Session(engine) as db, db.begin():
            if variant in ("context", "audit"):
                enter_tenant(db.connection(), uuid.UUID(claims["extension_tenant_id"]),
                             claims["sub"])
            query = select(Client)
            total = db.scalar(select(func.count()).select_from(query.subquery()))
            page = list(db.scalars(query.order_by(Client.last_name, Client.id).limit(20)))
            body = schema_dump.dump(page)
            if variant == "audit":  # the API's audit write: INSERT and COMMIT in one message
                db.info[AUDIT_KEY] = [{
                    "actor_id": claims["sub"], "actor_role": "admin", "action": "client.list",
                    "resource_type": "client", "resource_ids": [c.id for c in page],
                    "request_id": None, "client_request_id": None}]
                commit_request(db)
        response = jsonify(body)
        response.headers["X-Total"] = str(total)
        return response

    return app


app = create_plain_app() if "BENCH_SCHEMA" in os.environ else None

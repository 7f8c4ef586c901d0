"""Masking latency before a text goes to the model, by the size of the practice.

For practices of 10, 1,000 and 50,000 clients (``--sizes``) in one throw-away database,
times what ``api.common.mask_for_model`` does before an AI call: the indexed lookup of
the clients a text may mention (``api.clients.operations.pseudonymizer_for``, in the
tenant's context as the app role, under row-level security) and masking the messages.
Two texts: a chat question naming three other clients (one by a fragment of a double
name, one by birth date) and a 12-sentence transcript. Prints p50/p95 per size and a
JSON line; the target is p50 <= 5 ms at 50,000 clients.

    .venv/bin/python -m bench.masking [--sizes 10,1000,50000] [--runs 200]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import statistics
import time
import uuid
from typing import Any

from sqlalchemy import text as sa_text
from sqlalchemy.orm import Session, sessionmaker

from api.clients.operations import pseudonymizer_for
from bench._db import bench_database, default_server_url, percentile, watchdog
from llm.prompts import chat_messages, draft_messages
from models import Client, ClientIdentityKey
from models.identity import identity_keys
from tenancy.context import install, open_session
from tenancy.database import create_app_engine, create_owner_engine
from tenancy.provisioning import create_tenant

ADMIN = "bench-admin"
FIRST = ["Anna", "Ben", "Clara", "David", "Eva", "Felix", "Greta", "Hannes", "Ida", "Jonas",
         "Klara", "Lukas", "Mia", "Noah", "Olga", "Paul", "Rosa", "Simon", "Tilda", "Ulf"]
LAST = ["Abel", "Brandt", "Coester", "Dietz", "Engel", "Fuchs", "Graf", "Hahn", "Iske",
        "Jahn", "Kuhn", "Lange", "Mohr", "Nagel", "Otto", "Pohl", "Roth", "Seidel", "Thiel",
        "Vogt"]
QUESTION = ("Does Lindqvist, Sigrun or Lena from the Schulze-Hartmann family (born "
            "14.02.1990) know Eberhard? He mentioned them on Tuesday.")
TRANSCRIPT = " ".join([
    "Eberhard Klein says he slept better this week.", "He walked daily.",
    "His mood seems brighter than last month.", "Work was stressful on Tuesday.",
    "He called his sister, Sigrun, twice.", "They talked about the holidays.",
    "He wants to keep the weekly rhythm.", "No thoughts of self-harm.",
    "Appetite is normal again.", "He asked about group therapy.",
    "We practised the breathing exercise.", "Next session in one week.",
])


def _fill(session: Session, tenant_id: uuid.UUID, count: int, rng: random.Random) -> None:
    """``count`` clients with realistic names (shared first and last names), plus the
    three the question names."""
    rows: list[dict[str, Any]] = []
    named = [("Sigrun", "Lindqvist", None), ("Anna-Lena", "Schulze-Hartmann", "1990-02-14"),
             ("Eberhard", "Klein", None)]
    for first, last, dob in named:
        rows.append({"first_name": first, "last_name": last, "date_of_birth": dob})
    for i in range(count - len(named)):
        rows.append({"first_name": rng.choice(FIRST), "last_name": f"{rng.choice(LAST)}{i}",
                     "date_of_birth": f"19{rng.randint(40, 99)}-0{rng.randint(1, 9)}-1"
                                      f"{rng.randint(0, 9)}"})
    keys: list[dict[str, Any]] = []
    for row in rows:
        row.update(id=uuid.uuid4(), tenant_id=tenant_id, contact={},
                   date_of_birth=_date(row["date_of_birth"]))
        keys += [{"key": key, "client_id": row["id"]} for key in identity_keys(
            row["first_name"], row["last_name"], row["date_of_birth"], None, None)]
    session.execute(Client.__table__.insert(), rows)  # bulk: the ORM's key hook not run
    session.execute(ClientIdentityKey.__table__.insert(), keys)


def _explain(session: Session, case: Client, messages: list[dict[str, Any]]) -> None:
    from api.clients.operations import _CANDIDATES
    from models.identity import text_keys
    keys = sorted({k for m in messages for k in text_keys(m["content"])})
    for (line,) in session.execute(sa_text(f"EXPLAIN (ANALYZE, BUFFERS) {_CANDIDATES.text}"),
                                   {"keys": keys, "case_id": case.id}):
        print("   ", line)


def _date(value: str | None) -> Any:
    return dt.date.fromisoformat(value) if value else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--database-url", default=default_server_url())
    parser.add_argument("--sizes", default="10,1000,50000")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--timeout", type=int, default=900)
    parser.add_argument("--explain", action="store_true",
                        help="print the lookup's query plan for each size")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    rng = random.Random(7)
    results: dict[str, Any] = {"benchmark": "masking", "runs": args.runs, "sizes": {}}
    with watchdog(args.timeout) as deadline, bench_database(args.database_url) as bench:
        config = bench.config()
        owner = create_owner_engine(config)
        engine = create_app_engine(config, pool_size=2)
        factory = sessionmaker(engine, expire_on_commit=False)
        install(factory)
        try:
            for size in sizes:
                admin = f"{ADMIN}-{size}"  # one practice per user
                tenant = create_tenant(owner, name=f"Bench masking {size}", admin_user_id=admin,
                                       app_role=bench.app_role)
                session, _actor = open_session(factory, tenant.id, admin)
                _fill(session, tenant.id, size, rng)
                session.commit()
                session.close()
                with owner.connect() as conn:  # as autovacuum would: fresh statistics
                    auto = conn.execution_options(isolation_level="AUTOCOMMIT")
                    for table in ("clients", "client_identity_keys"):
                        auto.exec_driver_sql(f'ANALYZE "t_{tenant.id.hex}".{table}')
                session, _actor = open_session(factory, tenant.id, admin)
                case = session.query(Client).filter_by(last_name="Klein").one()
                texts = {"chat": chat_messages([], QUESTION),
                         # A first name that 1 in 20 clients share: its candidates grow
                         # with the practice; their one pattern does not.
                         "common_name": chat_messages([], "Anna called about Tuesday."),
                         "transcript": draft_messages("SOAP", TRANSCRIPT, modality="video",
                                                      duration_minutes=50)}
                per_text: dict[str, Any] = {}
                if args.explain:
                    _explain(session, case, texts["transcript"])
                for name, messages in texts.items():
                    timings: list[float] = []
                    for _ in range(args.runs):
                        deadline.check()
                        started = time.perf_counter()
                        pseudonymizer = pseudonymizer_for(
                            session, case, [m["content"] for m in messages])
                        masked = pseudonymizer.pseudonymize_messages(messages)
                        timings.append((time.perf_counter() - started) * 1000)
                    sent = json.dumps(masked)
                    assert "Lindqvist" not in sent and "Schulze" not in sent, sent
                    assert "Anna" not in sent or size < 20, sent
                    per_text[name] = {"p50_ms": round(statistics.median(timings), 3),
                                      "p95_ms": round(percentile(timings, 95), 3),
                                      "masked_clients": len(pseudonymizer.masked)}
                    print(f"{size:>6} clients  {name:<10}  p50 {per_text[name]['p50_ms']:7.3f} ms"
                          f"  p95 {per_text[name]['p95_ms']:7.3f} ms"
                          f"  other clients masked: {len(pseudonymizer.masked)}")
                session.close()
                results["sizes"][size] = per_text
        finally:
            engine.dispose()
            owner.dispose()
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

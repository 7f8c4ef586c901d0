"""The API's contract, frozen: every operation with its status codes and error codes.

A change to routes, statuses or ``error`` codes must be deliberate: it fails here until
the snapshot is regenerated (``python -m tests.api.test_spec_snapshot``) and the diff
reviewed. Descriptions and examples may change freely.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SNAPSHOT = Path(__file__).with_name("snapshots") / "contract.json"
METHODS = {"get", "post", "put", "patch", "delete"}


def contract(spec: dict[str, Any]) -> dict[str, dict[str, list[str]]]:
    """``{"METHOD /path": {status: [error codes]}}`` of every operation."""
    result: dict[str, dict[str, list[str]]] = {}
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method not in METHODS:
                continue
            result[f"{method.upper()} {path}"] = {
                status: sorted(response.get("content", {}).get("application/json", {})
                               .get("examples", {}))
                for status, response in op["responses"].items()}
    return result


def test_contract_matches_the_snapshot(client):
    served = contract(client.get("/openapi.json").json)
    frozen = json.loads(SNAPSHOT.read_text())
    assert served == frozen, (
        "the API contract changed; if deliberate, regenerate tests/api/snapshots/"
        "contract.json with `python -m tests.api.test_spec_snapshot`")


if __name__ == "__main__":
    import os

    os.environ.setdefault("APP_ENV", "development")
    os.environ.setdefault("DATABASE_URL", "postgresql://localhost/unused")  # not connected
    from api import create_app

    app = create_app({"TESTING": True, "LOG_LEVEL": "WARNING"})
    spec = app.test_client().get("/openapi.json").json
    SNAPSHOT.write_text(json.dumps(contract(spec), indent=1, sort_keys=True) + "\n")
    print(f"wrote {SNAPSHOT}")

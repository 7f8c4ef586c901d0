"""A WSGI app that is never reached: the requests of tests/test_gunicorn_errors.py fail in
gunicorn's own parser, before any app."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any


def app(_environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"reached"]

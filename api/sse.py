"""Server-sent events for streamed AI replies."""

from __future__ import annotations

import json
from typing import Any

from flask import request


def wants_event_stream() -> bool:
    return "text/event-stream" in request.headers.get("Accept", "")


def event(name: str, data: Any) -> str:
    return f"event: {name}\ndata: {json.dumps(data, default=str)}\n\n"

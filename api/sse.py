"""Server-sent events for streamed AI replies."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

from flask import Response, request, stream_with_context
from sqlalchemy.orm import Session

from api.db import commit_request, open_actor_session
from api.domain import DomainError
from llm.errors import LLMError
from llm.gateway import GatewayStream
from tenancy.actor import Actor

log = logging.getLogger(__name__)


def wants_event_stream() -> bool:
    return "text/event-stream" in request.headers.get("Accept", "")


def event(name: str, data: Any) -> str:
    return f"event: {name}\ndata: {json.dumps(data, default=str)}\n\n"


def stream_reply(stream: GatewayStream, actor: Actor,
                 save: Callable[[Session, GatewayStream], tuple[str, str]]) -> Response:
    """Stream ``delta`` events, then save the whole reply and end with ``done``.

    ``save`` runs only after a complete reply, with a session of its own for ``actor``
    that this function commits and closes (the request's has been committed before the
    model was called), and returns the ``(key, id)`` for ``done``.
    A broken or refused reply ends with an ``error`` event and saves nothing.
    """

    def generate() -> Iterator[str]:
        try:
            for piece in stream:
                yield event("delta", {"text": piece})
        except LLMError as exc:
            yield event("error", {"error": exc.code, "message": exc.message})
            return
        finally:
            stream.close()  # also meters a reply the user stopped listening to
        try:
            session = open_actor_session(actor)
        except Exception as exc:  # e.g. the membership ended while the model wrote
            log.error("opening the save of a streamed reply failed (%s)", type(exc).__name__)
            yield event("error", {"error": "save_failed",
                                  "message": "The reply could not be saved; nothing was kept."})
            return
        try:
            key, saved_id = save(session, stream)
            commit_request(session)
        except Exception as exc:  # headers are sent: end the stream cleanly
            # The type only: messages of database errors can carry the reply's text. A
            # refusal (consent withdrawn, client restricted or erased meanwhile) is expected.
            level = logging.INFO if isinstance(exc, DomainError) else logging.ERROR
            log.log(level, "saving a streamed reply failed (%s)", type(exc).__name__)
            yield event("error", {"error": "save_failed",
                                  "message": "The reply could not be saved; nothing was kept."})
            return
        finally:
            session.close()
        assert stream.usage is not None
        yield event("done", {key: saved_id, "usage": stream.usage.as_dict()})

    return Response(stream_with_context(generate()), status=201, mimetype="text/event-stream",
                    headers={"Cache-Control": "no-store"})

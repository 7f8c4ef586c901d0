"""The API's Blueprint: flask-smorest's, with a page size of 20 and less per-request work.

flask-smorest instantiates a schema class for every parse and a metadata schema for every
paginated response; both showed up in the profile of the hot list endpoint. Here a parse
reuses one instance per schema class (marshmallow schemas hold no per-call state; the
instances ``@blp.arguments(Schema())`` receives are shared across requests anyway), and
the pagination header is built from the same numbers without a schema dump.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, TypeVar

import flask_smorest
import marshmallow as ma
from flask import Request
from webargs.flaskparser import FlaskParser, is_json_request

from api import apidoc
from api.errors import abort, describe_errors

F = TypeVar("F", bound=Callable[..., Any])
# The largest page number: (page - 1) * page_size must fit PostgreSQL's bigint OFFSET.
MAX_PAGE = 2**53


def _string_problem(value: str) -> str | None:
    if "\x00" in value:
        return "Contains a NUL character (\\u0000), which cannot be stored."
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "Contains an unpaired surrogate (\\ud800-\\udfff), which is not valid Unicode."
    return None


def unstorable_strings(value: Any) -> dict[str, Any]:
    """Field errors for every string (key or value) that cannot be stored, by path.

    Walks without recursion: the parsed body may be nested as deeply as the JSON parser
    allowed.
    """
    errors: dict[str, Any] = {}
    stack: list[tuple[tuple[str, ...], Any]] = [((), value)]
    while stack:
        path, node = stack.pop()
        children: Iterable[tuple[Any, Any]] = ()
        if isinstance(node, dict):
            children = node.items()
            for key in node:
                if isinstance(key, str) and (problem := _string_problem(key)):
                    _put(errors, path, f"Field name: {problem}")
        elif isinstance(node, list):
            children = enumerate(node)
        elif isinstance(node, str) and (problem := _string_problem(node)):
            _put(errors, path, problem)
        stack.extend(((*path, str(k)), v) for k, v in children)
    return errors


def _put(errors: dict[str, Any], path: tuple[str, ...], message: str) -> None:
    node = errors
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):  # a message already stands here
            return
        node = child
    node.setdefault(path[-1] if path else "_schema", []).append(message)


def _refuse(location: str, errors: dict[str, Any]) -> None:
    found = {location: errors}
    abort(422, "validation_failed", describe_errors(found), errors=found)


class SchemaReusingParser(FlaskParser):
    """webargs' Flask parser, instantiating each schema class once."""

    def __init__(self) -> None:
        super().__init__()
        self._instances: dict[type[ma.Schema], ma.Schema] = {}
        self._lock = threading.Lock()

    def _get_schema(self, argmap: Any, req: Request) -> ma.Schema:
        if isinstance(argmap, type) and issubclass(argmap, ma.Schema):
            schema = self._instances.get(argmap)
            if schema is None:
                with self._lock:
                    schema = self._instances.setdefault(argmap, argmap())
            return schema
        return super()._get_schema(argmap, req)

    def load_json(self, req: Request, schema: ma.Schema) -> Any:
        """Refuse a body that is not JSON with 415, instead of reading it as no body."""
        if not is_json_request(req) and (req.content_length or req.content_type):
            abort(415, "unsupported_media_type",
                  "Send the body as JSON with the header Content-Type: application/json.")
        data = super().load_json(req, schema)
        if (errors := unstorable_strings(data)):
            _refuse("json", errors)
        return data

    def _raw_load_json(self, req: Request) -> Any:
        """Parse the body; JSON the parser cannot hold is a 400 like any invalid JSON."""
        try:
            return super()._raw_load_json(req)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise  # webargs answers these with 400 "Invalid JSON body."
        except (RecursionError, ValueError):
            abort(400, "bad_request", "The body is not valid JSON: nested too deeply or a "
                  "number too long.", errors={"json": ["Invalid JSON body."]})

    def load_querystring(self, req: Request, schema: ma.Schema) -> Any:
        """Refuse query values that cannot be stored before they reach a query."""
        errors = {name: [problem] for name, value in req.args.items(multi=True)
                  if (problem := _string_problem(value))}
        if errors:
            _refuse("query", errors)
        return super().load_querystring(req, schema)


class PaginationParser(SchemaReusingParser):
    """Also bounds ``page``, so that its OFFSET fits a bigint."""

    def load_querystring(self, req: Request, schema: ma.Schema) -> Any:
        page = req.args.get("page", "")
        if page.isascii() and page.isdigit() and (len(page) > 16 or int(page) > MAX_PAGE):
            _refuse("query", {"page": [f"Must be at most {MAX_PAGE}."]})
        return super().load_querystring(req, schema)


class Blueprint(flask_smorest.Blueprint):  # type: ignore[misc]  # flask-smorest ships no hints
    ARGUMENTS_PARSER = SchemaReusingParser()
    PAGINATION_ARGUMENTS_PARSER = PaginationParser()
    DEFAULT_PAGINATION_PARAMETERS: ClassVar[dict[str, int]] = {
        "page": 1, "page_size": 20, "max_page_size": 100}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._prepare_doc_cbks.append(apidoc.prepare_operation_doc)

    @staticmethod
    def errors(*codes: str) -> Callable[[F], F]:
        """Document the ``error`` codes (``api.error_codes``) the view can answer with."""
        return lambda func: apidoc.document_errors(func, *codes)

    @staticmethod
    def if_match(func: F) -> F:
        """Document the required If-Match header and its 428/412 errors."""
        return apidoc.document_errors(apidoc.document(func, if_match=True),
                                      *apidoc.IF_MATCH_ERRORS)

    @staticmethod
    def etag_header(func: F) -> F:
        """Document the ETag header of the view's success response."""
        return apidoc.document(func, etag_header=True)

    @staticmethod
    def event_stream(done_key: str) -> Callable[[F], F]:
        """Document the ``text/event-stream`` reply (``api.sse``) and the AI errors."""
        return lambda func: apidoc.document_errors(
            apidoc.document(func, event_stream=done_key), *apidoc.AI_ERRORS)

    @staticmethod
    def _make_pagination_metadata(page: int, page_size: int, item_count: int) -> dict[str, Any]:
        """The X-Pagination header: flask-smorest's fields, documented by its schema."""
        if item_count == 0:
            return {"total": 0, "total_pages": 0}
        last_page = (item_count - 1) // page_size + 1
        metadata = {"total": item_count, "total_pages": last_page, "first_page": 1,
                    "last_page": last_page}
        if page <= last_page:
            metadata["page"] = page
            if page > 1:
                metadata["previous_page"] = page - 1
            if page < last_page:
                metadata["next_page"] = page + 1
        return metadata

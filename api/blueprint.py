"""The API's Blueprint: flask-smorest's, with a page size of 20 and less per-request work.

flask-smorest instantiates a schema class for every parse and a metadata schema for every
paginated response; both showed up in the profile of the hot list endpoint. Here a parse
reuses one instance per schema class (marshmallow schemas hold no per-call state; the
instances ``@blp.arguments(Schema())`` receives are shared across requests anyway), and
the pagination header is built from the same numbers without a schema dump.
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar

import flask_smorest
import marshmallow as ma
from flask import Request
from webargs.flaskparser import FlaskParser


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


class Blueprint(flask_smorest.Blueprint):  # type: ignore[misc]  # flask-smorest ships no hints
    ARGUMENTS_PARSER = SchemaReusingParser()
    PAGINATION_ARGUMENTS_PARSER = SchemaReusingParser()
    DEFAULT_PAGINATION_PARAMETERS: ClassVar[dict[str, int]] = {
        "page": 1, "page_size": 20, "max_page_size": 100}

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

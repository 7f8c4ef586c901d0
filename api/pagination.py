"""One-query pagination: the page, the total and (for clinical lists) the audit event."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, Select, bindparam, func, select
from sqlalchemy.orm import QueryableAttribute, Session
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import ColumnClause, UnaryExpression

from models.audit_event import AUDIT_INSERT
from tenancy.actor import Actor
from tenancy.fastpath import REWRITE_OPTION

# The page statement as SQLAlchemy compiled it, wrapped so that the same statement
# appends the read's audit event naming the page's ids. Resolved in the tenant schema
# through the transaction's search_path, like every tenant table.
_AUDITED_PAGE = (
    "WITH page AS ({page}), audit_event AS ("
    + AUDIT_INSERT.replace("{", "{{").replace("}", "}}") +  # AUDIT_WRITE_COLUMNS, in order
    " SELECT %(clinai_audit_actor_id)s, %(clinai_audit_actor_role)s, "
    "%(clinai_audit_action)s, %(clinai_audit_resource_type)s, "
    "coalesce(array_agg(page.id ORDER BY {order}), '{{}}'::uuid[]), "
    "%(clinai_audit_request_id)s, %(clinai_audit_client_request_id)s FROM page) "
    "SELECT * FROM page ORDER BY {order}"
)


@dataclass(frozen=True, slots=True)
class ReadAudit:
    """The audit event of a list read; its record ids are the ids of the page returned."""

    actor: Actor
    action: str
    resource_type: str

    def parameters(self) -> dict[str, str | None]:
        return {"clinai_audit_actor_id": self.actor.user_id,
                "clinai_audit_actor_role": self.actor.role,
                "clinai_audit_action": self.action,
                "clinai_audit_resource_type": self.resource_type,
                "clinai_audit_request_id": self.actor.request_id,
                "clinai_audit_client_request_id": self.actor.client_request_id}


@dataclass(frozen=True, slots=True)
class PageQuery:
    """A list's statements, built once per query shape and reused with bound values.

    Building a SQLAlchemy statement and computing its cache key costs ~100 µs of Python;
    a statement object that is reused keeps its memoized cache key, so the hot lists
    build theirs once (``functools.cache`` on the shape) and pass the values in
    ``params``. ``page`` has the total beside the page and ``LIMIT :page_limit OFFSET
    :page_offset``; ``order`` is the order for an audited page's outer query.
    """

    page: Select[Any]
    total: Select[Any]
    order: str


def page_query(query: Select[Any], *, order_by: Sequence[Any] = ()) -> PageQuery:
    """The statements for pages of ``query`` in ``query``'s order, then ``order_by``.

    The total rides along as an uncorrelated scalar subquery, computed once, so the page
    keeps its top-N sort (``count(*) OVER ()`` would sort every row of the table).
    """
    total = select(func.count()).select_from(query.order_by(None).subquery())
    page = (query.add_columns(total.scalar_subquery().label("total")).order_by(*order_by)
            .limit(bindparam("page_limit", type_=BigInteger))
            .offset(bindparam("page_offset", type_=BigInteger)))
    return PageQuery(page=page, total=total, order=_outer_order(order_by) if order_by else "")


def fetch_page(
    db: Session, query: Select[Any] | PageQuery, *, order_by: Sequence[Any] = (),
    params: Mapping[str, Any] | None = None, offset: int, limit: int,
    audit: ReadAudit | None = None,
) -> tuple[list[Any], int]:
    """Return one page of ``query``'s entities and the total row count.

    ``query`` is a select of one entity (statements built per call, in ``order_by``
    order after the query's own) or a ``PageQuery`` built once (then ``order_by`` is
    ignored and ``params`` carries the values of its bind parameters). Only a page past
    the end needs a second query to learn the total.

    With ``audit`` (clinical lists), the same statement appends the read's audit event
    naming the page's ids: the page becomes a CTE beside a data-modifying CTE, and the
    outer query and the event's id list repeat the order, which the caller then gives
    entirely in ``order_by`` (columns of the listed entity, ascending or ``.desc()``;
    the entity query itself unordered). If the engine lacks the hook that writes the
    event (``tenancy.fastpath.install_statement_rewrite``), the call fails instead of
    returning unaudited records. One prepared statement instead of a separate INSERT that
    PostgreSQL would parse and plan on every request; the event commits or rolls back
    with the request's transaction like any write.
    """
    statements = query if isinstance(query, PageQuery) else page_query(query, order_by=order_by)
    values = {**(params or {}), "page_limit": limit, "page_offset": offset}
    if audit is None:
        rows = db.execute(statements.page, values).all()
    else:
        if not statements.order:
            raise ValueError("an audited page needs its whole order in order_by")
        spec = _AuditedPage(audit, statements.order)
        rows = db.execute(statements.page, values,
                          execution_options={REWRITE_OPTION: spec}).all()
        if not spec.written:  # fail closed: never return records whose read went unaudited
            raise RuntimeError("the list audit hook is not installed on this engine")
    if rows:
        return [row[0] for row in rows], int(rows[0][-1])
    if offset == 0:
        return [], 0
    return [], int(db.scalar(statements.total, dict(params or {})) or 0)


def _outer_order(order_by: Sequence[Any]) -> str:
    """``page.<column> [DESC], ...`` for the outer query of an audited page."""
    terms = []
    for term in order_by:
        descending = isinstance(term, UnaryExpression) and term.modifier is operators.desc_op
        column = term.element if isinstance(term, UnaryExpression) else term
        if not isinstance(column, QueryableAttribute | ColumnClause):
            raise TypeError(f"order an audited page by entity columns, not {column!r}")
        name = column.expression.name if isinstance(column, QueryableAttribute) else column.name
        terms.append(f'page."{name}"' + (" DESC" if descending else ""))
    return ", ".join(terms)


@functools.lru_cache(maxsize=256)
def _audited_statement(page: str, order: str) -> str:
    return _AUDITED_PAGE.format(page=page, order=order)


@dataclass(slots=True)
class _AuditedPage:
    """The rewrite of one page statement into its audited form (``tenancy.fastpath``'s
    statement rewrite); ``written`` proves it ran."""

    audit: ReadAudit
    order: str
    written: bool = False

    def __call__(self, statement: str,
                 parameters: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
        self.written = True
        return (_audited_statement(statement, self.order),
                {**parameters, **self.audit.parameters()})

"""One-query pagination: the page and the total in a single round trip."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session


def fetch_page(
    db: Session, query: Select[Any], *, offset: int, limit: int
) -> tuple[list[Any], int]:
    """Return one page of ``query``'s entities and the total row count.

    The total rides along as an uncorrelated scalar subquery, computed once, so the page
    keeps its top-N sort (``count(*) OVER ()`` would sort every row of the table); only a
    page past the end needs a second query to learn the total.
    """
    total_of = select(func.count()).select_from(query.order_by(None).subquery())
    rows = db.execute(
        query.add_columns(total_of.scalar_subquery().label("total")).offset(offset).limit(limit)
    ).all()
    if rows:
        return [row[0] for row in rows], int(rows[0][-1])
    if offset == 0:
        return [], 0
    return [], int(db.scalar(total_of) or 0)

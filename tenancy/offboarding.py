"""Offboarding: close a practice and remove everything it stored (the owner's path).

Three steps, each safe to repeat, so a run that was killed or hit a storage outage is
finished by running it again (``flask tenancy erase``, ``flask gdpr purge``, or the
admin's ``DELETE /api/v1/admin/tenant``):

1. the tenant's status becomes ``closing`` (committed at once): every token of the
   practice is refused from the next request on (``public.enter_tenant``);
2. every blob of the tenant's container, then the container, is deleted;
3. in one transaction: the tenant schema is dropped (every table, row, grant and policy
   in it), the practice's memberships, invitations, token budget and migration status are
   deleted;
4. the container is swept once more (a file an export job uploaded meanwhile), and the
   status becomes ``erased``.

What stays: the ``public.tenants`` row (id, name, status ``erased``, timestamps), which the
usage ledger's rows point at, and those ledger rows (token counts by user id, feature and
deployment; no client data): the platform bills from them.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from storage.base import Storage, tenant_container
from tenancy.errors import TenantUnknown
from tenancy.security import schema_name

log = logging.getLogger(__name__)

# The practice's rows in public tables that go with it (the ledger stays: billing).
_PUBLIC_ROWS = ("memberships", "invitations", "llm_budgets", "tenant_migrations")


@dataclass(frozen=True, slots=True)
class Offboarding:
    tenant_id: uuid.UUID
    blobs_deleted: int
    already_erased: bool = False


def close_tenant(owner_engine: Engine, tenant_id: uuid.UUID) -> bool:
    """Step 1: mark the practice ``closing`` (unless it is erased already); every token
    is refused from now on. Return False when it was already erased."""
    with owner_engine.begin() as conn:
        status = conn.scalar(text("SELECT status FROM public.tenants WHERE id = :i FOR UPDATE"),
                             {"i": tenant_id})
        if status is None:
            raise TenantUnknown("no such tenant")
        if status == "erased":
            return False
        conn.execute(text("UPDATE public.tenants SET status = 'closing', updated_at = now() "
                          "WHERE id = :i"), {"i": tenant_id})
    return True


# The practice's last requests may still hold locks the drop needs (their tokens are
# refused already, so no new one starts): a deadlock or a lock wait past the timeout is
# retried; a transaction that stays open longer (an export being built) leaves the
# practice closing until the next run.
DROP_ATTEMPTS = 5


def _drop_schema_and_rows(owner_engine: Engine, tenant_id: uuid.UUID) -> None:
    for attempt in range(1, DROP_ATTEMPTS + 1):
        try:
            with owner_engine.begin() as conn:
                conn.execute(text("SET LOCAL lock_timeout = '10s'"))
                # Wait for the practice's transactions in flight (each holds this lock
                # shared from its entry: public.enter_tenant, public migration 0007).
                conn.execute(text("SELECT pg_advisory_xact_lock(4711, hashtext(:t))"),
                             {"t": str(tenant_id)})
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema_name(tenant_id)}" CASCADE'))
                for table in _PUBLIC_ROWS:
                    conn.execute(text(f"DELETE FROM public.{table} WHERE tenant_id = :i"),
                                 {"i": tenant_id})
            return
        except OperationalError as exc:
            if attempt == DROP_ATTEMPTS or getattr(exc.orig, "sqlstate", None) not in (
                    "40P01", "55P03"):  # deadlock detected, lock not available
                raise
            log.warning("dropping tenant %s's schema: %s, retrying", tenant_id,
                        type(exc.orig).__name__)
            time.sleep(0.5 * attempt)


def erase_tenant(owner_engine: Engine, store: Storage, tenant_id: uuid.UUID, *,
                 before_drop: Callable[[], None] | None = None) -> Offboarding:
    """Run (or resume) the whole offboarding of ``tenant_id``; see the module docstring.

    ``before_drop`` runs between the storage and the database steps (tests inject a
    crash there)."""
    if not close_tenant(owner_engine, tenant_id):
        return Offboarding(tenant_id, 0, already_erased=True)
    container = tenant_container(tenant_id)
    names = store.list(container)
    for name in names:
        store.delete(container, name)
    store.delete_container(container)
    if before_drop is not None:
        before_drop()
    _drop_schema_and_rows(owner_engine, tenant_id)
    # Again, now that no request or export of the practice can run: a file an export
    # job uploaded after the first sweep (its container recreated) goes too.
    late = store.list(container)
    for name in late:
        store.delete(container, name)
    store.delete_container(container)
    with owner_engine.begin() as conn:
        conn.execute(text("UPDATE public.tenants SET status = 'erased', updated_at = now() "
                          "WHERE id = :i"), {"i": tenant_id})
    names += late
    log.info("tenant %s erased (%d blobs deleted)", tenant_id, len(names))
    return Offboarding(tenant_id, len(names))

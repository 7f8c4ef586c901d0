"""Operator commands: ``flask tenancy ...``, ``flask gdpr purge``, ``flask usage export``
and ``close``, ``flask dev token`` and ``flask dev seed``."""

from __future__ import annotations

import datetime as dt
import sys
import uuid

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from api.billing.files import utc_text
from api.billing.periods import BillingError, check_period, close_period, export_period
from api.db import get_db
from api.demo import SeedError, seed
from api.gdpr import purge
from api.storage import storage
from models.membership import ROLES
from storage.base import StorageError
from tenancy.database import ensure_roles
from tenancy.errors import TenancyError
from tenancy.migrate import TenantOutcome, upgrade_public, upgrade_tenants
from tenancy.offboarding import erase_tenant
from tenancy.provisioning import (
    create_tenant,
    list_tenants,
    set_tenant_status,
    set_token_budget,
)

tenancy_cli = AppGroup("tenancy", help="Manage tenants and migrate their schemas.")
dev_cli = AppGroup("dev", help="Development helpers (APP_ENV=development only).")
gdpr_cli = AppGroup("gdpr", help="Data-protection housekeeping (retention, exports).")
usage_cli = AppGroup("usage", help="Billing: each practice's AI usage per month, as files "
                                   "in the billing container; closing a month.")


def _uuid(_ctx: click.Context, _param: click.Parameter, value: str | None) -> uuid.UUID | None:
    if value is None:
        return None
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise click.BadParameter("not a tenant id (UUID)") from exc


@tenancy_cli.command("upgrade")
@click.option("--jobs", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Tenant schemas migrated in parallel.")
@click.option("--tenant", "tenant_id", callback=_uuid, help="Migrate only this tenant.")
@click.option("--verbose", is_flag=True, help="Also list tenants already at head.")
def upgrade(jobs: int, tenant_id: uuid.UUID | None, verbose: bool) -> None:
    """Create roles, migrate public, then every tenant schema."""
    config = get_db().config
    if ensure_roles(config):
        click.echo(f"generated the app role's password into {config.password_file}")
    upgrade_public(config)
    click.echo("public: at head")

    def show(outcome: TenantOutcome) -> None:
        line = (f"{outcome.tenant_id}: {outcome.from_revision or 'base'} -> "
                f"{outcome.to_revision or '-'} {outcome.status} ({outcome.duration_ms} ms)")
        if outcome.error:
            line += f" {outcome.error}"
        click.echo(line)

    report = upgrade_tenants(config, jobs=jobs,
                             tenant_ids=[tenant_id] if tenant_id else None, on_outcome=show)
    if tenant_id is not None and report.total == 0:
        raise click.ClickException("no such tenant")
    migrated = len(report.outcomes) - len(report.failed)
    click.echo(f"tenants: {report.total} total, {report.at_head} already at {report.head}, "
               f"{migrated} migrated, {len(report.failed)} failed ({report.seconds:.2f} s)")
    if verbose:
        for at_head in report.at_head_ids:
            click.echo(f"{at_head}: {report.head} already at head")
    if report.failed:
        click.echo("rerun to resume the failed tenants; finished tenants are not touched")
        sys.exit(1)


@tenancy_cli.command("create")
@click.option("--name", required=True, help="The practice's name.")
@click.option("--admin-sub", required=True, help="Token subject (oid/sub) of its first admin.")
def create(name: str, admin_sub: str) -> None:
    """Create a tenant with its first admin."""
    try:
        record = create_tenant(get_db().owner_engine, name=name, admin_user_id=admin_sub,
                               app_role=current_app.config["DATABASE_APP_ROLE"])
    except TenancyError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(f"{record.id}\t{record.status}\t{record.name}")


@tenancy_cli.command("list")
def list_command() -> None:
    """List tenants: id, status, name."""
    for record in list_tenants(get_db().owner_engine):
        click.echo(f"{record.id}\t{record.status}\t{record.name}")


def _set_status(tenant_id: uuid.UUID, status: str) -> None:
    try:
        record = set_tenant_status(get_db().owner_engine, tenant_id, status)
    except TenancyError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(f"{record.id}\t{record.status}\t{record.name}")


@tenancy_cli.command("suspend")
@click.argument("tenant_id", callback=_uuid)
def suspend(tenant_id: uuid.UUID) -> None:
    """Suspend a tenant: its users get 403 from the next request on."""
    _set_status(tenant_id, "suspended")


@tenancy_cli.command("activate")
@click.argument("tenant_id", callback=_uuid)
def activate(tenant_id: uuid.UUID) -> None:
    """Reactivate a suspended tenant."""
    _set_status(tenant_id, "active")


@tenancy_cli.command("set-budget")
@click.argument("tenant_id", callback=_uuid)
@click.option("--monthly-tokens", required=True, type=click.IntRange(0, 10**12),
              help="Tokens the practice may use per calendar month (UTC).")
def set_budget(tenant_id: uuid.UUID, monthly_tokens: int) -> None:
    """Set a tenant's monthly LLM token budget."""
    try:
        set_token_budget(get_db().owner_engine, tenant_id, monthly_tokens)
    except TenancyError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(f"{tenant_id}\tmonthly_tokens={monthly_tokens}")


@tenancy_cli.command("erase")
@click.argument("tenant_id", callback=_uuid)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def erase(tenant_id: uuid.UUID, yes: bool) -> None:
    """Offboard a practice: close it, delete its files, schema, members and invitations.

    The registry keeps the tenant row (status erased) and the usage ledger keeps its rows
    (billing). Irreversible. Safe to run again: an interrupted run resumes.
    """
    if not yes:
        click.confirm(f"Erase every record of practice {tenant_id}? This cannot be undone",
                      abort=True)
    try:
        outcome = erase_tenant(get_db().owner_engine, storage(), tenant_id)
    except TenancyError as exc:
        raise click.ClickException(exc.message) from exc
    except StorageError as exc:
        raise click.ClickException(f"storage failed ({type(exc).__name__}); the practice is "
                                   "closed, run the command again to finish") from exc
    if outcome.already_erased:
        click.echo(f"{tenant_id}	erased (already)")
    else:
        click.echo(f"{tenant_id}	erased ({outcome.blobs_deleted} files deleted)")


@gdpr_cli.command("purge")
@click.option("--dry-run", is_flag=True,
              help="Only report what would be done; change and delete nothing.")
@click.option("--as-of", "as_of", type=click.DateTime(formats=["%Y-%m-%d",
                                                              "%Y-%m-%dT%H:%M:%S"]),
              help="Act as if it were this UTC time (default: now). Needs --dry-run "
                   "(except in the test suite, APP_ENV=test).")
def purge_command(dry_run: bool, as_of: dt.datetime | None) -> None:
    """Erase restricted clients whose retention ended, delete expired exports, finish
    interrupted offboardings; print what was done. Idempotent; schedule it daily."""
    if as_of is not None and not dry_run and current_app.config["APP_ENV"] != "test":
        raise click.ClickException("--as-of would erase what is due only at that date: "
                                   "use it with --dry-run")
    now = as_of.replace(tzinfo=dt.UTC) if as_of is not None else dt.datetime.now(dt.UTC)
    report = purge(get_db().owner_engine, storage(), now=now, dry_run=dry_run,
                   default_retention_years=current_app.config["RECORD_RETENTION_YEARS"])
    for line in report.lines():
        click.echo(line)
    if report.errors:
        sys.exit(1)


def _period(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    try:
        return check_period(value)
    except BillingError as exc:
        raise click.BadParameter(exc.message) from exc


_PERIOD = click.option("--period", required=True, callback=_period,
                       help="The month, YYYY-MM (UTC).")


def _report(lines: list[str], failed: bool) -> None:
    for line in lines:
        click.echo(line)
    if failed:
        sys.exit(1)


@usage_cli.command("export")
@_PERIOD
def usage_export(period: str) -> None:
    """Write the month's billing files: <period>/<tenant_id>.csv and .json per practice,
    summary.csv, focus.csv (FOCUS 1.2) and manifest.json, in the container "billing".

    Byte-identical when nothing changed. An open month's files are rewritten by each run;
    a closed month's are only rebuilt to check the stored ones (a missing one is restored,
    one that differs is reported, exit 1, and left alone).
    """
    try:
        report = export_period(get_db().owner_engine, storage(), period)
    except (BillingError, StorageError) as exc:
        raise click.ClickException(getattr(exc, "message", str(exc))) from exc
    _report(report.lines(), bool(report.mismatched))


@usage_cli.command("close")
@_PERIOD
def usage_close(period: str) -> None:
    """Close a month: its files are written one last time and never change again.

    Refused until the month's end plus BILLING_GRACE_HOURS (default 48). Usage metered
    later for a closed month is billed in the next open month as correction rows. Running
    it again on a closed month checks (and restores) its files.
    """
    try:
        outcome = close_period(get_db().owner_engine, storage(), period,
                               now=dt.datetime.now(dt.UTC),
                               grace_hours=int(current_app.config["BILLING_GRACE_HOURS"]))
    except (BillingError, StorageError) as exc:
        raise click.ClickException(getattr(exc, "message", str(exc))) from exc
    closed_at = utc_text(outcome.closed_at)
    state = "closed now" if outcome.closed_now else "was already closed"
    _report([f"{period}: {state} (closed at {closed_at})", *outcome.report.lines()],
            bool(outcome.report.mismatched))


@dev_cli.command("token")
@click.option("--tenant", "tenant_id", callback=_uuid, help="Tenant id claim (omit to onboard).")
@click.option("--role", type=click.Choice(ROLES), help="Role claim.")
@click.option("--sub", "subject", required=True, help="Token subject (the user's id).")
@click.option("--email", help="E-mail claim (an invitation is accepted only by its address).")
def token(tenant_id: uuid.UUID | None, role: str | None, subject: str,
          email: str | None) -> None:
    """Print a development bearer token."""
    issuer = current_app.extensions.get("clinai_dev_issuer")
    if issuer is None or current_app.config["APP_ENV"] != "development":
        raise click.ClickException("development tokens need APP_ENV=development and no "
                                   "AUTH_OIDC_METADATA_URL")
    click.echo(issuer.mint(subject=subject, tenant=str(tenant_id) if tenant_id else None,
                           role=role, email=email,
                           tenant_claim=current_app.config["AUTH_TENANT_CLAIM"],
                           role_claim=current_app.config["AUTH_ROLE_CLAIM"]))


@dev_cli.command("seed")
def seed_command() -> None:
    """Create (or find) the demo practice; print export lines with fresh tokens.

    Only export lines and # comments go to stdout: eval "$(flask dev seed)" works.
    """
    try:
        result = seed(current_app._get_current_object())  # type: ignore[attr-defined]
    except SeedError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(result.exports(), nl=False)


def init_app(app: Flask) -> None:
    app.cli.add_command(tenancy_cli)
    app.cli.add_command(dev_cli)
    app.cli.add_command(gdpr_cli)
    app.cli.add_command(usage_cli)

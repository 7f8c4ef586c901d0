#!/usr/bin/env bash
# App Service's startup command (infra/modules/appservice.bicep): the release step, then the
# server. Oryx has activated the app's virtualenv and the app settings are in the
# environment (Key Vault references resolved).
#
# Release step (scripts/release.py): `flask tenancy upgrade` creates the database roles if
# missing, sets the app role's password (DATABASE_APP_PASSWORD), migrates `public`, then
# every tenant schema. Instances that start together take turns (a PostgreSQL advisory
# lock): the next one finds everything at head and goes on. After a rollback to an earlier
# release the database is ahead of the code: nothing is migrated. If the upgrade fails,
# this instance does not serve: /readyz never answers, App Service restarts the container
# (which retries; finished tenants are not touched again) and the deploy fails. The report
# is in the container's log (AppServiceConsoleLogs in Log Analytics).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python scripts/release.py
exec gunicorn wsgi:app

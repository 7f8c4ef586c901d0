"""The Flask application factory."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the domain operations under api/ import this package without Flask
    from flask import Flask


def create_app(test_config: Mapping[str, Any] | None = None,
               secret_source: Any = None) -> Flask:
    """Create the app: defaults, then environment, then ``test_config`` overrides, then
    Key Vault (``AZURE_KEY_VAULT_URL``, or ``secret_source``) for secrets still unset."""
    from flask import Flask

    from api import (
        apidoc,
        auth,
        cli,
        db,
        errors,
        llm,
        logs,
        secrets,
        settings,
        storage,
        telemetry,
    )
    from api.admin.views import blp as admin_blp
    from api.b2c.views import blp as b2c_blp
    from api.billing.views import blp as billing_blp
    from api.clients.views import blp as clients_blp
    from api.consents.views import blp as consents_blp
    from api.conversations.views import blp as conversations_blp
    from api.docs import bp as docs_bp
    from api.drafts.views import blp as drafts_blp
    from api.exports import views as exports_views
    from api.health import bp as health_bp
    from api.notes.views import blp as notes_blp
    from api.onboarding.views import blp as onboarding_blp
    from api.sessions.views import blp as sessions_blp
    from api.tenant.views import blp as tenant_blp

    app = Flask(__name__, instance_relative_config=True)
    app.config.from_mapping(settings.load(test_config, secret_source))
    settings.validate(app.config)
    secrets.init_app(app)
    app.config.update(
        API_TITLE="ClinAI API",
        API_VERSION="v1",
        OPENAPI_VERSION="3.1.0",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        API_SPEC_OPTIONS={
            "info": {"description": "Clinical records, onboarding and administration for "
                                    "psychotherapy practices. Every tenant-scoped route needs "
                                    "a bearer token from the practice's identity provider."},
            "security": [{"bearerAuth": []}],
            "components": {"securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "b2cBasic": {"type": "http", "scheme": "basic"},
            }},
        },
    )

    logs.init_app(app)
    # Before anything connects or calls out: the instrumentations wrap psycopg's connect,
    # httpx2's transport and the Azure SDK's tracing for the whole process.
    telemetry.init_app(app)
    db.init_app(app)
    auth.init_app(app)
    errors.init_app(app)
    llm.init_app(app)
    storage.init_app(app)
    exports_views.init_app(app)
    api = errors.Api(app)
    apidoc.register_components(api.spec)
    for blueprint in (onboarding_blp, tenant_blp, admin_blp, clients_blp, consents_blp,
                      sessions_blp, notes_blp, drafts_blp, conversations_blp,
                      exports_views.blp, b2c_blp, billing_blp,
                      storage.blp):
        api.register_blueprint(blueprint)
    app.register_blueprint(health_bp)
    app.register_blueprint(docs_bp)
    cli.init_app(app)
    return app

"""Interactive API docs at /docs: Swagger UI 5, served from an installed package (no CDN).

The assets come from the ``flask-swagger-ui`` wheel (only its ``dist`` folder is used;
its blueprint and template are not). Swagger UI 5 reads OpenAPI 3.1, the version the app
serves; see docs/decisions/api-docs.md for the choice.
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import flask_swagger_ui
from flask import Blueprint, Response, redirect, send_from_directory

bp = Blueprint("docs", __name__)

ASSETS = Path(flask_swagger_ui.__file__).resolve().parent / "dist"
SWAGGER_UI_VERSION = (ASSETS / "VERSION").read_text().strip()
# A cache-busting query on the assets: a package upgrade must not be served stale.
_V = version("flask-swagger-ui")

_PAGE = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ClinAI API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" type="image/png" href="/docs/static/favicon-32x32.png?v={_V}">
<link rel="stylesheet" href="/docs/static/swagger-ui.css?v={_V}">
<link rel="stylesheet" href="/docs/static/index.css?v={_V}"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/static/swagger-ui-bundle.js?v={_V}"></script>
<script src="/docs/static/swagger-ui-standalone-preset.js?v={_V}"></script>
<script src="/docs/static/docs-init.js?v={_V}"></script>
</body></html>
"""
# validatorUrl null: Swagger UI would otherwise send the document to a public validator.
_INIT = """window.ui = SwaggerUIBundle({
  url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true,
  validatorUrl: null, displayRequestDuration: true, tryItOutEnabled: false,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
  plugins: [SwaggerUIBundle.plugins.DownloadUrl], layout: "StandaloneLayout"});
"""
# Everything from this origin; Swagger UI sets inline styles and uses data: images.
_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'self'")


@bp.get("/")
def root() -> Response:
    """Send a browser to the docs."""
    return redirect("/docs", code=302)  # type: ignore[return-value]  # werkzeug's Response


@bp.get("/docs")
def index() -> Response:
    """Show the interactive API documentation."""
    response = Response(_PAGE, mimetype="text/html")
    response.headers["Content-Security-Policy"] = _CSP
    return response


@bp.get("/docs/static/docs-init.js")
def init_script() -> Response:
    return Response(_INIT, mimetype="application/javascript")


@bp.get("/docs/static/<path:filename>")
def static(filename: str) -> Response:
    return send_from_directory(ASSETS, filename, max_age=3600)

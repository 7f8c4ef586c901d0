"""Interactive API docs at /docs, served from the swagger-ui-bundle package (no CDN)."""

from __future__ import annotations

from flask import Blueprint, Response, send_from_directory
from swagger_ui_bundle import swagger_ui_path

bp = Blueprint("docs", __name__)

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ClinAI API</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script src="/docs/static/swagger-ui-standalone-preset.js"></script>
<script src="/docs/static/docs-init.js"></script>
</body></html>
"""
_INIT = """window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui",
  deepLinking: true, presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
  layout: "StandaloneLayout"});
"""


@bp.get("/docs")
def index() -> Response:
    """Show the interactive API documentation."""
    return Response(_PAGE, mimetype="text/html")


@bp.get("/docs/static/docs-init.js")
def init_script() -> Response:
    return Response(_INIT, mimetype="application/javascript")


@bp.get("/docs/static/<path:filename>")
def static(filename: str) -> Response:
    return send_from_directory(swagger_ui_path, filename)

"""gunicorn settings (App Service runs `gunicorn wsgi:app` from the project root)."""

import os

bind = os.environ.get("GUNICORN_BIND", f"0.0.0.0:{os.environ.get('PORT', '8000')}")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
worker_class = "gthread"
accesslog = None  # the app writes its own JSON access lines


def post_worker_init(worker):  # type: ignore[no-untyped-def]
    """Refuse to serve when the app's database role could bypass tenant isolation."""
    from api.db import EXTENSION

    database = getattr(worker.wsgi, "extensions", {}).get(EXTENSION)
    if database is not None:
        database.verify()

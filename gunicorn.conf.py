"""gunicorn settings (App Service runs `gunicorn wsgi:app` from the project root)."""

import os
from pathlib import Path

# Development (scripts/serve) listens on loopback only; App Service needs all interfaces.
_host = "127.0.0.1" if os.environ.get("APP_ENV") == "development" else "0.0.0.0"  # noqa: S104
bind = os.environ.get("GUNICORN_BIND", f"{_host}:{os.environ.get('PORT', '8000')}")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
worker_class = "gthread"
accesslog = None  # the app writes its own JSON access lines

# gunicornc's control socket: one per checkout (gunicorn's default, ~/.gunicorn/gunicorn.ctl,
# is shared by every server of the user, so a second checkout's server takes it over and
# removes it when it stops). GUNICORN_CONTROL_SOCKET=off turns it off.
_control = os.environ.get("GUNICORN_CONTROL_SOCKET",
                          str(Path(__file__).resolve().parent / "instance" / "gunicorn.ctl"))
if _control in ("", "off") or len(_control.encode()) > 100:  # AF_UNIX paths: < 108 bytes
    control_socket_disable = True
else:
    control_socket = _control


def post_worker_init(worker):  # type: ignore[no-untyped-def]
    """Refuse to serve when the app's database role could bypass tenant isolation."""
    from api.db import EXTENSION

    database = getattr(worker.wsgi, "extensions", {}).get(EXTENSION)
    if database is not None:
        database.verify()

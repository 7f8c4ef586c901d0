"""gunicorn settings (App Service runs `gunicorn wsgi:app` from the project root)."""

import json
import os
from pathlib import Path

import gunicorn.util

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


# gunicorn answers requests it cannot parse (an overlong URL, broken headers) itself, before
# the app, with an HTML page. Ours is the API's one JSON error shape instead, with a fixed
# message: gunicorn's own text can quote the request line (path and query string).
_ERRORS = {
    400: ("malformed_request", "The HTTP request could not be parsed."),
    414: ("uri_too_long", "The request line (path and query string) is too long."),
    431: ("headers_too_large", "The request headers are too large."),
    500: ("internal_error", "The server failed to answer the request."),
}


def _json_error(sock, status_int, reason, mesg):  # type: ignore[no-untyped-def]
    """gunicorn.util.write_error, answering in the API's error shape."""
    code, message = _ERRORS.get(status_int, _ERRORS[400])
    body = json.dumps({"code": status_int, "status": reason, "message": message,
                       "error": code}).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    gunicorn.util.write_nonblock(sock, head.encode("latin1") + body)


gunicorn.util.write_error = _json_error

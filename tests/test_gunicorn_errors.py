"""Requests gunicorn refuses itself (before the app) get the API's JSON error shape.

gunicorn runs with the project's gunicorn.conf.py, as App Service runs it, serving a stub
app: these requests never reach an app.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.error_codes import ERROR_CODES
from tests.ports import free_port

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def server() -> Iterator[int]:
    port = free_port()
    env = {**os.environ, "APP_ENV": "development", "GUNICORN_BIND": f"127.0.0.1:{port}",
           "GUNICORN_WORKERS": "1", "GUNICORN_CONTROL_SOCKET": "off"}
    process = subprocess.Popen(  # noqa: S603 - fixed arguments
        [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"),
         "tests.stub_wsgi:app"], cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def send(port: int, raw: bytes) -> tuple[int, dict[str, str], dict[str, object]]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(raw)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, json.loads(body)


@pytest.mark.parametrize(("raw", "status", "error"), [
    (b"GET /" + b"a" * 5000 + b"?marker=Zyxwq HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"),
    (b"NOT A REQUEST LINE Zyxwq\r\n\r\n", 400, "malformed_request"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", 431,
     "headers_too_large"),
])
def test_gunicorn_refusals_use_the_json_error_shape(server, raw, status, error):
    got_status, headers, body = send(server, raw)
    assert got_status == status
    assert headers["Content-Type"] == "application/json"
    assert body["code"] == status and body["error"] == error
    assert ERROR_CODES[error].status == status  # a registered code, with its status
    assert "Zyxwq" not in json.dumps(body)  # the request line is never echoed
    assert set(body) == {"code", "status", "message", "error"}


def test_a_parsable_request_reaches_the_app(server):
    with socket.create_connection(("127.0.0.1", server), timeout=5) as conn:
        conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200") and b"\r\n\r\n7\r\nreached" in data

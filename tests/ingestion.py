"""A local stand-in for Application Insights' ingestion endpoint.

Records every envelope the Azure Monitor exporter POSTs to ``/v2.1/track`` (a JSON array
or JSON lines, gzip'd or not) and accepts them all. Any other path is recorded too (as
``other``) and refused with 404, so a test notices when the exporter calls something
else (live metrics, statsbeat, the control plane).

Run it alone to look at what an app sends:
``python -m tests.ingestion`` prints the connection string, then one line per envelope.
"""

from __future__ import annotations

import gzip
import json
import threading
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def decode(body: bytes, encoding: str | None) -> list[dict[str, Any]]:
    if encoding == "gzip" or body[:2] == b"\x1f\x8b":
        body = gzip.decompress(body)
    text = body.decode("utf-8").strip()
    if not text:
        return []
    if text.startswith("["):
        items: list[dict[str, Any]] = json.loads(text)
        return items
    return [json.loads(line) for line in text.splitlines() if line.strip()]


class IngestionStandIn:
    def __init__(self) -> None:
        self.envelopes: list[dict[str, Any]] = []
        self.raw: list[bytes] = []  # each request body as received (decompressed)
        self.other: list[str] = []
        self.lock = threading.Lock()
        self.instrumentation_key = str(uuid.uuid4())
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if self.path.split("?")[0].rstrip("/").endswith("/v2.1/track"):
                    items = decode(body, self.headers.get("Content-Encoding"))
                    with stand_in.lock:
                        stand_in.envelopes.extend(items)
                        stand_in.raw.append(json.dumps(items).encode())
                    reply = json.dumps({"itemsReceived": len(items),
                                        "itemsAccepted": len(items), "errors": []}).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(reply)))
                    self.end_headers()
                    self.wfile.write(reply)
                    return
                with stand_in.lock:
                    stand_in.other.append(f"POST {self.path}")
                self.send_error(404)

            def do_GET(self) -> None:
                with stand_in.lock:
                    stand_in.other.append(f"GET {self.path}")
                self.send_error(404)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}/"
        self.connection_string = (f"InstrumentationKey={self.instrumentation_key};"
                                  f"IngestionEndpoint={self.endpoint};"
                                  f"LiveEndpoint={self.endpoint}")
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    # -- reading what arrived ----------------------------------------------------------

    def items(self, base_type: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            items = list(self.envelopes)
        if base_type is None:
            return items
        return [e for e in items if e.get("data", {}).get("baseType") == base_type]

    def counts(self) -> dict[str, int]:
        return dict(Counter(e.get("data", {}).get("baseType", "?") for e in self.items()))

    def text(self) -> str:
        """Everything received, as one string (to search for values that must not be
        there): the decompressed bodies, as sent."""
        with self.lock:
            return "\n".join(b.decode("utf-8") for b in self.raw)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


if __name__ == "__main__":  # pragma: no cover
    import time

    stand_in = IngestionStandIn()
    print(f"APPLICATIONINSIGHTS_CONNECTION_STRING='{stand_in.connection_string}'", flush=True)
    seen = 0
    try:
        while True:
            time.sleep(1)
            items = stand_in.items()
            for item in items[seen:]:
                print(json.dumps(item), flush=True)
            seen = len(items)
    except KeyboardInterrupt:
        stand_in.close()

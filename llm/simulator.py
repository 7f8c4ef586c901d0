"""An in-process simulator of Azure OpenAI's chat completions wire protocol.

Speaks what the ``openai`` SDK's Azure client sends and expects:
``POST /openai/deployments/{deployment}/chat/completions?api-version=...``, plain JSON or
SSE streaming (with ``stream_options.include_usage``: a final chunk with empty
``choices`` and the usage), ``prompt_filter_results`` on the first chunk with empty
``choices``, usage with ``prompt_tokens_details.cached_tokens``. The reply is a
deterministic draft in the note format the prompt asks for, built from the prompt,
counted with the o200k_base tokenizer and cut at ``max_tokens``.

Faults can be queued for tests and drills: ``Fault("status", status=429, retry_after=1)``,
``Fault("timeout")``, ``Fault("cut_stream")`` (the stream ends mid-way, no usage),
``Fault("no_usage")`` (a complete stream without the usage chunk),
``Fault("content_filter")``.

Mounted as an httpx transport for the SDK (``SimulatorTransport``); ``serve()`` puts the
same handler behind a loopback HTTP server, which is how the "real Azure endpoint"
path is tested.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx2

from llm.tokens import count_messages, count_text, truncate

PATH = re.compile(r"^/openai/deployments/(?P<deployment>[^/]+)/chat/completions$")
CHUNK_WORDS = 4


@dataclass(frozen=True)
class Fault:
    kind: str  # status | timeout | cut_stream | no_usage | content_filter
    status: int = 500
    retry_after: int | None = None


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes | Iterator[bytes]


@dataclass
class Simulator:
    """The protocol handler; thread-safe. ``requests`` records every request body."""

    faults: deque[Fault] = field(default_factory=deque)
    requests: list[dict[str, Any]] = field(default_factory=list)
    # Usage as reported to the client, one entry per request that reported any (a stream
    # cut before its usage chunk reports none).
    reported: list[dict[str, Any]] = field(default_factory=list)
    latency: float = 0.0
    _seen_prefixes: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def inject(self, *faults: Fault) -> None:
        with self._lock:
            self.faults.extend(faults)

    def _next_fault(self) -> Fault | None:
        with self._lock:
            return self.faults.popleft() if self.faults else None

    def handle(self, method: str, path: str, body: bytes) -> Reply:
        match = PATH.match(path)
        if method != "POST" or match is None:
            return _json(404, {"error": {"code": "404", "message": "Resource not found"}})
        try:
            request = json.loads(body)
            messages = request["messages"]
        except (ValueError, KeyError, TypeError):
            return _json(400, {"error": {"code": "BadRequest", "message": "invalid body"}})
        with self._lock:
            self.requests.append(request)
        fault = self._next_fault()
        if self.latency:
            time.sleep(self.latency)
        if fault is not None and fault.kind == "timeout":
            raise httpx2.ReadTimeout("simulated timeout")
        if fault is not None and fault.kind == "status":
            headers = {"retry-after": str(fault.retry_after)} if fault.retry_after else {}
            return _json(fault.status, {"error": {"code": str(fault.status),
                                                  "message": "simulated failure"}}, headers)
        if fault is not None and fault.kind == "content_filter" and not request.get("stream"):
            return _json(400, {"error": {"code": "content_filter", "message": "filtered",
                                         "innererror": {"code": "ResponsibleAIPolicyViolation"}}})
        max_tokens = int(request.get("max_completion_tokens") or request.get("max_tokens") or 4096)
        full = draft_for(messages)
        text = truncate(full, max_tokens)
        usage = self._usage(messages, text)
        finish = "stop" if text == full else "length"
        model = match.group("deployment")
        if request.get("stream"):
            include = bool((request.get("stream_options") or {}).get("include_usage"))
            return Reply(200, {"content-type": "text/event-stream"},
                         self._recorded(_sse(model, text, finish, usage if include else None,
                                             fault), usage))
        self._report(usage)
        return _json(200, {
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion",
            "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "finish_reason": finish,
                         "message": {"role": "assistant", "content": text}}],
            "usage": usage,
        })

    def _report(self, usage: dict[str, Any]) -> None:
        with self._lock:
            self.reported.append(usage)

    def _recorded(self, chunks: Iterator[bytes], usage: dict[str, Any]) -> Iterator[bytes]:
        for chunk in chunks:
            if b'"usage"' in chunk:
                self._report(usage)
            yield chunk

    def _usage(self, messages: list[dict[str, Any]], text: str) -> dict[str, Any]:
        prompt = count_messages(messages)
        completion = count_text(text)
        # Prompt caching as Azure reports it: a repeated prefix of >= 1024 tokens is
        # served from cache in 128-token steps.
        prefix = hashlib.sha256(json.dumps(messages[:1]).encode()).hexdigest()
        with self._lock:
            seen = prefix in self._seen_prefixes
            self._seen_prefixes.add(prefix)
        cached = (prompt // 128) * 128 if seen and prompt >= 1024 else 0
        return {"prompt_tokens": prompt, "completion_tokens": completion,
                "total_tokens": prompt + completion,
                "prompt_tokens_details": {"cached_tokens": cached},
                "completion_tokens_details": {"reasoning_tokens": 0}}


def _json(status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, {"content-type": "application/json", **(headers or {})},
                 json.dumps(payload).encode())


def _event(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def _sse(model: str, text: str, finish: str, usage: dict[str, Any] | None,
         fault: Fault | None) -> Iterator[bytes]:
    base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": model}
    filtered = fault is not None and fault.kind == "content_filter"
    yield _event({**base, "model": "", "choices": [], "prompt_filter_results": [
        {"prompt_index": 0, "content_filter_results": {
            "hate": {"filtered": False, "severity": "safe"},
            "self_harm": {"filtered": filtered, "severity": "high" if filtered else "safe"}}}]})
    if filtered:
        yield _event({**base, "choices": [{"index": 0, "delta": {},
                                           "finish_reason": "content_filter"}]})
        yield b"data: [DONE]\n\n"
        return
    words = re.findall(r"\S+\s*", text)
    pieces = ["".join(words[i:i + CHUNK_WORDS]) for i in range(0, len(words), CHUNK_WORDS)]
    for index, piece in enumerate(pieces):
        if fault is not None and fault.kind == "cut_stream" and index == len(pieces) // 2:
            raise httpx2.RemoteProtocolError("simulated: connection closed mid-stream")
        delta = {"content": piece, **({"role": "assistant"} if index == 0 else {})}
        yield _event({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
    yield _event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    if usage is not None and not (fault is not None and fault.kind == "no_usage"):
        yield _event({**base, "choices": [], "usage": usage})
    yield b"data: [DONE]\n\n"


def draft_for(messages: list[dict[str, Any]]) -> str:
    """Build a plausible, deterministic reply from the prompt."""
    system = next((m["content"] for m in messages if m.get("role") == "system"), "")
    user = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
    # A draft prompt ends with the headings to fill (llm/prompts.py); the simulator knows
    # no note formats of its own.
    match = re.search(r"^SECTIONS:\s*(.+)$", system, re.MULTILINE)
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", user) if s.strip()]
    if match is None:
        gist = " ".join(sentences[:2]) if sentences else "the question"
        return (f"Thank you. Regarding: {gist} Consider exploring this in the next session, "
                "documenting changes in mood and functioning, and reviewing the treatment "
                "plan together.")
    sections = [h.strip() for h in match.group(1).split(",") if h.strip()]
    lines = []
    for i, heading in enumerate(sections):
        picked = sentences[i::len(sections)][:2] or ["No further observations."]
        lines.append(f"{heading}: " + " ".join(picked))
    return "\n".join(lines)


class _ReplyStream(httpx2.SyncByteStream):
    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        yield from self._chunks

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()


class SimulatorTransport(httpx2.BaseTransport):
    """Mount the simulator under the SDK's HTTP client."""

    def __init__(self, simulator: Simulator) -> None:
        self.simulator = simulator

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        reply = self.simulator.handle(request.method, request.url.path, request.read())
        if isinstance(reply.body, bytes):
            return httpx2.Response(reply.status, headers=reply.headers, content=reply.body)
        return httpx2.Response(reply.status, headers=reply.headers,
                               stream=_ReplyStream(reply.body))


_DENIED = json.dumps({"error": {"code": "401", "message": "Access denied due to invalid "
                                 "subscription key or wrong API endpoint."}}).encode()


def serve(simulator: Simulator, port: int = 0,
          api_key: Callable[[], str] | None = None) -> ThreadingHTTPServer:
    """Serve the simulator over HTTP on loopback (tests of the Azure endpoint path).

    With ``api_key``, a request whose ``api-key`` header is not its current value gets
    Azure's 401 (tests of key rotation).
    """

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out as separate writes

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            if api_key is not None and self.headers.get("api-key") != api_key():
                self.send_response(401)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(_DENIED)))
                self.end_headers()
                self.wfile.write(_DENIED)
                return
            try:
                reply = simulator.handle("POST", self.path.split("?")[0], body)
            except httpx2.TimeoutException:
                time.sleep(2)  # a client with a shorter timeout gives up first
                self.close_connection = True
                return
            self.send_response(reply.status)
            for key, value in reply.headers.items():
                self.send_header(key, value)
            if isinstance(reply.body, bytes):
                self.send_header("content-length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)
                return
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            try:
                for chunk in reply.body:
                    self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
            except httpx2.TransportError:
                self.close_connection = True  # simulated cut: drop the connection

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server

"""A scripted OpenAI-compatible chat server for tests (stdlib only, 127.0.0.1, a free port).

    with ScriptedLLM() as server:
        server.script(Reply("DESCRIPTION: ..."), Status(500), Reply("..."))
        ... litellm.completion(model="openai/test-model", api_base=server.api_base, ...)
        server.requests[0]["body"]["messages"]   # what the client sent

Each POST /v1/chat/completions takes the next behaviour from the script:

    Reply(text)          200 with `text` as the assistant message, usage tokens included
    Empty()              200 with an empty assistant message
    Status(code)         an OpenAI-style error body with that HTTP status (500, 429, ...)
    Garbage()            200 with a body that is not JSON
    Close()              the connection is closed without any response
    Delay(s, then)       sleep s seconds (interrupted by stop()), then behave as `then`; a client that
                         closes the connection meanwhile ends it (counted in `disconnects`)

GET /v1/models lists one model, with `max_model_len` (vLLM's field) when `context_tokens` is set.

`go_away()` stops listening (clients get "connection refused") until `come_back()` listens on
the same port again, with the rest of the script: an endpoint that disappears for a while.

An exhausted script answers 400 "script exhausted" (not retried by clients), so a test that
makes more calls than it scripted fails loudly. Requests are
recorded without their Authorization header; `authorized` says whether one was sent.
"""
from __future__ import annotations

import json
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL_ID = "test-model"


@dataclass(frozen=True)
class Reply:
    text: str
    prompt_tokens: int | None = None        # None: about one token per 4 characters of the prompt
    completion_tokens: int | None = None    # None: about one token per 4 characters of `text`
    finish_reason: str = "stop"


@dataclass(frozen=True)
class Empty:
    pass


@dataclass(frozen=True)
class Status:
    code: int
    message: str = "scripted error"
    headers: dict = field(default_factory=lambda: {"retry-after-ms": "10"})  # keeps client backoff short


@dataclass(frozen=True)
class Garbage:
    body: str = "<html>this is not json</html>"


@dataclass(frozen=True)
class Close:
    pass


@dataclass(frozen=True)
class Delay:
    seconds: float
    then: Any = field(default_factory=lambda: Reply("late"))


def _estimate_tokens(text: str) -> int:
    return max(1, len(text) // 4)


class ScriptedLLM:
    """The server; start()/stop() or use it as a context manager."""

    def __init__(self, host: str = "127.0.0.1"):
        self._lock = threading.Lock()
        self._script: list[Any] = []
        self._stopping = threading.Event()
        self.requests: list[dict] = []
        self.disconnects = 0       # requests whose client closed the connection during a Delay
        self._connections: set = set()   # open client connections (HTTP/1.1 keeps them alive)
        self.context_tokens: int | None = None   # when set, GET /v1/models reports it as vLLM does (max_model_len)
        self._httpd = self._listen(host, 0)
        self._thread: threading.Thread | None = None

    def _listen(self, host: str, port: int) -> ThreadingHTTPServer:
        httpd = ThreadingHTTPServer((host, port), self._handler_class())
        httpd.daemon_threads = True
        return httpd

    # -- control -----------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, *behaviours: Any) -> None:
        """Append behaviours, served one per chat request, in order."""
        with self._lock:
            self._script.extend(behaviours)

    @property
    def chat_requests(self) -> list[dict]:
        with self._lock:
            return [r for r in self.requests if r["path"].endswith("/chat/completions")]

    def prompts(self) -> list[str]:
        """Each chat request's messages joined into one text (handy for `in` assertions)."""
        return ["\n".join(str(m.get("content") or "") for m in r["body"].get("messages", []))
                for r in self.chat_requests]

    def start(self) -> "ScriptedLLM":
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="scripted-llm", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def go_away(self) -> None:
        """Close the listening socket and every open connection, as a server that dies does: new
        connections are refused until come_back() (a kept-alive connection is not served on)."""
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def come_back(self) -> None:
        host, port = self._httpd.server_address[:2]
        self._httpd = self._listen(host, port)
        self.start()

    def __enter__(self) -> "ScriptedLLM":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- serving -----------------------------------------------------------------------------
    def _next(self) -> Any:
        with self._lock:
            return self._script.pop(0) if self._script else Status(400, "script exhausted", headers={})

    def _record(self, handler: BaseHTTPRequestHandler, body: Any) -> None:
        headers = {k.lower(): v for k, v in handler.headers.items() if k.lower() != "authorization"}
        with self._lock:
            self.requests.append({
                "method": handler.command, "path": handler.path, "headers": headers, "body": body,
                "authorized": bool(handler.headers.get("Authorization")), "time": time.monotonic(),
            })

    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with server._lock:
                    server._connections.add(self.connection)

            def finish(self) -> None:
                with server._lock:
                    server._connections.discard(self.connection)
                try:
                    super().finish()
                except OSError:
                    pass

            def log_message(self, *args) -> None:  # quiet
                pass

            def _send(self, code: int, payload: bytes, content_type: str = "application/json",
                      headers: dict | None = None) -> None:
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(payload)))
                    for key, value in (headers or {}).items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(payload)
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout): nothing to do

            def do_GET(self) -> None:
                server._record(self, None)
                if self.path.rstrip("/").endswith("/models"):
                    model = {"id": MODEL_ID, "object": "model", "owned_by": "tests"}
                    if server.context_tokens is not None:
                        model["max_model_len"] = server.context_tokens
                    body = {"object": "list", "data": [model]}
                    self._send(200, json.dumps(body).encode())
                else:
                    self._send(404, b'{"error": {"message": "not found"}}')

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {"_raw": raw.decode(errors="replace")}
                server._record(self, body)
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, b'{"error": {"message": "not found"}}')
                    return
                self._behave(server._next(), body)

            def _client_left(self) -> bool:
                """Whether the client closed its end (readable, and nothing left to read)."""
                try:
                    readable, _, _ = select.select([self.connection], [], [], 0)
                    return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
                except OSError:
                    return True

            def _behave(self, behaviour: Any, body: dict) -> None:
                if isinstance(behaviour, Delay):
                    end = time.monotonic() + behaviour.seconds
                    while time.monotonic() < end:
                        if server._stopping.wait(min(0.05, max(0.0, end - time.monotonic()))):
                            return
                        if self._client_left():
                            with server._lock:
                                server.disconnects += 1
                            self.close_connection = True
                            return
                    behaviour = behaviour.then
                if isinstance(behaviour, Close):
                    self.close_connection = True
                    return
                if isinstance(behaviour, Garbage):
                    self._send(200, behaviour.body.encode(), content_type="application/json")
                    return
                if isinstance(behaviour, Status):
                    error = {"error": {"message": behaviour.message, "type": "scripted", "code": behaviour.code}}
                    self._send(behaviour.code, json.dumps(error).encode(), headers=behaviour.headers)
                    return
                text = "" if isinstance(behaviour, Empty) else behaviour.text
                reply = behaviour if isinstance(behaviour, Reply) else Reply("")
                prompt = "".join(str(m.get("content") or "") for m in body.get("messages", []))
                prompt_tokens = reply.prompt_tokens if reply.prompt_tokens is not None else _estimate_tokens(prompt)
                completion_tokens = (reply.completion_tokens if reply.completion_tokens is not None
                                     else (_estimate_tokens(text) if text else 0))
                response = {
                    "id": f"chatcmpl-{len(server.requests)}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body.get("model", MODEL_ID),
                    "choices": [{"index": 0, "finish_reason": reply.finish_reason,
                                 "message": {"role": "assistant", "content": text}}],
                    "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                              "total_tokens": prompt_tokens + completion_tokens},
                }
                self._send(200, json.dumps(response).encode())

        return Handler

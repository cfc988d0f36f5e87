"""Serving a report folder on 127.0.0.1 with automatic reload: `python -m evolve.report RUN --serve`.

The files on disk stay static (no script). Only the HTML pages as served carry a small script that
asks the server for the page's version (its file's mtime and size) every POLL_MS and reloads the page
when it changed: the engine's live refresh (report.every) or a rebuild by hand shows up by itself,
at the same scroll position. Every response is sent with `Cache-Control: no-store`, so a reload
fetches the new plots too. Standard library only; nothing is fetched from anywhere else.
"""
from __future__ import annotations

import json
import os
import sys
import time
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

HOST = "127.0.0.1"
DEFAULT_PORT = 8000
POLL_MS = 2000
VERSION_PATH = "/__version__"
MISSING = "missing"

RELOAD_SNIPPET = """
<div id="evolve-live" style="position:fixed;right:8px;bottom:8px;padding:2px 8px;border-radius:4px;
background:#efe;color:#555;font:12px sans-serif">live: reloads when the report changes (loaded {served})</div>
<script>/* added by python -m evolve.report --serve; the file on disk has no script */
(function () {{
  var page = {page}, seen = {version}, every = {poll_ms};
  function poll() {{
    fetch("{endpoint}?page=" + encodeURIComponent(page), {{cache: "no-store"}})
      .then(function (r) {{ return r.text(); }})
      .then(function (v) {{
        if (v !== seen && v !== "{missing}") {{ location.reload(); }} else {{ setTimeout(poll, every); }}
      }})
      .catch(function () {{ setTimeout(poll, every); }});
  }}
  setTimeout(poll, every);
}})();
</script>
"""


def version_of(stat: os.stat_result | None) -> str:
    """A page's version: changes whenever its file is rewritten (the report replaces it whole)."""
    return MISSING if stat is None else f"{stat.st_mtime_ns}-{stat.st_size}"


def with_reload(html: str, page: str, version: str, poll_ms: int = POLL_MS, served: str = "") -> str:
    """The page as served: its HTML with the reload snippet before </body> (appended when there is none)."""
    snippet = RELOAD_SNIPPET.format(page=json.dumps(page), version=json.dumps(version), poll_ms=int(poll_ms),
                                    endpoint=VERSION_PATH, missing=MISSING, served=served or time.strftime("%H:%M:%S"))
    at = html.rfind("</body>")
    return html[:at] + snippet + html[at:] if at >= 0 else html + snippet


class ReportHandler(SimpleHTTPRequestHandler):
    """Static files of one folder; HTML pages with the reload snippet; the version endpoint."""

    poll_ms = POLL_MS

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        url = urlsplit(self.path)
        if url.path == VERSION_PATH:
            page = parse_qs(url.query).get("page", ["/index.html"])[0]
            self._send(version_of(self._stat(page)).encode(), "text/plain; charset=utf-8")
            return
        page = "/index.html" if url.path in ("", "/") else url.path
        if page.endswith(".html"):
            self._send_page(page)
            return
        super().do_GET()

    def _stat(self, page: str) -> os.stat_result | None:
        try:
            return os.stat(self.translate_path(page))
        except OSError:
            return None

    def _send_page(self, page: str) -> None:
        try:
            with open(self.translate_path(page), "rb") as f:   # the version of exactly what is read
                version, html = version_of(os.fstat(f.fileno())), f.read().decode("utf-8", "replace")
        except OSError:
            self.send_error(HTTPStatus.NOT_FOUND, f"{page} is not in the report folder (yet)")
            return
        self._send(with_reload(html, page, version, self.poll_ms).encode("utf-8"), "text/html; charset=utf-8")

    def _send(self, body: bytes, content_type: str) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_request(self, code="-", size="-") -> None:
        if isinstance(code, HTTPStatus):
            code = code.value
        if str(code).isdigit() and int(code) >= 400:    # the polling every 2 s would drown the terminal
            super().log_request(code, size)


def make_server(directory: Path, port: int = DEFAULT_PORT, poll_ms: int = POLL_MS) -> ThreadingHTTPServer:
    """A server for `directory` on 127.0.0.1:port (0 = any free port: see server.server_address)."""
    handler = partial(type("Handler", (ReportHandler,), {"poll_ms": poll_ms}), directory=str(directory))
    server = ThreadingHTTPServer((HOST, port), handler)
    server.daemon_threads = True
    return server


def serve(directory: Path, page: str = "index.html", port: int = DEFAULT_PORT) -> int:
    """Serves until Ctrl-C; returns the exit code (1 when the port is taken)."""
    try:
        server = make_server(directory, port)
    except OSError as e:
        print(f"error: cannot serve on {HOST}:{port} ({e.strerror or e}); pick another with --port "
              "(0 = any free port)", file=sys.stderr, flush=True)
        return 1
    url = f"http://{HOST}:{server.server_address[1]}/{page}"
    print(f"[report] serving {directory} at {url} ; the page reloads when the report changes (Ctrl-C stops)",
          flush=True)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0

"""A real HTTP server on 127.0.0.1 serving feed fixtures, article pages and misbehaving endpoints."""

from __future__ import annotations

import gzip
import hashlib
import threading
import time
from collections import Counter
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

FEEDS_DIR = Path(__file__).resolve().parent.parent / "data" / "feeds"
LAST_MODIFIED = formatdate(1_600_000_000, usegmt=True)


class FeedServer:
    """Serves `/feeds/<file>` with ETag/Last-Modified (304 on a match) plus test endpoints; counts requests."""

    def __init__(self, feeds_dir: Path = FEEDS_DIR) -> None:
        self.feeds_dir = feeds_dir
        self.files: dict[str, bytes] = {}  # path -> body overrides (e.g. generated feeds, pages)
        self.hits: Counter[str] = Counter()
        self.conditional_hits: Counter[str] = Counter()
        self.slow_s = 3.0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # noqa: ANN002
                pass

            def do_GET(self) -> None:  # noqa: N802
                server._handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        """http://127.0.0.1:PORT"""
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, path: str) -> str:
        """Absolute URL of a path on this server."""
        return self.base + path

    def start(self) -> FeedServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _send(self, h: BaseHTTPRequestHandler, status: int, body: bytes = b"", headers: dict | None = None) -> None:
        h.send_response(status)
        headers = {"Content-Length": str(len(body)), **(headers or {})}
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()
        if body and h.command != "HEAD":
            try:
                h.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        path, query = parts.path, parse_qs(parts.query)
        self.hits[path] += 1
        if h.headers.get("If-None-Match") or h.headers.get("If-Modified-Since"):
            self.conditional_hits[path] += 1
        if path in self.files or path.startswith("/feeds/"):
            body = self.files.get(path)
            if body is None:
                f = self.feeds_dir / path.removeprefix("/feeds/")
                if not f.is_file():
                    return self._send(h, 404, b"not found")
                body = f.read_bytes()
            etag = '"' + hashlib.sha1(body).hexdigest() + '"'
            if h.headers.get("If-None-Match") == etag:
                return self._send(h, 304, headers={"ETag": etag})
            ctype = "text/html; charset=utf-8" if path.endswith(".html") else "application/xml"
            return self._send(h, 200, body, {"ETag": etag, "Last-Modified": LAST_MODIFIED, "Content-Type": ctype})
        if path == "/slow":
            time.sleep(float(query.get("s", [self.slow_s])[0]))
            return self._send(h, 200, (self.feeds_dir / "wsj_2020-04-27T2107Z.xml").read_bytes(),
                              {"Content-Type": "application/xml"})
        if path.startswith("/status/"):
            code = int(path.rsplit("/", 1)[1])
            headers = {"Retry-After": query["retry_after"][0]} if "retry_after" in query else {}
            return self._send(h, code, f"status {code}".encode(), headers)
        if path == "/huge":
            # Declares no length and streams more than any cap the tests set.
            h.send_response(200)
            h.send_header("Content-Type", "application/xml")
            h.send_header("Connection", "close")
            h.end_headers()
            try:
                h.wfile.write(b"<rss><channel>")
                for _ in range(64):
                    h.wfile.write(b"<!--" + b"x" * 65536 + b"-->")
            except (BrokenPipeError, ConnectionResetError):
                pass
            return None
        if path == "/gzip-bomb":
            body = gzip.compress(b"<rss>" + b" " * (20 * 1024 * 1024) + b"</rss>")
            return self._send(h, 200, body, {"Content-Encoding": "gzip", "Content-Type": "application/xml"})
        if path.startswith("/loop/"):
            n = int(path.rsplit("/", 1)[1])
            return self._send(h, 302, headers={"Location": f"/loop/{n + 1}"})
        if path.startswith("/redirect-to"):
            return self._send(h, 302, headers={"Location": query["to"][0]})
        return self._send(h, 404, b"not found")

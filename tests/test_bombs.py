"""Hostile payloads: XML entity bombs and external entities in feeds and OPML, decompression bombs over HTTP.

Each is refused with a clear error, and the tests measure that refusing it costs neither time nor memory
(tracemalloc peak of the refusing call), so an expansion that happened before the refusal would fail them.
"""

from __future__ import annotations

import gzip
import threading
import time
import tracemalloc
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bot.errors import CommandError, FetchError, ParseError, TooLargeError
from bot.feedlist import parse_opml
from bot.net import Fetcher, FetchLimits
from bot.pipeline.entry import parse_feed

PASSWD = Path("/etc/passwd")
MiB = 1024 * 1024


def measured(fn, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN201
    """(exception raised by fn, seconds, peak traced bytes)."""
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001  (returned to the test, which asserts its type)
        raised = exc
    else:
        raised = None
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return raised, seconds, peak


LAUGHS = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">\n' for i in range(1, 10))
BILLION_LAUGHS_DTD = f'<!DOCTYPE d [\n<!ENTITY l0 "lol">\n{LAUGHS}]>\n'
QUADRATIC_DTD = f'<!DOCTYPE d [\n<!ENTITY a "{"a" * 50000}">\n]>\n'
XXE_DTD = '<!DOCTYPE d [\n<!ENTITY xxe SYSTEM "file:///etc/passwd">\n]>\n'
PARAM_XXE_DTD = '<!DOCTYPE d [\n<!ENTITY % p SYSTEM "file:///etc/passwd">\n%p;\n]>\n'
DTD_KINDS = {"billion_laughs": (BILLION_LAUGHS_DTD, "&l9;"), "quadratic": (QUADRATIC_DTD, "&a;" * 2000),
             "xxe": (XXE_DTD, "&xxe;"), "parameter_xxe": (PARAM_XXE_DTD, "x")}


def feed_doc(dtd: str, ref: str) -> str:
    return (f'<?xml version="1.0" encoding="utf-8"?>\n{dtd}<rss version="2.0"><channel><title>t</title>'
            f"<item><title>{ref}</title><link>https://example.org/1</link><description>{ref}</description>"
            "</item></channel></rss>")


def opml_doc(dtd: str, ref: str) -> str:
    return (f'<?xml version="1.0" encoding="utf-8"?>\n{dtd}<opml version="2.0"><head><title>{ref}</title>'
            f'</head><body><outline text="{ref}" title="{ref}" xmlUrl="https://example.org/feed"/></body></opml>')


def encodings(doc: str) -> dict[str, bytes]:
    """The document as UTF-8, and as UTF-16 (where a byte-level scan for '<!ENTITY' sees NULs in between)."""
    return {"utf8": doc.encode(), "utf16": doc.replace('encoding="utf-8"', 'encoding="utf-16"').encode("utf-16")}


@pytest.mark.parametrize("kind", DTD_KINDS)
@pytest.mark.parametrize("enc", ["utf8", "utf16"])
def test_feed_entity_bombs_and_xxe_are_refused_without_expanding(kind: str, enc: str) -> None:
    body = encodings(feed_doc(*DTD_KINDS[kind]))[enc]
    raised, seconds, peak = measured(parse_feed, body, url="https://example.org/feed")
    assert isinstance(raised, ParseError) and "entities" in str(raised), raised
    assert seconds < 2 and peak < 20 * MiB, (seconds, peak)


@pytest.mark.parametrize("kind", DTD_KINDS)
@pytest.mark.parametrize("enc", ["utf8", "utf16"])
def test_opml_entity_bombs_and_xxe_are_refused_without_expanding(kind: str, enc: str) -> None:
    data = encodings(opml_doc(*DTD_KINDS[kind]))[enc]
    raised, seconds, peak = measured(parse_opml, data)
    assert isinstance(raised, CommandError) and "entities" in str(raised), raised
    assert seconds < 2 and peak < 20 * MiB, (seconds, peak)


def test_external_dtd_is_never_fetched_or_read() -> None:
    """A DOCTYPE that only names an external DTD (no entity declarations) parses, and nothing of the file leaks."""
    secret = PASSWD.read_text().splitlines()[0] if PASSWD.is_file() else "root:x:0:0"
    feed = parse_feed(feed_doc('<!DOCTYPE rss SYSTEM "file:///etc/passwd">\n', "plain").encode(),
                      url="https://example.org/feed")
    assert [e.title for e in feed.entries] == ["plain"] and secret not in repr(feed)
    rows = parse_opml(opml_doc('<!DOCTYPE opml SYSTEM "file:///etc/passwd">\n', "plain").encode())
    assert rows == [("https://example.org/feed", "plain")] and secret not in repr(rows)


def test_plain_documents_still_parse() -> None:
    """The guards refuse only entity declarations: the same documents without a DTD are accepted."""
    for enc, body in encodings(feed_doc("", "Title &amp; more")).items():
        assert [e.title for e in parse_feed(body, url="https://example.org/feed").entries] == ["Title & more"], enc
    for enc, data in encodings(opml_doc("", "Feed")).items():
        assert parse_opml(data) == [("https://example.org/feed", "Feed")], enc


# ---------------------------------------------------------------------------------------------------------------
# decompression bombs over a real local socket


class BombServer:
    """127.0.0.1 server answering each path with a fixed body and Content-Encoding."""

    def __init__(self, routes: dict[str, tuple[bytes, str]]) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # noqa: ANN002
                pass

            def do_GET(self) -> None:  # noqa: N802
                body, coding = routes[self.path]
                self.send_response(200)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                if coding:
                    self.send_header("Content-Encoding", coding)
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _deflate(data: bytes) -> bytes:
    c = zlib.compressobj(9)
    return c.compress(data) + c.flush()


def _zeros_gzip(n: int) -> bytes:
    """gzip of n zero bytes, built in 1 MiB steps so the test itself never holds n bytes."""
    c = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = b"\0" * MiB
    return b"".join([c.compress(chunk) for _ in range(n // MiB)] + [c.flush()])


@pytest.fixture(scope="module")
def bombs():  # noqa: ANN201
    inner = _zeros_gzip(256 * MiB)  # 256 MiB of zeros in ~250 kB
    feed = b'<rss version="2.0"><channel><title>t</title></channel></rss>' + b" " * 1000
    server = BombServer({
        "/gzip": (_zeros_gzip(64 * MiB), "gzip"),  # 64 MiB in ~64 kB: one network read
        "/deflate": (_deflate(b" " * (64 * MiB)), "deflate"),
        "/gzip-gzip": (gzip.compress(inner, 9), "gzip, gzip"),  # 256 MiB behind two layers in under 1 kB
        "/ok": (gzip.compress(feed), "gzip"),
        "/ok-deflate": (_deflate(feed), "deflate"),
    })
    yield server
    server.close()


@pytest.mark.parametrize(("path", "error", "message"), [
    ("/gzip", TooLargeError, f"larger than {1 * MiB} bytes"),
    ("/deflate", TooLargeError, f"larger than {1 * MiB} bytes"),
    # Stacked codings are never legitimate (we ask for one of gzip, deflate): refused before any inflating.
    ("/gzip-gzip", FetchError, "unsupported Content-Encoding 'gzip, gzip'"),
])
async def test_decompression_bombs_are_cut_off_at_the_size_cap(bombs, path: str, error: type, message: str) -> None:  # noqa: ANN001
    limits = FetchLimits(allow_private=True, max_bytes=1 * MiB)
    async with Fetcher(limits) as fetcher:
        tracemalloc.start()
        t0 = time.perf_counter()
        with pytest.raises(error, match=message) as raised:
            await fetcher.get(bombs.url(path))
        assert raised.value.transient is False
        seconds = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    # Inflated in bounded steps: never much more than the cap held at once, however large the bomb.
    assert peak < 8 * MiB and seconds < 5, (peak, seconds)


@pytest.mark.parametrize("path", ["/ok", "/ok-deflate"])
async def test_compressed_feeds_within_the_cap_still_arrive_whole(bombs, path: str) -> None:  # noqa: ANN001
    async with Fetcher(FetchLimits(allow_private=True, max_bytes=1 * MiB)) as fetcher:
        result = await fetcher.get(bombs.url(path))
    assert result.body.startswith(b"<rss") and len(result.body) == 1060
    assert parse_feed(result.body, url=bombs.url(path)).title == "t"

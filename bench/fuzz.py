"""Coverage-guided fuzzing (atheris) of every parser of untrusted input; prints executions and crashes per target.

Usage: python bench/fuzz.py --seconds 60                 (every target, 60 s each)
       python bench/fuzz.py --runs 2000 --seed 1 --targets entry,opml
       python bench/fuzz.py --engine random --runs 500    (seeded mutation loop, when atheris is not installed)

The contract each target checks: the function returns, or raises the project's own `NewsdigestError`; any other
exception is a crash (atheris stops and writes the input under --artifacts). Inputs are bounded by -max_len and
every input by -timeout, so a hang is reported too. Each target runs in its own process (atheris fuzzes one
function per process); tests/test_fuzz.py runs all of them with a small fixed budget.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from a checkout

FEEDS_DIR = ROOT / "tests" / "data" / "feeds"
PAGES_DIR = ROOT / "tests" / "data" / "extraction" / "html"

# name -> max input length in bytes; small enough that one input parses in milliseconds.
MAX_LEN = {"entry": 65536, "article": 65536, "opml": 32768, "feeds_file": 8192, "commands": 1024,
           "discord_commands": 4096, "render_telegram": 8192, "render_discord": 8192}
TARGETS = tuple(MAX_LEN)


def _texts(data: bytes) -> list[str]:
    """Arbitrary text fields from bytes: UTF-16 with surrogatepass, so lone surrogates and any code point occur."""
    return data[: len(data) // 2 * 2].decode("utf-16-le", "surrogatepass").split("\x00")


def _field(fields: list[str], i: int) -> str:
    return fields[i % len(fields)] if fields else ""


# ----------------------------------------------------------------------------------------------------------------
# targets: bytes in; return, or raise NewsdigestError


def make_target(name: str) -> Callable[[bytes], None]:
    """The fuzz function for one target name (imports happen here, so atheris can instrument them)."""
    from bot.errors import NewsdigestError

    if name == "entry":
        from bot.pipeline.entry import parse_feed

        def call(data: bytes) -> None:
            parse_feed(data, url="https://example.org/feed", content_type=None,
                       date_fallback=data[:1] == b"<" and len(data) % 7 == 0, max_bytes=1 << 20)

    elif name == "article":
        from bot.pipeline.article import extract_article, page_title

        def call(data: bytes) -> None:
            page_title(data)
            extract_article(data if len(data) % 2 else data.decode("utf-8", "replace"), "https://example.org/a")

    elif name == "opml":
        from bot.feedlist import parse_opml, validate_feed_url

        def call(data: bytes) -> None:
            for url, _title in parse_opml(data):
                validate_feed_url(url, allow_private=False)

    elif name == "feeds_file":
        from bot.settings import load_feeds_file
        tmp = Path(tempfile.mkdtemp(prefix="fuzz-feeds-")) / "feeds.yaml"

        def call(data: bytes) -> None:
            tmp.write_bytes(data)
            load_feeds_file(tmp)

    elif name == "commands":
        call = _commands_target()

    elif name == "discord_commands":
        call = _discord_commands_target()

    elif name == "render_telegram":
        from bot.chat.render_telegram import MESSAGE_LIMIT, TelegramRenderer, units
        renderer = TelegramRenderer()

        def call(data: bytes) -> None:
            digest, reply = _digest_and_reply(_texts(data))
            for msg in renderer.render_digest(digest) + renderer.render_reply(reply):
                _check_payload(msg)
                if units(msg.text) > MESSAGE_LIMIT:
                    raise AssertionError(f"Telegram message of {units(msg.text)} units")

    elif name == "render_discord":
        from bot.chat.render_discord import DiscordRenderer
        renderer = DiscordRenderer()

        def call(data: bytes) -> None:
            digest, reply = _digest_and_reply(_texts(data))
            for msg in renderer.render_digest(digest) + renderer.render_reply(reply):
                _check_payload(msg)

    else:
        raise SystemExit(f"unknown target {name!r}; targets: {', '.join(TARGETS)}")

    def target(data: bytes) -> None:
        try:
            call(data)
        except NewsdigestError:
            pass

    return target


def _check_payload(msg: object) -> None:
    """A rendered message must be JSON- and UTF-8-encodable (the outbox stores it, the API gets UTF-8)."""
    payload = msg.to_payload() if getattr(msg, "file", None) is None else {"text": msg.text}
    json.dumps(payload, ensure_ascii=False).encode("utf-8")


def _digest_and_reply(fields: list[str]):  # noqa: ANN202
    from datetime import UTC, datetime, timedelta

    from bot.pipeline.digest import Digest, DigestStory, OutletLink
    from bot.ports import Button, Reply, Span

    now = datetime(2026, 3, 1, 12, tzinfo=UTC)
    f = fields or [""]
    stories = tuple(
        DigestStory(id=i, version=1, title=_field(f, 3 * i), summary=_field(f, 3 * i + 1),
                    links=tuple(OutletLink(outlet=_field(f, 3 * i + j), url=_field(f, 3 * i + j + 1),
                                           title=_field(f, 3 * i + j + 2)) for j in range(1 + i % 3)),
                    outlet_count=1 + i, score=1.0 / (i + 1), updated=bool(i % 2))
        for i in range(min(len(f), 12)))
    digest = Digest(since=now - timedelta(hours=12), until=now, stories=stories, title=_field(f, 0))
    spans = tuple(Span(text=s, bold=i % 2 == 1, italic=i % 3 == 1, code=i % 5 == 4,
                       url=_field(f, i + 1) if i % 4 == 3 else None) for i, s in enumerate(f[:40]))
    blocks = tuple(spans[i:i + 3] for i in range(0, len(spans), 3))
    buttons = ((Button(_field(f, 0)[:40], _field(f, 1).encode("utf-8", "ignore")[:64].decode("utf-8", "ignore")),),)
    return digest, Reply(blocks=blocks, buttons=buttons if len(f) > 2 else (), notice=_field(f, 2) or None)


def _commands_target() -> Callable[[bytes], None]:
    """Chat text -> parse_command -> the real CommandService (SQLite, no network) for /summary, /settings,
    /addfeed and the rest; a reply that reports an internal failure is a crash."""
    from bot.chat.commands import CommandService, parse_command
    from bot.chat.feed_admin import StoreFeedAdmin
    from bot.errors import ParseError
    from bot.feedlist import FeedProbe
    from bot.ports import ChatRef, Invocation, LinkSummary
    from bot.settings import DigestDefaults
    from bot.storage.chat_store import ChatStore
    from bot.storage.store import Store

    db = Path(tempfile.mkdtemp(prefix="fuzz-cmd-")) / "fuzz.db"
    store = Store.open(f"sqlite:///{db}")

    async def summarize(url: str) -> LinkSummary:
        return LinkSummary(url=url, title=url[:50], summary="What happened.", outlet="Example")

    async def probe(url: str) -> FeedProbe:
        if len(url) % 3 == 0:
            raise ParseError(f"got an HTML page, not a feed ('{url[-20:]}') ({url})")
        return FeedProbe(title=url[-30:], entries=1, final_url=url)

    class Clock:
        def __init__(self) -> None:
            from datetime import UTC, datetime
            self.t = datetime(2026, 3, 1, 12, tzinfo=UTC)

        def __call__(self):  # noqa: ANN204
            from datetime import timedelta
            self.t += timedelta(minutes=5)  # past the cooldown every time, so /summary is parsed each run
            return self.t

    svc = CommandService(ChatStore(store.engine), admins={"telegram:1"},
                         defaults=DigestDefaults(summary_cooldown_s=60, topics=("world",)),
                         feed_admin=StoreFeedAdmin(store, allow_private=False, probe=probe),
                         summarize=summarize, topics=("world", "economy"), clock=Clock())
    chat = ChatRef("telegram", "10")
    failures = _catch_logged_failures()
    loop = asyncio.new_event_loop()
    loop.run_until_complete(svc.handle(Invocation("telegram", chat, "1", "subscribe", ())))

    def call(data: bytes) -> None:
        text = data.decode("utf-8", "surrogateescape")
        parsed = parse_command(text, "newsdigest_bot")
        if parsed is None:
            return
        command, args = parsed
        inv = Invocation("telegram", chat, "1", command, args, user_is_chat_admin=True,
                         callback_data=text[1:65] if command == "callback" else None)
        failures.clear()
        reply = loop.run_until_complete(svc.handle(inv))
        if failures:
            exc = failures[0].exc_info[1]
            raise RuntimeError(f"/{command} {args!r} failed inside the command service") from exc
        for block in reply.blocks:
            for span in block:
                span.text.encode("utf-8", "surrogatepass")

    return call


# The slash commands (as build_commands registers them) and a button click; the options' values come from the input.
DISCORD_COMMANDS = ("help", "subscribe", "unsubscribe", "summary", "settings", "feeds", "addfeed", "removefeed",
                    "importopml", "exportopml", "callback", "story", "alerts")
# What an option can be besides text: ints out of every range, a float, a bool, a list (type confusion).
_ODD_VALUES: tuple[object, ...] = (0, -1, 2**53 + 1, -(2**63) - 1, 10**30, 1.5e308, True, ["6h"])


def _discord_commands_target() -> Callable[[bytes], None]:
    """Fuzz bytes -> a slash command with option values (any text incl. lone surrogates, odd types, missing or
    extra options) -> bot.chat.discord_chat.slash_invocation (the adapter's own conversion) -> the real
    CommandService -> DiscordRenderer -> the body discord.py would send, checked against Discord's schema and
    limits (the fake Discord's check). A failure logged inside the service, or an invalid body, is a crash.

    Layout: byte 0 the command, byte 1 flags (which options are given, owner, Manage Server, thread, DM, odd
    value, extra option), byte 2 the setting or the odd value, then UTF-16 option values separated by NUL (for
    /importopml, these bytes are also the attached file's content)."""
    from dataclasses import replace

    import discord.http

    from bot.chat.commands import CommandService
    from bot.chat.discord_chat import SETTING_NAMES, SLASH_OPTIONS, send_kwargs, slash_invocation
    from bot.chat.feed_admin import StoreFeedAdmin
    from bot.chat.render_discord import DiscordRenderer
    from bot.errors import CommandError, ParseError
    from bot.feedlist import FeedProbe
    from bot.ports import GROUP, ChatRef, Invocation, LinkSummary, Reply, para
    from bot.settings import DigestDefaults
    from bot.storage.chat_store import ChatStore
    from bot.storage.store import Store
    from tests.fakes.discord_api import payload_problems

    db = Path(tempfile.mkdtemp(prefix="fuzz-dcmd-")) / "fuzz.db"
    store = Store.open(f"sqlite:///{db}")

    async def summarize(url: str) -> LinkSummary:
        return LinkSummary(url=url, title=url[:300], summary="What happened. " * (len(url) % 50), outlet=url[:80])

    async def probe(url: str) -> FeedProbe:
        if len(url) % 3 == 0:
            raise ParseError(f"got an HTML page, not a feed ('{url[-20:]}') ({url})")
        return FeedProbe(title=url[-300:], entries=1, final_url=url)

    clock = _StepClock()
    svc = CommandService(ChatStore(store.engine), admins={"discord:1"},
                         defaults=DigestDefaults(summary_cooldown_s=60, topics=("world",)),
                         feed_admin=StoreFeedAdmin(store, allow_private=False, probe=probe),
                         summarize=summarize, topics=("world", "economy"), clock=clock)
    renderer = DiscordRenderer()
    channel = ChatRef("discord", "10", "", GROUP, "Guild #news")
    thread = ChatRef("discord", "10", "11", GROUP, "Guild #news / daily")
    failures = _catch_logged_failures()
    loop = asyncio.new_event_loop()
    for chat in (channel, thread):
        loop.run_until_complete(svc.handle(Invocation("discord", chat, "1", "subscribe", (),
                                                      user_is_chat_admin=True)))

    async def bodies(reply: Reply) -> list[dict]:
        # discord.ui.View needs a running loop; the body is exactly what discord.py would post.
        return [discord.http.handle_message_parameters(**send_kwargs(m)).payload or {}
                for m in renderer.render_reply(reply)]

    def call(data: bytes) -> None:
        if len(data) < 3:
            return
        command = DISCORD_COMMANDS[data[0] % len(DISCORD_COMMANDS)]
        flags, pick = data[1], data[2]
        texts = _texts(data[3:])
        names = list(SLASH_OPTIONS.get(command, {}))
        options: dict[str, object] = {}
        for i, name in enumerate(names):
            if flags >> i & 1:  # given (bits 0-1); otherwise missing
                options[name] = _field(texts, i)
        if command == "settings" and "setting" in options and pick < 200:
            options["setting"] = SETTING_NAMES[pick % len(SETTING_NAMES)]
        if flags & 0x04 and names:
            options[names[pick % len(names)]] = _ODD_VALUES[pick % len(_ODD_VALUES)]
        if flags & 0x08:
            options[_field(texts, 3)[:32] or "extra"] = _field(texts, 4)
        attachment = data[3:] if "file" in options else None
        chat = None if flags & 0x10 else (thread if flags & 0x20 else channel)
        try:
            inv = slash_invocation(command, options, chat=chat, user_id="1" if flags & 0x40 else "2",
                                   user_name=_field(texts, 5), manage_guild=bool(flags & 0x80),
                                   attachment_name=f"{_field(texts, 6)[:100]}.opml" if attachment is not None else None,
                                   attachment_size=len(attachment) if attachment is not None else None,
                                   callback_data=_field(texts, 0)[:100] if command == "callback" else None)
            if attachment is not None and svc.wants_attachment(inv):
                inv = replace(inv, attachment=attachment)
            failures.clear()
            reply = loop.run_until_complete(svc.handle(inv))
        except CommandError as exc:  # as DiscordBot._safely: the user sees it as an error reply
            reply = Reply(blocks=(para(str(exc)),), error=True)
        if failures:
            exc = failures[0].exc_info[1]
            raise RuntimeError(f"/{command} {options!r} failed inside the command service") from exc
        for body in loop.run_until_complete(bodies(reply)):
            json.dumps(body, ensure_ascii=False).encode("utf-8")
            problems = payload_problems("MessageCreateRequest", body)
            if problems:
                    raise AssertionError(f"/{command} {options!r}: Discord would reject the reply: {problems}")

    return call


class _StepClock:
    """Five minutes later at every call: past the /summary cooldown every time, so each /summary is parsed."""

    def __init__(self) -> None:
        from datetime import UTC, datetime
        self.t = datetime(2026, 3, 1, 12, tzinfo=UTC)

    def __call__(self):  # noqa: ANN204
        from datetime import timedelta
        self.t += timedelta(minutes=5)
        return self.t


def _catch_logged_failures() -> list[logging.LogRecord]:
    """Records of errors logged with a traceback under "bot" (the command service's "Something went wrong")."""
    failures: list[logging.LogRecord] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.exc_info:
                failures.append(record)

    logging.getLogger("bot").addHandler(Catch(level=logging.ERROR))
    logging.getLogger("bot").propagate = False
    return failures


# ----------------------------------------------------------------------------------------------------------------
# seed corpora: real fixtures plus hand-made edge cases, so fuzzing starts deep inside each format


def seeds(name: str) -> list[bytes]:
    """Starting inputs for a target."""
    cap = MAX_LEN[name]
    if name == "entry":
        files = sorted(p for p in FEEDS_DIR.iterdir() if p.suffix in (".xml", ".atom", ".rss", ".rdf", ".html"))
        out = [p.read_bytes()[:cap] for p in files]
        out += [b'<rss version="2.0"><channel><title>t</title><item><title>a &amp; b</title>'
                b"<link>http://x.org/a?utm_source=1</link><guid>g1</guid><pubDate>Mon, 27 Apr 2020 21:07:00 GMT"
                b"</pubDate></item></channel></rss>",
                b'<feed xmlns="http://www.w3.org/2005/Atom"><title>t</title><entry><id>urn:x:1</id>'
                b'<link href="https://x.org/1"/><updated>2020-04-27T21:07:00Z</updated><content type="html">'
                b"&lt;p&gt;x&lt;/p&gt;</content></entry></feed>"]
        return out
    if name == "article":
        pages = sorted(PAGES_DIR.glob("*.html"))[:6] if PAGES_DIR.is_dir() else []
        out = [p.read_bytes()[:cap] for p in pages]
        return out + [b"<html><body><article><p>" + b"word " * 40 + b"</p><p>Share this article</p></article>"
                      b"</body></html>", (FEEDS_DIR / "notafeed.html").read_bytes()[:cap]]
    if name == "opml":
        return [b'<?xml version="1.0"?><opml version="2.0"><head><title>x</title></head><body>'
                b'<outline text="a" type="rss" xmlUrl="https://example.org/feed?utm_source=x"/>'
                b'<outline text="folder"><outline text="b" xmlUrl="http://10.0.0.1/rss"/>'
                b'<outline xmlUrl="ftp://x/y"/></outline></body></opml>',
                b"<opml><body><outline xmlUrl='https://[::1]:80/a'/></body></opml>"]
    if name == "feeds_file":
        text = (ROOT / "feeds.yaml").read_bytes()
        return [text[:cap], b"defaults:\n  interval: 15m\nfeeds:\n  - url: https://example.org/feed\n"
                b"    tags: [world]\n    interval: 1h\n    enabled: false\ndigest:\n  times: ['08:00']\n"
                b"  timezone: europe/berlin\n  max_stories: 5\ntopics:\n  - name: world\n    keywords: [x]\n"]
    if name == "commands":
        return [s.encode() for s in (
            "/summary", "/summary 6h", "/summary 0h", "/summary www.example.com/x", "/summary https://x.org/a",
            "/summary <http://127.0.0.1/a>", "/settings", "/settings times 08:00,18:30", "/settings every 6h",
            "/settings max 5", "/settings timezone europe/berlin", "/settings topics world economy",
            "/settings topics all", "/addfeed https://example.org/feed?utm_source=x", "/addfeed http://[::1]/",
            "/feeds", "/removefeed 1", "/help@newsdigest_bot", "/callback t:world", "/start", "/unsubscribe")]
    if name == "discord_commands":
        def inv(command: str, flags: int, pick: int, *texts: str) -> bytes:
            return bytes((DISCORD_COMMANDS.index(command), flags, pick)) + "\x00".join(texts).encode(
                "utf-16-le", "surrogatepass")
        admin = 0x80
        return [inv("help", 0, 0), inv("subscribe", admin, 0), inv("unsubscribe", admin | 0x20, 0),
                inv("summary", 1, 0, "6h"), inv("summary", 1, 0, "0h"), inv("summary", 2, 0, "", "https://x.org/a"),
                inv("summary", 3, 0, "2d", "https://x.org/a"), inv("summary", 2, 0, "", "<http://127.0.0.1/a\ud800>"),
                inv("settings", admin, 0), inv("settings", admin | 3, 0, "", "08:00 18:30"),
                inv("settings", admin | 3, 1, "", "6"), inv("settings", admin | 3, 2, "", "99999999999999999999"),
                inv("settings", admin | 3, 3, "", "europe/berlin"), inv("settings", admin | 3, 4, "", "world economy"),
                inv("settings", admin | 3, 250, "maxx", "5"), inv("settings", admin | 2, 0, "", "5"),
                inv("settings", admin | 3 | 0x04, 1, "", "x"), inv("feeds", admin | 0x40, 0),
                inv("addfeed", admin | 0x40 | 1, 0, "https://example.org/feed?utm_source=x"),
                inv("addfeed", admin | 0x40 | 1, 0, "http://[::1]/\udcff"), inv("addfeed", admin | 0x40, 0),
                inv("removefeed", admin | 0x40 | 1, 0, "1"), inv("removefeed", admin | 0x40 | 1 | 0x04, 3, "1"),
                inv("importopml", admin | 0x40 | 1, 0, "feeds", "<opml><body><outline xmlUrl='https://x.org/f'/>"
                    "</body></opml>"),
                inv("exportopml", admin | 0x40, 0), inv("callback", admin, 0, "t:world"),
                inv("callback", admin, 0, "s:max:9"), inv("subscribe", admin | 0x10, 0),
                inv("help", 0x08, 0, "", "", "", "unknown", "value")]
    # renderers: UTF-16 text fields separated by NUL
    fields = ["Title *with* _markdown_ <b>&amp;</b>", "Summary [x](javascript:alert(1)) @everyone \ud800",
              "Outlet", "https://example.org/a_(b)?q=[1]", "😀" * 30, "```code```", "a" * 300]
    return ["\x00".join(fields).encode("utf-16-le", "surrogatepass"), "\x00".join(fields[::-1]).encode(
        "utf-16-le", "surrogatepass")]


# ----------------------------------------------------------------------------------------------------------------
# engines


def run_atheris(name: str, *, runs: int, seconds: float, seed: int, artifacts: Path) -> None:
    """Fuzz one target in this process with atheris (libFuzzer); exits the process when done."""
    import atheris

    with atheris.instrument_imports(include=["bot", "feedparser", "listparser"]):
        target = make_target(name)
    corpus = Path(tempfile.mkdtemp(prefix=f"fuzz-{name}-"))
    for i, s in enumerate(seeds(name)):
        (corpus / f"seed{i}").write_bytes(s)
    args = [sys.argv[0], str(corpus), f"-seed={seed}", f"-max_len={MAX_LEN[name]}", "-timeout=20",
            "-rss_limit_mb=3072", f"-artifact_prefix={artifacts}/{name}-", "-print_final_stats=1"]
    if runs:
        args.append(f"-runs={runs}")
    if seconds:
        args.append(f"-max_total_time={max(1, round(seconds))}")
    atheris.Setup(args, target)
    atheris.Fuzz()


_MUTATION_TOKENS = [b"<", b">", b"&", b"&amp;", b"<!ENTITY", b"]]>", b"\x00", b"\xff\xfe", b"\xed\xa0\x80",
                    b"http://", b"javascript:", b"\n", b"  ", b"*", b"`", b"%", b"9" * 20, b"/", b"@", b":"]


def _mutate(rng: random.Random, data: bytes, pool: list[bytes], cap: int) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        op = rng.randrange(6)
        pos = rng.randint(0, len(b))
        if op == 0 and b:
            b[min(pos, len(b) - 1)] = rng.randrange(256)
        elif op == 1:
            b[pos:pos] = rng.choice(_MUTATION_TOKENS)
        elif op == 2 and b:
            del b[pos:pos + rng.randint(1, 64)]
        elif op == 3 and b:
            start = rng.randrange(len(b))
            b[pos:pos] = b[start:start + rng.randint(1, 256)]
        elif op == 4:
            other = rng.choice(pool)
            start = rng.randrange(len(other) + 1)
            b[pos:pos] = other[start:start + rng.randint(1, 512)]
        else:
            b[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    return bytes(b[:cap])


def run_random(name: str, *, runs: int, seconds: float, seed: int, artifacts: Path) -> int:
    """Seeded mutation fuzzing without coverage feedback (the fallback engine); returns the exit status."""
    target = make_target(name)
    rng = random.Random(seed)
    pool = seeds(name)
    deadline = time.monotonic() + seconds if seconds else float("inf")
    done = 0
    start = time.monotonic()
    while (not runs or done < runs) and time.monotonic() < deadline:
        data = _mutate(rng, rng.choice(pool), pool, MAX_LEN[name])
        try:
            target(data)
        except Exception:
            import traceback
            path = artifacts / f"{name}-crash-{done}"
            path.write_bytes(data)
            print("=== Uncaught Python exception: ===", file=sys.stderr)
            traceback.print_exc()
            print(f"stat::number_of_executed_units: {done + 1}\nTest unit written to {path}", file=sys.stderr)
            return 1
        done += 1
        if rng.random() < 0.05:
            pool.append(data)
    print(f"stat::number_of_executed_units: {done}\nDone {done} runs in {time.monotonic() - start:.0f} second(s)",
          file=sys.stderr)
    return 0


# ----------------------------------------------------------------------------------------------------------------
# driver: one subprocess per target, results parsed from libFuzzer's final stats


def fuzz_all(targets: list[str], *, runs: int, seconds: float, seed: int, engine: str, artifacts: Path,
             timeout: float | None = None) -> list[dict]:
    """Fuzz each target in its own process; returns [{target, executions, seconds, crashed, output}]."""
    results = []
    for name in targets:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--runs", str(runs),
               "--seconds", str(seconds), "--seed", str(seed), "--engine", engine, "--artifacts", str(artifacts)]
        t0 = time.monotonic()
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", env=env,
                                  timeout=timeout or (seconds * 3 + 120 if seconds else 600))
            out, rc = proc.stdout + proc.stderr, proc.returncode
        except subprocess.TimeoutExpired as exc:
            out = f"{exc.stdout or ''}{exc.stderr or ''}\nhung: killed after {exc.timeout} s"
            rc = -9
        m = re.findall(r"stat::number_of_executed_units: (\d+)", out)
        crashed = rc != 0
        results.append({"target": name, "executions": int(m[-1]) if m else 0,
                        "seconds": round(time.monotonic() - t0, 1), "crashed": crashed,
                        "output": out if crashed else ""})
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=0, help="fuzzing time per target (0: until --runs)")
    p.add_argument("--runs", type=int, default=0, help="inputs per target (0: until --seconds)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--targets", default=",".join(TARGETS))
    p.add_argument("--engine", choices=("atheris", "random"), default="atheris")
    p.add_argument("--artifacts", type=Path, default=None, help="where crashing inputs are written")
    p.add_argument("--child", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if not a.seconds and not a.runs:
        a.seconds = 60
    artifacts = a.artifacts or Path(tempfile.mkdtemp(prefix="fuzz-artifacts-"))
    artifacts.mkdir(parents=True, exist_ok=True)
    if a.child:
        if a.engine == "atheris":
            run_atheris(a.child, runs=a.runs, seconds=a.seconds, seed=a.seed, artifacts=artifacts)
            return 0
        return run_random(a.child, runs=a.runs, seconds=a.seconds, seed=a.seed, artifacts=artifacts)
    targets = [t.strip() for t in a.targets.split(",") if t.strip()]
    results = fuzz_all(targets, runs=a.runs, seconds=a.seconds, seed=a.seed, engine=a.engine, artifacts=artifacts)
    for r in results:
        status = "CRASH" if r["crashed"] else "ok"
        print(f"{r['target']:16} {r['executions']:>9} executions in {r['seconds']:>6} s  {status}")
        if r["crashed"]:
            print(r["output"][-6000:])
    print(f"total {sum(r['executions'] for r in results)} executions; crashing inputs under {artifacts}")
    return 1 if any(r["crashed"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())

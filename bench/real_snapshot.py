"""What a new user sees: one real moment of real news feeds, served locally, through the real CLI end to end.

Takes one snapshot folder of the evaluation tarball (e.g. `news_outlets/gesab001_headlines/2021-09-16T2320Z`),
shifts every item's date so the newest item is now (order and gaps kept), points every item's link at a local
article page built from the item's own title and description, serves feeds and pages on 127.0.0.1 (an ephemeral
port), runs `newsdigest poll --once --json` against a fresh SQLite file (again while any article is left
unprocessed; `poll --once` fetches every waiting page, so one round is the normal case) and `newsdigest digest
--since 48h --json`, then reads the database to list every story with more than one article. Nothing leaves the loopback.
Feeds are fetched concurrently, so article ids (the order stories form in) vary and two runs can differ a little.
Usage:  python bench/real_snapshot.py --data ../shared/data/feeds.tar.xz
            --snapshot news_outlets/gesab001_headlines/2021-09-16T2320Z [--out DIR] [--json]
"""

from __future__ import annotations

import argparse
import email.utils
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import feedparser
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.pipeline.article import html_to_text  # noqa: E402

FEED_SUFFIXES = (".xml", ".rss", ".atom", ".rdf")
_ITEM_RE = re.compile(rb"<(item|entry)\b[^>]*>.*?</\1\s*>", re.S)
_DATE_TAGS = rb"pubDate|lastBuildDate|date|published|updated|issued|modified|created"
_DATE_RE = re.compile(rb"<((?:[\w-]+:)?(?:" + _DATE_TAGS + rb"))(\s[^>]*)?>(\s*)(?:<!\[CDATA\[)?(.*?)(?:\]\]>)?(\s*)"
                      rb"</\1\s*>", re.S)
_RSS_LINK_RE = re.compile(rb"<link\s*>.*?</link\s*>", re.S)
_ORIGLINK_RE = re.compile(rb"(<feedburner:origLink\b[^>]*>).*?(</feedburner:origLink\s*>)", re.S)
_HREF_RE = re.compile(rb"""(\shref\s*=\s*)(["'])[^"']*\2""")
_REL_RE = re.compile(rb"""\srel\s*=\s*(["'])([^"']*)\1""")
_SNAPSHOT_TIME_RE = re.compile(r"(\d{4}-\d{2}-\d{2})T(\d{2})(\d{2})Z")


# ---------------------------------------------------------------------------------------------- the snapshot


def read_snapshot(data: Path, snapshot: str) -> dict[str, bytes]:
    """Feed files directly inside `snapshot` in the tarball, by file stem (the outlet's name)."""
    folder = snapshot.strip("/") + "/"
    out: dict[str, bytes] = {}
    with tarfile.open(data, "r:*") as tar:
        for member in tar:
            name = member.name.lstrip("./")
            if not member.isfile() or not name.lower().endswith(FEED_SUFFIXES):
                continue
            # The tarball's root folder is rss_feeds/; accept the snapshot path with or without it.
            head, _, rest = name.partition(folder)
            if not rest or "/" in rest or head not in ("", "rss_feeds/"):
                continue
            f = tar.extractfile(member)
            if f is not None:
                out[Path(rest).stem] = f.read()
    if not out:
        raise SystemExit(f"no feed files under {snapshot!r} in {data}")
    return dict(sorted(out.items()))


def snapshot_time(snapshot: str) -> datetime | None:
    """The moment a snapshot folder is named after (`2021-09-16T2320Z`), if it is named after one."""
    m = _SNAPSHOT_TIME_RE.search(snapshot)
    if not m:
        return None
    return datetime.fromisoformat(f"{m.group(1)}T{m.group(2)}:{m.group(3)}:00+00:00")


# ------------------------------------------------------------------------------------------ dates and links


def parse_date(raw: bytes) -> tuple[datetime, str] | None:
    """A feed date and its style ("rfc822" or "iso"); None when it is not a date we can shift faithfully."""
    text = raw.decode("utf-8", "replace").strip()
    if not text:
        return None
    try:
        dt = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        dt = None
    if dt is not None:
        return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).astimezone(UTC), "rfc822"
    try:
        dt = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        return None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).astimezone(UTC), "iso"


def format_date(dt: datetime, style: str) -> bytes:
    """`dt` written in the style it was read in."""
    dt = dt.astimezone(UTC)
    if style == "rfc822":
        return email.utils.format_datetime(dt, usegmt=True).encode()
    return dt.isoformat(timespec="seconds").replace("+00:00", "Z").encode()


def _date_rank(tag: bytes) -> int:
    # The publication date first, as the entry stage reads it (published, then updated).
    local = tag.rsplit(b":", 1)[-1]
    return 0 if local in (b"pubDate", b"published", b"date", b"issued", b"created") else 1


def item_dates(body: bytes) -> list[datetime]:
    """The publication date of each dated item/entry of a feed document (its update date when it has no other)."""
    out = []
    for item in _ITEM_RE.finditer(body):
        found = [(_date_rank(m.group(1)), parsed[0]) for m in _DATE_RE.finditer(item.group(0))
                 if (parsed := parse_date(m.group(4)))]
        if found:
            out.append(min(found, key=lambda f: f[0])[1])
    return out


def time_shift(bodies: list[bytes], now: datetime, *, moment: datetime | None = None) -> timedelta:
    """The one shift (whole seconds) that moves the newest item to `now`, for every feed of a snapshot alike.

    Items dated after the snapshot's own moment (a wrong time zone at the source) do not set the newest one.
    """
    dates = [d for b in bodies for d in item_dates(b)]
    if not dates:
        return timedelta(0)
    honest = [d for d in dates if moment is None or d <= moment]
    newest = max(honest or dates)
    return now.replace(microsecond=0) - newest.replace(microsecond=0)


def _shift_dates(doc: bytes, shift: timedelta) -> bytes:
    def sub(m: re.Match[bytes]) -> bytes:
        parsed = parse_date(m.group(4))
        if parsed is None:
            return m.group(0)
        tag, attrs = m.group(1), m.group(2) or b""
        return b"<%s%s>%s</%s>" % (tag, attrs, format_date(parsed[0] + shift, parsed[1]), tag)

    return _DATE_RE.sub(sub, doc)


def _relink_rss(item: bytes, url: bytes) -> bytes:
    item = _ORIGLINK_RE.sub(lambda m: m.group(1) + url + m.group(2), item)
    new, n = _RSS_LINK_RE.subn(lambda _: b"<link>" + url + b"</link>", item)
    if n:
        return new
    close = item.rfind(b"</")
    return item[:close] + b"<link>" + url + b"</link>" + item[close:]


def _relink_atom(entry: bytes, url: bytes) -> bytes:
    found = False

    def sub(m: re.Match[bytes]) -> bytes:
        nonlocal found
        tag = m.group(0)
        rel = _REL_RE.search(tag)
        if rel and rel.group(2).strip() not in (b"alternate", b""):
            return tag
        found = True
        return _HREF_RE.sub(lambda h: h.group(1) + b'"' + url + b'"', tag, count=1)

    entry = re.sub(rb"<link\b[^>]*>", sub, entry)
    if found:
        return entry
    close = entry.rfind(b"</")
    return entry[:close] + b'<link rel="alternate" href="' + url + b'"/>' + entry[close:]


def rewrite_feed(body: bytes, *, shift: timedelta, base_url: str, name: str) -> tuple[bytes, list[str]]:
    """The feed with every date moved by `shift` and item i's link set to `{base_url}/article/{name}/{i}`.

    Works on the raw bytes, so the document's encoding, markup and GUIDs stay as the outlet wrote them.
    """
    links: list[str] = []

    def relink(m: re.Match[bytes]) -> bytes:
        url = f"{base_url}/article/{quote(name)}/{len(links)}"
        links.append(url)
        item = m.group(0)
        return _relink_atom(item, url.encode()) if m.group(1) == b"entry" else _relink_rss(item, url.encode())

    return _ITEM_RE.sub(relink, _shift_dates(body, shift)), links


def article_page(title: str, description: str) -> bytes:
    """A plain article page holding the item's own title and text, for the extractor to find."""
    paragraphs = [p for p in html_to_text(description).split("\n") if p.strip()]
    body = "\n".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
    t = html.escape(title)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{t}</title></head>\n'
            f"<body><article><h1>{t}</h1>\n{body}\n</article></body></html>\n").encode()


def pages_for(feed: bytes) -> dict[str, bytes]:
    """Article page per local link of a rewritten feed, built from what the feed itself says of the item."""
    pages = {}
    for e in feedparser.parse(feed).entries:
        link = e.get("feedburner_origlink") or e.get("link")
        if not link:
            continue
        content = max((c.get("value", "") for c in e.get("content", [])), key=len, default="")
        summary = e.get("summary", "")
        pages[link] = article_page(e.get("title", ""), content if len(content) > len(summary) else summary)
    return pages


# ---------------------------------------------------------------------------------------------- the server


@dataclass
class LocalSite:
    """Feeds and article pages served on 127.0.0.1 at an ephemeral port, from a path -> (type, body) table."""

    routes: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    base_url: str = ""
    feed_urls: dict[str, str] = field(default_factory=dict)
    links: dict[str, list[str]] = field(default_factory=dict)
    shift: timedelta = timedelta(0)

    def add_snapshot(self, feeds: dict[str, bytes], *, now: datetime, moment: datetime | None = None) -> None:
        """Rewrite and publish every feed of a snapshot, with one article page per item."""
        self.shift = time_shift(list(feeds.values()), now, moment=moment)
        for name, body in feeds.items():
            new, links = rewrite_feed(body, shift=self.shift, base_url=self.base_url, name=name)
            path = f"/feeds/{quote(name)}.xml"
            self.routes[path] = ("application/xml", new)
            self.feed_urls[name] = self.base_url + path
            self.links[name] = links
            for url, page in pages_for(new).items():
                if url.startswith(self.base_url + "/"):
                    self.routes[url[len(self.base_url):]] = ("text/html; charset=utf-8", page)


@contextmanager
def serve(site: LocalSite) -> Iterator[LocalSite]:
    """Serve `site` on 127.0.0.1 (ephemeral port) in a thread for the duration of the block."""
    routes = site.routes

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            hit = routes.get(self.path.split("?", 1)[0])
            if hit is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", hit[0])
            self.send_header("Content-Length", str(len(hit[1])))
            self.end_headers()
            self.wfile.write(hit[1])

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    site.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="real-snapshot-http", daemon=True)
    thread.start()
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


# --------------------------------------------------------------------------------------------- the CLI run


def feeds_yaml(feed_urls: dict[str, str]) -> str:
    """A feeds file listing the local feeds, with the shipped file's topics and digest defaults (what a user gets)."""
    shipped = yaml.safe_load((ROOT / "feeds.yaml").read_text(encoding="utf-8")) or {}
    doc: dict[str, Any] = {"feeds": [{"url": url, "name": name} for name, url in feed_urls.items()]}
    for key in ("defaults", "topics", "digest"):
        if shipped.get(key) is not None:
            doc[key] = shipped[key]
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


def cli_command() -> list[str]:
    """The installed `newsdigest` entry point of the repo's venv, else this interpreter's `-m bot`."""
    exe = ROOT / ".venv" / "bin" / "newsdigest"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "bot"]


def run_cli(args: list[str], env: dict[str, str], cwd: Path, log: Path, timeout: float) -> tuple[Any, float]:
    """Run one `newsdigest` command; its JSON stdout, and seconds taken. Its log goes to `log`."""
    t = time.perf_counter()
    with log.open("ab") as err:
        err.write(f"\n$ newsdigest {' '.join(args)}\n".encode())
        err.flush()
        proc = subprocess.run(cli_command() + args, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=err,
                              timeout=timeout, check=False)
    took = time.perf_counter() - t
    if proc.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise SystemExit(f"newsdigest {' '.join(args)} exited {proc.returncode}; log tail:\n{tail}")
    return json.loads(proc.stdout), took


def read_database(db: Path) -> dict[str, Any]:
    """Counts, every article and every story with more than one article, read-only from the SQLite file."""
    from sqlalchemy import create_engine, func, select

    from bot.storage.tables import articles, feeds, stories

    engine = create_engine(f"sqlite:///file:{db}?mode=ro&uri=true")
    try:
        with engine.connect() as conn:
            n_articles = conn.scalar(select(func.count()).select_from(articles))
            n_stories = conn.scalar(select(func.count()).select_from(stories))
            rows = conn.execute(
                select(articles.c.id, articles.c.story_id, articles.c.title, articles.c.story_reason,
                       articles.c.story_score, articles.c.topic_score, articles.c.topics, articles.c.text_source,
                       articles.c.url, articles.c.published_at, feeds.c.name.label("outlet"))
                .select_from(articles.outerjoin(feeds, articles.c.feed_id == feeds.c.id))
                .order_by(articles.c.story_id, articles.c.published_at, articles.c.id)).mappings().all()
            story_rows = {r.id: r for r in conn.execute(
                select(stories.c.id, stories.c.title, stories.c.outlet_count, stories.c.article_count,
                       stories.c.topic_score, stories.c.summary)).mappings()}
    finally:
        engine.dispose()

    def article(r: Any) -> dict[str, Any]:
        topics = r.topics or {}
        return {"id": r.id, "outlet": r.outlet, "title": r.title, "story_id": r.story_id,
                "story_reason": r.story_reason,
                "story_score": None if r.story_score is None else round(r.story_score, 4),
                "topic_score": None if r.topic_score is None else round(r.topic_score, 4),
                "topics": {k: round(v, 4) if isinstance(v, float) else v for k, v in topics.items()}
                if isinstance(topics, dict) else topics,
                "text_source": r.text_source, "url": r.url,
                "published_at": r.published_at.isoformat() if r.published_at else None}

    all_articles = [article(r) for r in rows]
    members: dict[int, list[dict[str, Any]]] = {}
    for a in all_articles:
        if a["story_id"] is not None:
            members.setdefault(a["story_id"], []).append(a)
    multi = []
    for sid, group in members.items():
        if len(group) < 2:
            continue
        s = story_rows.get(sid)
        multi.append({"id": sid, "title": s.title if s else "", "outlet_count": s.outlet_count if s else None,
                      "distinct_outlets": len({a["outlet"] for a in group}), "article_count": len(group),
                      "summary": s.summary if s else None,
                      "members": [{k: a[k] for k in ("id", "outlet", "title", "story_reason", "story_score",
                                                     "topic_score", "topics")} for a in group]})
    multi.sort(key=lambda s: (-s["distinct_outlets"], -s["article_count"], s["id"]))
    return {"articles": n_articles, "stories": n_stories, "multi_article_stories": multi,
            "all_articles": all_articles}


def unprocessed(db: Path) -> dict[str, int]:
    """Articles not processed yet, and those of them still waiting for their page."""
    from sqlalchemy import create_engine, func, select

    from bot.storage.tables import articles

    engine = create_engine(f"sqlite:///file:{db}?mode=ro&uri=true")
    try:
        with engine.connect() as conn:
            todo = conn.scalar(select(func.count()).where(articles.c.processed_at.is_(None)))
            pending = conn.scalar(select(func.count()).where(articles.c.text_source == "pending"))
    finally:
        engine.dispose()
    return {"unprocessed": todo, "pending_text": pending}


def code_state() -> dict[str, Any]:
    """The commit the CLI ran from and the files that differ from it (the run measures the working tree)."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30,
                                  check=False).stdout.strip()
        except OSError:
            return ""

    changed = [line[3:] for line in git("status", "--porcelain", "--", "bot", "summarizer").splitlines()]
    return {"commit": git("rev-parse", "--short", "HEAD"), "changed": changed}


def run_snapshot(data: Path, snapshot: str, workdir: Path, *, since: str = "48h", max_rounds: int = 10,
                 timeout: float = 1800) -> dict[str, Any]:
    """Serve one snapshot locally, poll and process it with the real CLI, and read what came out."""
    code = code_state()
    feeds = read_snapshot(data, snapshot)
    db = workdir / "newsdigest.db"
    for stale in (db, workdir / "cli.log"):
        stale.unlink(missing_ok=True)
    site = LocalSite()
    with serve(site):
        site.add_snapshot(feeds, now=datetime.now(UTC), moment=snapshot_time(snapshot))
        feeds_file = workdir / "feeds.yaml"
        feeds_file.write_text(feeds_yaml(site.feed_urls), encoding="utf-8")
        env = dict(os.environ, NEWSDIGEST_DATABASE_URL=f"sqlite:///{db}", NEWSDIGEST_FEEDS_FILE=str(feeds_file),
                   NEWSDIGEST_ALLOW_PRIVATE_URLS="1", NEWSDIGEST_LOG_LEVEL="INFO",
                   # Models ship offline; make sure nothing tries the hub.
                   HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        env.pop("TELEGRAM_BOT_TOKEN", None)
        env.pop("DISCORD_BOT_TOKEN", None)
        log = workdir / "cli.log"
        # One `poll --once` fetches at most a cycle's worth of article pages (as each cycle of `newsdigest run`
        # does); poll again, as the service would on its next ticks, until every article is processed.
        rounds = []
        while len(rounds) < max_rounds:
            poll, poll_s = run_cli(["poll", "--once", "--json"], env, workdir, log, timeout)
            rounds.append({**unprocessed(db), "poll": poll, "seconds": round(poll_s, 1)})
            if rounds[-1]["unprocessed"] == 0 or (len(rounds) > 1 and rounds[-1]["unprocessed"]
                                                  >= rounds[-2]["unprocessed"]):
                break
        digest, digest_s = run_cli(["digest", "--since", since, "--json"], env, workdir, log, timeout)
    db_report = read_database(db)
    items = digest.get("stories", [])
    return {
        "snapshot": snapshot, "code": code, "feeds": list(feeds), "time_shift_s": int(site.shift.total_seconds()),
        "items_served": sum(len(v) for v in site.links.values()),
        "poll": rounds[0]["poll"], "poll_rounds": rounds, "poll_s": round(sum(r["seconds"] for r in rounds), 1),
        "digest_s": round(digest_s, 1),
        "counts": {"articles": db_report["articles"], "stories": db_report["stories"],
                   "multi_article_stories": len(db_report["multi_article_stories"]),
                   "digest_items": len(items),
                   "text_source": dict(Counter(a["text_source"] for a in db_report["all_articles"])),
                   # Every link should be a local page: anything else would have meant the network.
                   "links_not_local": sum(not (a["url"] or "").startswith(site.base_url + "/")
                                          for a in db_report["all_articles"])},
        "multi_article_stories": db_report["multi_article_stories"],
        "digest": {"since": since, "titles": [s["title"] for s in items], "stories": items},
        "articles": db_report["all_articles"],
    }


# ------------------------------------------------------------------------------------------------ the report


def _scores(topics: Any) -> str:
    if not isinstance(topics, dict) or not topics:
        return "-"
    return " ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(topics.items()))


def text_report(r: dict[str, Any]) -> str:
    """The readable report: counts, every multi-article story with its members, the digest."""
    c, p = r["counts"], r["poll"]
    code = r["code"]
    lines = [f"code: {code['commit']}" + (f" + uncommitted {', '.join(code['changed'])}" if code["changed"] else ""),
             f"snapshot {r['snapshot']}: {len(r['feeds'])} feeds ({', '.join(r['feeds'])}), "
             f"{r['items_served']} items served, dates shifted by {r['time_shift_s'] / 86400:.1f} days",
             f"poll --once: {p.get('fetched')} feeds fetched, {p.get('new_articles')} new articles, "
             f"{len(p.get('failed', []))} failed; {len(r['poll_rounds'])} round(s) until all processed "
             f"(unprocessed after each: {', '.join(str(x['unprocessed']) for x in r['poll_rounds'])}), "
             f"{r['poll_s']} s in all; digest: {r['digest_s']} s",
             f"{c['articles']} articles, {c['stories']} stories, {c['multi_article_stories']} with more than one "
             f"article, {c['digest_items']} digest items; text from {c['text_source']}; "
             f"{c['links_not_local']} links not local", ""]
    for i, rnd in enumerate(r["poll_rounds"], 1):
        for f in rnd["poll"].get("failed", []):
            lines.append(f"  round {i} failed: {f.get('url')}: {f.get('error')}")
    lines.append("== stories with more than one article")
    for s in r["multi_article_stories"]:
        lines.append(f"story {s['id']}: {s['article_count']} articles, {s['distinct_outlets']} outlets "
                     f"(outlet_count {s['outlet_count']})")
        for m in s["members"]:
            score = "-" if m["story_score"] is None else f"{m['story_score']:.3f}"
            lines.append(f"  - [{m['outlet']}] {m['title']}")
            lines.append(f"      {m['story_reason']} {score}; {_scores(m['topics'])}")
    lines.append("")
    lines.append(f"== digest (--since {r['digest']['since']})")
    for i, s in enumerate(r["digest"]["stories"], 1):
        outlets = ", ".join(dict.fromkeys(lk["outlet"] for lk in s.get("links", [])))
        lines.append(f"{i}. {s['title']}  (score {s['score']}, {s['outlet_count']} outlets: {outlets})")
        if s.get("summary"):
            lines.append(f"   {s['summary']}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="feeds.tar.xz")
    ap.add_argument("--snapshot", default="news_outlets/gesab001_headlines/2021-09-16T2320Z")
    ap.add_argument("--out", type=Path, default=None, help="keep feeds.yaml, the database and the CLI log here")
    ap.add_argument("--since", default="48h", help="digest window")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the report")
    args = ap.parse_args()
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        workdir = args.out.resolve()
    else:
        workdir = Path(tempfile.mkdtemp(prefix="real_snapshot_"))
    try:
        report = run_snapshot(args.data, args.snapshot, workdir, since=args.since)
        if args.out:
            (workdir / "report.json").write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    finally:
        if not args.out:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        print(text_report(report))


if __name__ == "__main__":
    main()

"""The crash campaign (issue 10): `newsdigest run` killed with SIGKILL at random points, restarted, checked.

What is injected: the real service (`bot.cli.main(["run"])` through tests/fakes/scaled_service.py, its waits
and leases divided by `scale`: at 60, a feed's 60 s minimum interval is 1 s, a feed claim's lease 5 s, an outbox
claim's lease 2 s, the poll and scheduler ticks 0.5 s) runs against a SQLite file, a local feed server (feeds growing between runs,
some items only a teaser whose article page must be fetched) and the fake Telegram Bot API. Each iteration
publishes 1-3 new events (each on 1-3 feeds), makes the digests of 3 of 10 chats due now (the chats sent
/subscribe to the service before the first iteration; the rig sets next_due_at in the database, as `digest_now`
does), starts the service and kills its whole process group (parse workers included) with
SIGKILL: one kill per iteration. A seeded RNG picks, once per iteration, the stage to hit (uniformly among the
five below, or in a given order) and when:

    poll     the feed server sees a feed request of this run, then 0-0.6 s later
    pages    the feed server sees an article-page request of this run, then 0-0.5 s later
    process  an article of this run is marked processed (topic, story, summary), then 0-1.5 s later
    deliver  the fake Telegram API receives a message of this run, then 0-1.5 s later (each send takes 0.2 s)
    any      0-12 s after the start, whatever runs then (start-up, migration, model loading included)

A stage whose trigger does not come within `trigger_timeout_s` is killed then (counted as `untriggered`).
After the last kill the service runs without faults until everything published is stored and processed and
nothing is due or pending, answers /help, and stops on SIGTERM with status 0.

Invariants (`check_invariants`, on the SQLite file and what the fakes saw):
  items_stored_once        every item published is stored exactly once (by link), and nothing else is
  article_in_one_story     every processed article is in at most one story that exists; no story is left
                           without members; each story's article_count matches its members, and each has a
                           summary written after its last change (summary_method set)
  parts_delivered_once     every outbox part is sent, in order per chat; the only repeat a chat sees is the part
                           that was in flight (received, unconfirmed) when a kill came, at most once per such kill
  story_once_per_version   a story goes to a chat in at most as many digests as it has versions (the digests
                           queued before a kill and after the restart do not repeat it)
  nothing_due_left         no outbox part pending, failed or cancelled; no active subscription due
  service_running          after the last restart the service polls, answers a command and stops cleanly

Found by it: a kill between an article batch (outcomes committed) and its story summaries left those stories
without a summary for good (fixed in bot/processing.py: stories owed a summary are summarized at start).
"""

from __future__ import annotations

import asyncio
import html
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from tests.fakes.feed_server import FeedServer
from tests.fakes.telegram_api import TOKEN, FakeTelegramAPI

ROOT = Path(__file__).resolve().parent.parent.parent
STAGES = ("poll", "pages", "process", "deliver", "any")
# Seconds after the trigger within which the kill lands (uniform), per stage.
KILL_WINDOW_S = {"poll": 0.6, "pages": 0.5, "process": 1.5, "deliver": 1.5, "any": 12.0}
CHATS = tuple(range(9001, 9011))
# The fake Bot API answers a send after this long (a real round trip), so a kill can find sends in flight.
SEND_LATENCY_S = 0.2
REQUESTS_PER_RUN = 3
COMMAND_CHAT = 9100

_PAIRS = [("Russia", "Ukraine"), ("China", "Taiwan"), ("Iran", "Israel"), ("India", "Pakistan"),
          ("North Korea", "South Korea"), ("Armenia", "Azerbaijan"), ("Serbia", "Kosovo"), ("Ethiopia", "Sudan"),
          ("Turkey", "Syria"), ("Venezuela", "Colombia"), ("Japan", "China"), ("Egypt", "Libya"),
          ("Philippines", "China"), ("Saudi Arabia", "Yemen"), ("Poland", "Belarus"), ("Morocco", "Algeria")]
_ISSUES = ["a disputed border", "a ceasefire", "missile tests", "sanctions", "a prisoner exchange",
           "troop deployments", "a naval standoff", "refugee flows", "a peace plan", "gas supplies",
           "airspace violations", "a trade embargo"]
_VENUES = ["Geneva", "Vienna", "Doha", "Istanbul", "New York", "Brussels", "Oslo", "Riyadh", "Ankara", "Cairo"]
_HEADLINES = ["{a} and {b} hold crisis talks on {issue} in {venue}",
              "{a} warns {b} over {issue} as diplomats meet in {venue}",
              "Talks in {venue}: {a} and {b} clash over {issue}"]


_OFFICIALS = ["Petrov", "Haddad", "Okafor", "Lindqvist", "Tanaka", "Morales", "Kaya", "Novak", "Rahman", "Dubois",
              "Ivanova", "Mensah", "Castillo", "Yilmaz", "Sato", "Kowalski", "Nasser", "Ferreira", "Osei", "Bauer"]
_SENTENCES = [
    "Foreign ministers of {a} and {b} met in {venue} for talks on {issue}, the first such meeting since {month}.",
    "{a}'s envoy {o1} said {n1} proposals had been tabled and accused {b} of stalling on {issue}.",
    "{b}'s defence ministry said {n2} troops had been moved closer to the frontier overnight.",
    "The United Nations Security Council will hold an emergency session on {issue} on {day}, diplomats said.",
    "Mediator {o2} told reporters in {venue} that a written plan on {issue} would be presented by {day}.",
    "Sanctions on {n3} officials from {b} could follow if the crisis escalates, the European Union warned.",
    "Aid agencies said {n4} civilians had fled border villages since {month} as tensions over {issue} grew.",
    "{o3}, an opposition leader in {a}, called the talks on {issue} a surrender and demanded a parliamentary vote.",
    "NATO allies urged {a} and {b} to respect international law and return to the negotiating table.",
    "Analysts in {venue} said the dispute over {issue} threatens the truce signed in {month} between {a} and {b}.",
]
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October"]
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]


def _event_sentences(rng: random.Random, a: str, b: str, issue: str, venue: str) -> list[str]:
    """The facts of one event, as sentences every outlet draws on (names and numbers differ between events)."""
    o1, o2, o3 = rng.sample(_OFFICIALS, 3)
    fill = dict(a=a, b=b, issue=issue, venue=venue, o1=o1, o2=o2, o3=o3, month=rng.choice(_MONTHS),
                day=rng.choice(_DAYS), n1=rng.randint(3, 19), n2=rng.randint(2, 90) * 100,
                n3=rng.randint(5, 60), n4=rng.randint(2, 40) * 1000)
    return [t.format(**fill) for t in _SENTENCES]


@dataclass
class Item:
    """One published feed item."""

    feed: int
    n: int
    link: str
    title: str
    text: str
    teaser_only: bool
    published: datetime


@dataclass
class World:
    """The news: feeds on the feed server that grow between runs, and their article pages."""

    server: FeedServer
    rng: random.Random
    feeds: int = 5
    items: list[Item] = field(default_factory=list)
    events: int = 0

    def __post_init__(self) -> None:
        for f in range(self.feeds):
            self.server.files[self.feed_path(f)] = self._rss(f)

    def feed_path(self, f: int) -> str:
        """Path of feed `f` on the server."""
        return f"/crash/feed{f}.xml"

    def publish(self, events: int) -> list[Item]:
        """`events` new events, each reported by 1-3 feeds (some only as a teaser with a page to fetch)."""
        new = []
        for _ in range(events):
            self.events += 1
            a, b = self.rng.choice(_PAIRS)
            issue, venue = self.rng.choice(_ISSUES), self.rng.choice(_VENUES)
            facts = _event_sentences(self.rng, a, b, issue, venue)
            for f in self.rng.sample(range(self.feeds), self.rng.randint(1, 3)):
                # Each outlet's write-up: the lead, then the other facts in its own order (150+ words: a feed
                # item that carries it whole needs no page; a teaser-only one does).
                text = " ".join([facts[0], *self.rng.sample(facts[1:], len(facts) - 1)])
                n = sum(1 for i in self.items if i.feed == f)
                title = self.rng.choice(_HEADLINES).format(a=a, b=b, issue=issue, venue=venue)
                item = Item(feed=f, n=n, link=self.server.url(f"/crash/a/{f}/{n}.html"), title=title, text=text,
                            teaser_only=self.rng.random() < 0.3, published=datetime.now(UTC))
                self.items.append(item)
                new.append(item)
                self.server.files[f"/crash/a/{f}/{n}.html"] = _page(item)
        for f in {i.feed for i in new}:
            self.server.files[self.feed_path(f)] = self._rss(f)
        return new

    def _rss(self, f: int) -> bytes:
        body = []
        for it in sorted((i for i in self.items if i.feed == f), key=lambda i: -i.n):
            desc = f"{it.text.split('. ')[0]}. Read more..." if it.teaser_only else it.text
            body.append(f"<item><title>{html.escape(it.title)}</title><link>{html.escape(it.link)}</link>"
                        f"<guid isPermaLink='true'>{html.escape(it.link)}</guid>"
                        f"<pubDate>{format_datetime(it.published)}</pubDate>"
                        f"<description>{html.escape(desc)}</description></item>")
        return (f'<?xml version="1.0"?><rss version="2.0"><channel><title>Crash Outlet {f}</title>'
                f"<link>{self.server.base}/</link>{''.join(body)}</channel></rss>").encode()


def _page(item: Item) -> bytes:
    paras = "".join(f"<p>{html.escape(s.strip())}.</p>" for s in item.text.split(". ") if s.strip())
    return (f"<!doctype html><html><head><title>{html.escape(item.title)}</title></head><body>"
            f"<nav><a href='/'>Home</a> <a href='/world'>World</a></nav><article><h1>{html.escape(item.title)}</h1>"
            f"{paras}</article><footer>Copyright Crash Outlet {item.feed}</footer></body></html>").encode()


class Service:
    """The service as a subprocess in its own process group (so a kill takes its parse workers too)."""

    def __init__(self, env: dict[str, str], log_path: Path, scale: float) -> None:
        self.env, self.log_path, self.scale = env, log_path, scale
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0

    def start(self) -> None:
        """Start `newsdigest run` (time-scaled)."""
        with self.log_path.open("a") as log:
            log.write(f"\n===== start at {time.time():.3f} =====\n")
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.fakes.scaled_service", "--scale", str(self.scale)],
                env=self.env, cwd=self.log_path.parent, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.started_at = time.monotonic()

    def alive(self) -> bool:
        """True while the process runs."""
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> int | None:
        """SIGKILL the whole process group; returns the exit status."""
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        rc = self.proc.wait(timeout=30)
        self.proc = None
        return rc

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM and wait; returns the exit status (SIGKILL after the timeout)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            return -9
        finally:
            if self.proc is not None and self.proc.poll() is not None:
                with_group_killed(self.proc.pid)
        self.proc = None
        return rc


def with_group_killed(pgid: int) -> None:
    """Kill what is left of a process group (nothing, normally)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


@dataclass
class Kill:
    """One injected crash."""

    iteration: int
    stage: str
    triggered: bool
    at_s: float  # seconds after the start
    in_flight: list[tuple[int, str]] = field(default_factory=list)  # (chat, text) received but unconfirmed


def db_query(db: Path, sql: str, args: tuple = ()) -> list[tuple]:
    """A read on the campaign's SQLite file (a separate connection; WAL lets it read beside the service)."""
    conn = sqlite3.connect(db, timeout=30)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


class Campaign:
    """Runs the iterations and the final fault-free run; `run()` returns the JSON summary."""

    def __init__(self, workdir: Path, *, iterations: int, seed: int, scale: float = 60.0,
                 stages: tuple[str, ...] = STAGES, schedule: tuple[str, ...] = (), trigger_timeout_s: float = 25.0,
                 settle_timeout_s: float = 180.0, log: Callable[[str], None] = lambda s: None) -> None:
        self.workdir, self.iterations, self.seed, self.scale = workdir, iterations, seed, scale
        self.stages, self.trigger_timeout_s, self.settle_timeout_s = stages, trigger_timeout_s, settle_timeout_s
        self.schedule = schedule  # the stage of each iteration, in order (default: drawn from `stages`)
        self.rng = random.Random(seed)
        self.db = workdir / "crash.db"
        self.kills: list[Kill] = []
        self.requests: list[tuple[int, datetime]] = []
        self.sent_base = 0  # messages the fake Bot API got before the campaign (replies to /subscribe)
        self.explained: Counter[int] = Counter()  # per chat: received messages put down to sends in flight at kills
        self.log = log
        self.final: dict[str, Any] = {}

    async def run(self) -> dict[str, Any]:
        """Set up, inject the crashes, run to completion, check; returns the summary."""
        started = time.monotonic()
        server = FeedServer().start()
        try:
            async with FakeTelegramAPI(response_delay_s=SEND_LATENCY_S) as api:
                for c in (*CHATS, COMMAND_CHAT):
                    api.add_chat(c)
                world = World(server, self.rng)
                self._write_feeds_file(world)
                svc = Service(self._env(api), self.workdir / "service.log", self.scale)
                try:
                    await self._subscribe(api, svc)
                    world.publish(6)
                    for i in range(self.iterations):
                        await self._iteration(i, world, api, svc, server)
                    world.publish(2)
                    self._request_digests(REQUESTS_PER_RUN)
                    self.final = await self._final(world, api, svc)
                finally:
                    if svc.alive():
                        await asyncio.to_thread(svc.kill)
                result = check_invariants(self.db, world, api, self.kills, self.final, self.sent_base)
        finally:
            server.stop()
        stages = Counter(k.stage for k in self.kills)
        untriggered = Counter(k.stage for k in self.kills if not k.triggered)
        return {"seed": self.seed, "iterations": self.iterations, "kills": len(self.kills),
                "kills_per_stage": dict(sorted(stages.items())),
                "untriggered_per_stage": dict(sorted(untriggered.items())),
                "kill_after_s": _quantiles([k.at_s for k in self.kills]),
                "in_flight_at_kill": sum(len(k.in_flight) for k in self.kills),
                "items_published": len(world.items), "events": world.events,
                "digest_requests": len(self.requests), **result, "final_run": self.final,
                "wall_s": round(time.monotonic() - started, 1)}

    def _log_tail(self, chars: int = 3000) -> str:
        return (self.workdir / "service.log").read_text(errors="replace")[-chars:]

    def _write_feeds_file(self, world: World) -> None:
        feeds = "feeds:\n" + "".join(f"  - {{url: '{world.server.url(world.feed_path(f))}', name: Crash Outlet {f},"
                                     f" interval: 1m}}\n" for f in range(world.feeds))
        (self.workdir / "feeds.yaml").write_text(feeds + "digest:\n  max_stories: 10\n")

    async def _subscribe(self, api: FakeTelegramAPI, svc: Service) -> None:
        """Before the faults: each chat sends /subscribe to the service (started once and stopped cleanly)."""
        svc.start()
        try:
            for c in CHATS:
                api.user_message(c, c, "/subscribe")
            try:
                await api.wait_for(lambda: all(api.sent_to(c) for c in CHATS) or not svc.alive(), timeout=60)
            except TimeoutError:
                raise AssertionError(f"setup: /subscribe unanswered; the log ends:\n{self._log_tail()}") from None
        finally:
            rc = await asyncio.to_thread(svc.stop)
        subs = db_query(self.db, "SELECT count(*) FROM subscriptions WHERE active = 1")[0][0]
        if rc != 0 or subs != len(CHATS):
            raise AssertionError(f"setup: {subs} subscriptions, exit status {rc}; the log ends:\n{self._log_tail()}")
        self.sent_base = len(api.sent)  # the replies to /subscribe are no outbox parts

    def _env(self, api: FakeTelegramAPI) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NEWSDIGEST_", "TELEGRAM_", "DISCORD_"))}
        env.update(NEWSDIGEST_DATABASE_URL=f"sqlite:///{self.db}", NEWSDIGEST_FEEDS_FILE=str(self.workdir / "feeds.yaml"),
                   NEWSDIGEST_ALLOW_PRIVATE_URLS="1", TELEGRAM_BOT_TOKEN=TOKEN, TELEGRAM_API_BASE_URL=api.root,
                   PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""))
        return env

    def _request_digests(self, n: int) -> None:
        for c in self.rng.sample(CHATS, n):
            now = datetime.now(UTC)
            conn = sqlite3.connect(self.db, timeout=30)
            try:
                with conn:
                    moved = conn.execute(
                        "UPDATE subscriptions SET next_due_at = ? WHERE active = 1 AND chat_id = "
                        "(SELECT id FROM chats WHERE platform = 'telegram' AND chat_ref = ? AND thread_ref = '')",
                        (now.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f"), str(c))).rowcount
            finally:
                conn.close()
            if moved:
                self.requests.append((c, now))

    def _processed(self) -> int:
        try:
            return db_query(self.db, "SELECT count(*) FROM articles WHERE processed_at IS NOT NULL")[0][0]
        except sqlite3.OperationalError:
            return 0

    async def _iteration(self, i: int, world: World, api: FakeTelegramAPI, svc: Service, server: FeedServer) -> None:
        world.publish(self.rng.randint(1, 3))
        self._request_digests(REQUESTS_PER_RUN)
        stage = self.schedule[i % len(self.schedule)] if self.schedule else self.rng.choice(self.stages)
        delay = self.rng.uniform(0, KILL_WINDOW_S[stage])
        feed_hits = sum(v for k, v in server.hits.items() if k.startswith("/crash/feed"))
        page_hits = sum(v for k, v in server.hits.items() if k.startswith("/crash/a/"))
        sent, processed = len(api.sent), self._processed()

        def fired() -> bool:
            if stage == "poll":
                return sum(v for k, v in server.hits.items() if k.startswith("/crash/feed")) > feed_hits
            if stage == "pages":
                return sum(v for k, v in server.hits.items() if k.startswith("/crash/a/")) > page_hits
            if stage == "process":
                return self._processed() > processed
            if stage == "deliver":
                return len(api.sent) > sent
            return True

        svc.start()
        deadline = time.monotonic() + self.trigger_timeout_s
        triggered = True
        while not await asyncio.to_thread(fired):
            if time.monotonic() > deadline or not svc.alive():
                triggered = False
                break
            await asyncio.sleep(0.05)
        if triggered:
            await asyncio.sleep(delay)
        at = time.monotonic() - svc.started_at
        alive = svc.alive()
        await asyncio.to_thread(svc.kill)
        # A send the fake took before the kill is performed when its latency is over: wait for it to count.
        await asyncio.sleep(SEND_LATENCY_S + 0.3)
        kill = Kill(i, stage, triggered and alive, round(at, 2),
                    in_flight=_in_flight(self.db, api, self.explained, self.sent_base))
        self.kills.append(kill)
        if not alive:
            raise AssertionError(f"iteration {i}: the service exited by itself before the kill; the log ends:\n"
                                 f"{self._log_tail()}")
        self.log(f"iteration {i}: kill in {stage} at {at:.2f} s (triggered: {kill.triggered}, "
                 f"in flight: {len(kill.in_flight)})")

    async def _final(self, world: World, api: FakeTelegramAPI, svc: Service) -> dict[str, Any]:
        """Run without faults until everything is done; check the service answers and stops cleanly."""
        svc.start()
        t0 = time.monotonic()
        links = {i.link for i in world.items}
        state: dict[str, Any] = {}
        while time.monotonic() - t0 < self.settle_timeout_s:
            if not svc.alive():
                break
            state = await asyncio.to_thread(_progress, self.db, links)
            if state["done"]:
                break
            await asyncio.sleep(0.25)
        settled_s = round(time.monotonic() - t0, 1)
        alive = svc.alive()
        answered = False
        if alive:
            before = len(api.sent_to(COMMAND_CHAT))
            api.user_message(COMMAND_CHAT, COMMAND_CHAT, "/help")
            try:
                await api.wait_for(lambda: len(api.sent_to(COMMAND_CHAT)) > before, timeout=30)
                answered = True
            except TimeoutError:
                pass
        # In a thread: the fake Bot API on this loop must answer the service's last calls while it stops.
        rc = await asyncio.to_thread(svc.stop) if svc.alive() else None
        log_tail = (self.workdir / "service.log").read_text(errors="replace")[-4000:]
        return {"settled": bool(state.get("done")), "settle_s": settled_s, "progress": state,
                "alive_after_restart": alive, "answered_command": answered, "exit_status": rc,
                "stopped_cleanly": rc == 0 and "stopped cleanly" in log_tail}


def _progress(db: Path, links: set[str]) -> dict[str, Any]:
    now = datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ")
    stored = {r[0] for r in db_query(db, "SELECT url FROM articles")}
    unprocessed = db_query(db, "SELECT count(*) FROM articles WHERE processed_at IS NULL")[0][0]
    pending = db_query(db, "SELECT count(*) FROM outbox WHERE status = 'pending'")[0][0]
    due = db_query(db, "SELECT count(*) FROM subscriptions WHERE active = 1 AND next_due_at <= ?", (now,))[0][0]
    unsummarized = db_query(db, "SELECT count(*) FROM stories WHERE summary_method IS NULL")[0][0]
    missing = len(links - stored)
    return {"missing_items": missing, "unprocessed": unprocessed, "unsummarized_stories": unsummarized,
            "pending_parts": pending, "due_subscriptions": due,
            "done": not (missing or unprocessed or unsummarized or pending or due)}


def _in_flight(db: Path, api: FakeTelegramAPI, explained: Counter[int], base: int) -> list[tuple[int, str]]:
    """(chat, text) of the send each chat had in flight at a kill: a message the fake received that is neither
    a confirmed part nor a repeat already put down to an earlier kill. `explained` (repeats so far, per chat) is
    updated: each such send goes again after the restart. More than one per chat is listed as it is (the
    invariant check then fails: a chat has one part in flight at a time)."""
    out = []
    for c in CHATS:
        got = [s for s in api.sent[base:] if s.chat_id == c]
        confirmed = db_query(db, "SELECT count(*) FROM outbox o JOIN chats ch ON ch.id = o.chat_id "
                                 "WHERE ch.chat_ref = ? AND o.status = 'sent'", (str(c),))[0][0]
        unconfirmed = len(got) - confirmed - explained[c]
        if unconfirmed > 0:
            out += [(c, s.text) for s in got[len(got) - unconfirmed:]]
            explained[c] += unconfirmed
    return out


def _quantiles(xs: list[float]) -> dict[str, float]:
    if not xs:
        return {}
    s = sorted(xs)
    return {"min": s[0], "median": s[len(s) // 2], "max": s[-1]}


def check_invariants(db: Path, world: World, api: FakeTelegramAPI, kills: list[Kill],
                     final: dict[str, Any], base: int = 0) -> dict[str, Any]:
    """Each invariant: ok and what broke it (empty when ok)."""
    inv: dict[str, dict[str, Any]] = {}
    # items stored once
    stored = Counter(r[0] for r in db_query(db, "SELECT url FROM articles"))
    links = {i.link for i in world.items}
    problems = [f"stored {n} times: {u}" for u, n in stored.items() if n != 1]
    problems += [f"never stored: {u}" for u in sorted(links - set(stored))]
    problems += [f"not published: {u}" for u in sorted(set(stored) - links)]
    inv["items_stored_once"] = {"ok": not problems, "problems": problems[:20], "articles": sum(stored.values())}
    # article in at most one story
    problems = []
    rows = db_query(db, "SELECT a.id, a.story_id, s.id FROM articles a LEFT JOIN stories s ON s.id = a.story_id "
                        "WHERE a.story_id IS NOT NULL")
    problems += [f"article {a} in missing story {sid}" for a, sid, s in rows if s is None]
    for sid, count, members, summary, method in db_query(
            db, "SELECT s.id, s.article_count, (SELECT count(*) FROM articles a WHERE a.story_id = s.id), s.summary, "
                "s.summary_method FROM stories s"):
        if members == 0:
            problems.append(f"story {sid} has no member articles (orphaned by a crash)")
        elif count != members:
            problems.append(f"story {sid}: article_count {count} but {members} members")
        if members and not (summary and method):
            problems.append(f"story {sid} has no summary of its current members")
    unprocessed = db_query(db, "SELECT count(*) FROM articles WHERE processed_at IS NULL")[0][0]
    if unprocessed:
        problems.append(f"{unprocessed} articles never processed")
    n_stories = db_query(db, "SELECT count(*) FROM stories")[0][0]
    in_stories = db_query(db, "SELECT count(*) FROM articles WHERE story_id IS NOT NULL")[0][0]
    inv["article_in_one_story"] = {"ok": not problems, "problems": problems[:20], "stories": n_stories,
                                   "articles_in_stories": in_stories}
    # outbox parts delivered once
    problems = []
    parts = 0
    duplicates = 0
    allowed = Counter(x for k in kills for x in k.in_flight)
    for k in kills:
        for c, n in Counter(c for c, _ in k.in_flight).items():
            if n > 1:
                problems.append(f"iteration {k.iteration}: {n} sends to chat {c} in flight at once")
    for c in CHATS:
        expected = [json.loads(r[0])["text"] for r in db_query(
            db, "SELECT o.payload FROM outbox o JOIN chats ch ON ch.id = o.chat_id WHERE ch.chat_ref = ? "
                "ORDER BY o.id", (str(c),))]
        parts += len(expected)
        matched, repeats, unexpected = _align(expected, [s.text for s in api.sent[base:] if s.chat_id == c])
        if matched != len(expected) or unexpected:
            problems.append(f"chat {c}: {matched} of {len(expected)} parts received in order, "
                            f"{unexpected} messages out of order or not queued")
        for text, n in repeats.items():
            duplicates += n
            if n > allowed[(c, text)]:
                problems.append(f"chat {c}: a part received {n + 1} times, in flight at {allowed[(c, text)]} kills")
    problems += [f"unexpected request: {u}" for u in api.unexpected]
    inv["parts_delivered_once"] = {"ok": not problems, "problems": problems[:20], "parts": parts,
                                   "duplicates": duplicates, "duplicates_allowed": sum(allowed.values())}
    # a story goes to a chat once, and again only after an update (its version grew)
    versions = dict(db_query(db, "SELECT id, version FROM stories"))
    per_chat: dict[str, Counter[int]] = {}
    # Parts carry their own stories (a follow-up is a part of its own): a story counts once per digest.
    digests: dict[tuple[str, str], set[int]] = {}
    for chat, key, story_ids in db_query(db, "SELECT ch.chat_ref, o.digest_key, o.story_ids FROM outbox o "
                                             "JOIN chats ch ON ch.id = o.chat_id"):
        digests.setdefault((chat, key), set()).update(json.loads(story_ids or "[]"))
    for (chat, _), ids in digests.items():
        per_chat.setdefault(chat, Counter()).update(ids)
    problems = [f"chat {c}: story {sid} in {n} digests, version {versions.get(sid)}"
                for c, counts in per_chat.items() for sid, n in counts.items() if n > versions.get(sid, 0)]
    inv["story_once_per_version"] = {"ok": not problems, "problems": problems[:20],
                                     "stories_sent": sum(sum(c.values()) for c in per_chat.values())}
    # nothing due left undelivered
    statuses = dict(db_query(db, "SELECT status, count(*) FROM outbox GROUP BY status"))
    now = datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ")
    due = db_query(db, "SELECT count(*) FROM subscriptions WHERE active = 1 AND next_due_at <= ?", (now,))[0][0]
    problems = [f"{n} parts {s}" for s, n in statuses.items() if s != "sent"]
    problems += [f"{due} subscriptions still due"] if due else []
    pending_text = db_query(db, "SELECT count(*) FROM articles WHERE text_source = 'pending'")[0][0]
    problems += [f"{pending_text} article pages never fetched"] if pending_text else []
    inv["nothing_due_left"] = {"ok": not problems, "problems": problems, "outbox": statuses}
    # the service still runs after the restart
    ok = bool(final.get("settled") and final.get("alive_after_restart") and final.get("answered_command")
              and final.get("stopped_cleanly"))
    inv["service_running"] = {"ok": ok, "problems": [] if ok else [f"final run: {final}"]}
    return {"invariants": inv, "ok": all(v["ok"] for v in inv.values())}


def _align(expected: list[str], received: list[str]) -> tuple[int, Counter[str], int]:
    """Match what a chat received against its queued parts in order: (parts matched, repeats per text, messages
    that are neither the next part nor a repeat of the last one). Two parts may read alike (a story updated
    without a visible change), so a message that could be either is taken as the next part."""
    matched, repeats, unexpected = 0, Counter(), 0
    for text in received:
        if matched < len(expected) and expected[matched] == text:
            matched += 1
        elif matched and expected[matched - 1] == text:
            repeats[text] += 1
        else:
            unexpected += 1
    return matched, repeats, unexpected

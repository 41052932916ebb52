"""End to end over real sockets: discord.py (the adapter) against the fake Discord REST + gateway, with the
chat runtime delivering scheduled digests from the outbox. Every body the bot sends is checked by the fake
against Discord's schema and limits (`fake.invalid`), and its send rate against Discord's (`fake.too_fast`)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import discord
import pytest
from sqlalchemy import update

from bot.chat.commands import CommandService
from bot.chat.discord_chat import DISCORD_LIMITS, DiscordAdapter
from bot.chat.feed_admin import StoreFeedAdmin
from bot.chat.render_discord import DiscordRenderer
from bot.chat.runtime import ChatRuntime, RuntimeConfig
from bot.clock import utcnow
from bot.errors import ChatForbiddenError, ConfigError, DeliveryError, RateLimitedError
from bot.pipeline.digest import build_digest, next_due
from bot.ports import ChatRef, OutgoingMessage
from bot.settings import DigestDefaults
from bot.storage.chat_store import ChatStore
from bot.storage.store import Store
from bot.storage.tables import subscriptions
from tests.fakes.clock import ShiftClock
from tests.fakes.discord_api import (
    EVERYONE_PERMISSIONS,
    MANAGE_GUILD,
    TOKEN,
    FakeDiscord,
    FakeGuild,
)
from tests.fakes.feed_probe import reachable_feed
from tests.fakes.store_queries import enqueue_messages, outbox_rows
from tests.fakes.stories import seed

OWNER, MEMBER = 4242, 5151
ADMIN_PERMS = EVERYONE_PERMISSIONS | MANAGE_GUILD
DEFAULTS = DigestDefaults(times=("08:00",), timezone="UTC", max_stories=4, min_topic_score=0.5,
                          topics=("world",), summary_cooldown_s=30)
OPML = (b'<?xml version="1.0"?><opml version="2.0"><head/><body>'
        b'<outline type="rss" text="A" xmlUrl="https://a.example/feed"/></body></opml>')
ROOT = Path(__file__).resolve().parents[1]



@dataclass
class Rig:
    fake: FakeDiscord
    guild: FakeGuild
    store: Store
    chats: ChatStore
    adapter: DiscordAdapter
    runtime: ChatRuntime
    clock: ShiftClock

    def channel(self, name: str) -> int:
        return next(i for i, n in self.guild.channels.items() if n == name)

    def thread(self, name: str) -> int:
        return next(i for i, (_, n) in self.guild.threads.items() if n == name)

    def ref(self, name: str) -> ChatRef:
        if name in self.guild.channels.values():
            return ChatRef("discord", str(self.channel(name)))
        thread = self.thread(name)
        return ChatRef("discord", str(self.guild.threads[thread][0]), str(thread))

    async def slash(self, channel_id: int, name: str, options: list | None = None, *, user_id: int = MEMBER,
                    permissions: int = ADMIN_PERMS, **kw) -> dict:
        """Run a slash command; returns the interaction callback body."""
        iid = await self.fake.slash(channel_id, name, options, user_id=user_id, permissions=permissions, **kw)
        await self.fake.wait_for(lambda: iid in self.fake.callbacks)
        return self.fake.callbacks[iid]

    def make_due(self) -> None:
        """Every subscription's next digest is now."""
        with self.store.engine.begin() as conn:
            conn.execute(update(subscriptions).values(next_due_at=self.clock.now() - timedelta(seconds=1)))


def service(store: Store, chats: ChatStore, clock: ShiftClock) -> CommandService:
    return CommandService(chats, admins={f"discord:{OWNER}"}, defaults=DEFAULTS, clock=clock.now,
                          feed_admin=StoreFeedAdmin(store, allow_private=False, probe=reachable_feed), topics=("world", "economy"))


@pytest.fixture
async def rig(sqlite_store: Store, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Rig]:
    clock = ShiftClock()
    async with FakeDiscord() as fake:
        fake.install(monkeypatch)
        guild = fake.add_guild("World desk", channels=("news", "blocked", "gone", "busy"),
                               threads=(("news", "daily"),))
        chats = ChatStore(sqlite_store.engine)
        adapter = DiscordAdapter(TOKEN, service(sqlite_store, chats, clock),
                                 guild_ready_timeout=0.05)
        runtime = ChatRuntime(chats, DEFAULTS, [adapter], services=[adapter],
                              clock=clock, config=RuntimeConfig(scheduler_tick_s=0.1, claim_interval_s=0.05,
                                                                lease_s=30))
        await runtime.start()
        try:
            yield Rig(fake, guild, sqlite_store, chats, adapter, runtime, clock)
        finally:
            await runtime.stop()
        assert fake.invalid == [], fake.invalid
        assert fake.too_fast == [], fake.too_fast


async def test_real_client_connects_syncs_answers_and_sends(rig: Rig) -> None:
    fake = rig.fake
    await rig.adapter.wait_until_ready(5)
    assert fake.identify is not None and fake.identify["token"] == TOKEN
    assert fake.identify["intents"] == discord.Intents(guilds=True).value, "guilds only, nothing privileged"
    commands = {c["name"]: c for c in fake.commands[None]}
    assert set(commands) == {"help", "subscribe", "unsubscribe", "summary", "settings", "feeds", "addfeed",
                             "removefeed", "importopml", "exportopml", "story", "alerts"}
    assert commands["subscribe"]["default_member_permissions"] == MANAGE_GUILD
    assert commands["summary"]["default_member_permissions"] is None
    assert all(c["contexts"] == [0] for c in commands.values()), "guild channels only"
    daily = rig.thread("daily")
    assert isinstance(rig.adapter.bot.get_channel(daily), discord.Thread)

    body = await rig.slash(daily, "subscribe")
    assert body["type"] == 4 and "Subscribed this topic" in body["data"]["content"]
    sub = rig.chats.get_subscription(rig.ref("daily"))
    assert sub is not None and sub.active and sub.chat.thread_id == str(daily)
    body = await rig.slash(daily, "subscribe", permissions=EVERYONE_PERMISSIONS)
    assert body["data"]["flags"] & 64 and "Manage Server" in body["data"]["content"]
    body = await rig.slash(daily, "importopml", user_id=OWNER, attachments={"file": ("feeds.opml", OPML)})
    assert body["data"]["flags"] & 64 and "1 added" in body["data"]["content"]
    assert [f.url for f in rig.store.list_feeds()] == ["https://a.example/feed"]

    message_id = await rig.adapter.send(rig.ref("daily"), OutgoingMessage("hello @everyone", "markdown"))
    (posted,) = fake.sent_to(daily)
    assert posted["id"] == message_id and posted["allowed_mentions"] == {"parse": []}


async def test_a_rejected_token_is_a_config_error_and_an_unreachable_discord_is_not_fatal(
        sqlite_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    chats = ChatStore(sqlite_store.engine)
    commands = CommandService(chats, admins=(), defaults=DEFAULTS)
    async with FakeDiscord(token="the-real-token") as fake:
        fake.install(monkeypatch)
        adapter = DiscordAdapter("a-wrong-token", commands)
        with pytest.raises(ConfigError, match="DISCORD_BOT_TOKEN"):
            await adapter.start()
        await adapter.stop()
    # The fake is gone: nothing listens on its port any more.
    adapter = DiscordAdapter(TOKEN, commands)
    await adapter.start()
    with pytest.raises(DeliveryError) as info:
        await adapter.send(ChatRef("discord", "1"), OutgoingMessage("x"))
    assert not info.value.permanent, "parts wait for the login instead of failing"
    await adapter.stop()
    with pytest.raises(ConfigError):
        DiscordAdapter("", commands)


async def test_subscribe_schedule_fires_and_digest_arrives_within_limits(rig: Rig) -> None:
    news, daily = rig.channel("news"), rig.thread("daily")
    for target in (news, daily):
        body = await rig.slash(target, "subscribe")
        assert "Subscribed" in body["data"]["content"]
    sub = rig.chats.get_subscription(rig.ref("news"))
    assert sub is not None and sub.next_due_at is not None
    ids = seed(rig.store, sub.next_due_at, 6, summary_chars=3000)
    rig.clock.offset = sub.next_due_at - utcnow() + timedelta(seconds=1)
    for target in (news, daily):
        await rig.fake.wait_sent(target, 1, timeout=10)
    await rig.runtime.drain(10)
    for target in (news, daily):
        parts = rig.fake.sent_to(target)
        assert len(parts) >= 2, "4 stories of 3000 characters need more than one message (6000 per message)"
        assert parts[0]["content"].startswith("**News digest** · 4 stories")
        embeds = [e for p in parts for e in p["embeds"]]
        assert [e["title"] for e in embeds][0].startswith("Story 3: leaders meet <again> & talk")
        assert len(embeds) == DEFAULTS.max_stories
        assert all(p["allowed_mentions"] == {"parse": []} for p in parts)
        assert any("BBC <World>" in f["value"] for e in embeds for f in e.get("fields", []))
    sub = rig.chats.get_subscription(rig.ref("news"))
    assert sub is not None and sub.last_digest_at is not None and sub.next_due_at > rig.clock.now()
    assert set(rig.chats.sent_versions(sub.id)) <= set(ids)


async def test_blocked_and_deleted_channels_are_paused_and_429s_are_waited_out(rig: Rig) -> None:
    fake = rig.fake
    for name in ("blocked", "gone", "busy"):
        rig.chats.subscribe(rig.ref(name), DEFAULTS, rig.clock.now(), next_due=next_due)
    rig.chats.update_subscription(rig.chats.get_subscription(rig.ref("blocked")).id, rig.clock.now(), max_stories=3)
    seed(rig.store, rig.clock.now(), 3)
    fake.fail_channel(rig.channel("blocked"), 403, 50001, "Missing Access")
    fake.fail_channel(rig.channel("gone"), 404, 10003, "Unknown Channel")
    fake.rate_limit_channel(rig.channel("busy"), 0.4)
    t0 = asyncio.get_running_loop().time()
    rig.make_due()
    await fake.wait_sent(rig.channel("busy"), 1)
    assert asyncio.get_running_loop().time() - t0 >= 0.4, "retry_after is honoured (by discord.py)"
    await rig.runtime.drain(10)
    assert len(fake.sent_to(rig.channel("busy"))) == 1, "the rate-limited message is sent exactly once"
    for name, code in (("blocked", "50001"), ("gone", "10003")):
        sub = rig.chats.get_subscription(rig.ref(name))
        assert sub is not None and not sub.active and sub.paused_reason.startswith("blocked") and code in sub.paused_reason
    sub = rig.chats.get_subscription(rig.ref("blocked"))
    assert sub.max_stories == 3 and sub.schedule.times == ("08:00",), "settings are kept"
    assert rig.chats.outbox_counts().get("pending", 0) == 0
    fake.failures.clear()
    body = await rig.slash(rig.channel("blocked"), "subscribe")
    assert "resumed" in body["data"]["content"]


async def test_platform_errors_become_bot_errors(rig: Rig) -> None:
    fake = rig.fake
    # Direct sends (no outbox pacing): one channel per case keeps within Discord's per-channel rate.
    cases = [((403, 50013, "Missing Permissions"), ChatForbiddenError, True),
             ((404, 10003, "Unknown Channel"), ChatForbiddenError, True),
             ((400, 50035, "Invalid Form Body"), DeliveryError, True),
             ((404, 10008, "Unknown Message"), DeliveryError, True),
             ((503, 0, "Service Unavailable"), DeliveryError, False)]
    extra = fake.add_guild("Errors", channels=tuple(f"e{i}" for i in range(len(cases) + 3)))
    channels = list(extra.channels)
    message = OutgoingMessage("x", "markdown")
    for (error, kind, permanent), channel in zip(cases, channels, strict=False):
        fake.fail_channel(channel, *error)
        with pytest.raises(kind) as info:
            await rig.adapter.send(ChatRef("discord", str(channel)), message)
        assert type(info.value) is kind and info.value.permanent is permanent
        assert str(error[0]) in info.value.reason and str(error[1]) in info.value.reason
    # A 500 is retried by discord.py itself (after about a second).
    fake.error_channel(channels[-3], 1)
    assert await rig.adapter.send(ChatRef("discord", str(channels[-3])), message)
    # A long 429 is not waited out inside the send: the outbox gets it back with its retry_after.
    fake.rate_limit_channel(channels[-2], 120.0)
    with pytest.raises(RateLimitedError) as info:
        await rig.adapter.send(ChatRef("discord", str(channels[-2])), message)
    assert info.value.retry_after == pytest.approx(120.0)
    with pytest.raises(DeliveryError):
        await rig.adapter.send(ChatRef("discord", "not-a-number"), message)
    assert [len(fake.sent_to(c)) for c in channels] == [0] * len(cases) + [1, 0, 0]


async def test_sending_the_same_part_again_creates_one_message(rig: Rig) -> None:
    ref, news = rig.ref("news"), rig.channel("news")
    part = OutgoingMessage("", "markdown", extra={"embeds": [{"type": "rich", "title": "Story"}]})
    first = await rig.adapter.send(ref, part)
    again = await rig.adapter.send(ref, part)
    other = await rig.adapter.send(rig.ref("daily"), part)
    assert first == again and other != first
    assert len(rig.fake.sent_to(news)) == 1 and len(rig.fake.sent_to(rig.thread("daily"))) == 1


async def test_a_large_digest_run_keeps_discords_rate_limits(sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    async with FakeDiscord() as fake:
        fake.install(monkeypatch)
        guild = fake.add_guild("Big", channels=tuple(f"c{i}" for i in range(70)))
        chats = ChatStore(sqlite_store.engine)
        now = utcnow()
        for channel in guild.channels:
            chats.subscribe(ChatRef("discord", str(channel), kind="group"),
                            DigestDefaults(times=("08:00",), max_stories=2, min_topic_score=0), now, next_due=next_due)
        seed(sqlite_store, now, 2, summary_chars=200)
        adapter = DiscordAdapter(TOKEN,
                                 CommandService(chats, admins=(), defaults=DEFAULTS))
        runtime = ChatRuntime(chats, DEFAULTS, [adapter], services=[adapter],
                              config=RuntimeConfig(scheduler_tick_s=0.1, claim_interval_s=0.05))
        with sqlite_store.engine.begin() as conn:
            conn.execute(update(subscriptions).values(next_due_at=now - timedelta(seconds=1)))
        t0 = asyncio.get_running_loop().time()
        await runtime.start()
        try:
            await fake.wait_for(lambda: all(fake.sent_to(c) for c in guild.channels), timeout=20)
            await runtime.drain(10)
        finally:
            await runtime.stop()
        elapsed = asyncio.get_running_loop().time() - t0
        assert all(len(fake.sent_to(c)) == 1 for c in guild.channels)
        assert fake.too_fast == [], fake.too_fast[:3]
        assert elapsed >= (70 - DISCORD_LIMITS.global_per_s) / DISCORD_LIMITS.global_per_s, "paced, not bursted"
        assert fake.invalid == []


# --- both adapters in one process -------------------------------------------------------------------------


async def test_telegram_and_discord_in_one_runtime(sqlite_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.chat.telegram_chat import TelegramChat
    from tests.fakes.telegram_api import TOKEN as TG_TOKEN
    from tests.fakes.telegram_api import FakeTelegramAPI

    clock = ShiftClock()
    chats = ChatStore(sqlite_store.engine)
    commands = service(sqlite_store, chats, clock)
    async with FakeDiscord() as fake, FakeTelegramAPI() as tg_api:
        fake.install(monkeypatch)
        guild = fake.add_guild("World desk", channels=("news",))
        news = next(iter(guild.channels))
        tg = TelegramChat(TG_TOKEN, commands, api_root=tg_api.root, poll_timeout_s=1)
        dc = DiscordAdapter(TOKEN, commands)
        runtime = ChatRuntime(chats, DEFAULTS, [tg, dc], services=[tg, dc],
                              clock=clock, config=RuntimeConfig(scheduler_tick_s=0.1, claim_interval_s=0.05))
        await runtime.start()
        try:
            tg_api.add_chat(77)
            tg_api.user_message(77, 77, "/subscribe")
            (reply,) = await tg_api.wait_sent(77, 1)
            assert "Subscribed" in reply.plain
            iid = await fake.slash(news, "subscribe", permissions=ADMIN_PERMS)
            await fake.wait_for(lambda: iid in fake.callbacks)
            assert "Subscribed" in fake.callbacks[iid]["data"]["content"]
            sub = chats.get_subscription(ChatRef("discord", str(news)))
            seed(sqlite_store, sub.next_due_at, 3)
            clock.offset = sub.next_due_at - utcnow() + timedelta(seconds=1)
            await tg_api.wait_sent(77, 2, timeout=10)
            await fake.wait_sent(news, 1, timeout=10)
            await runtime.drain(10)
        finally:
            await runtime.stop()
        assert "News digest" in tg_api.sent_to(77)[1].plain
        assert fake.sent_to(news)[0]["content"].startswith("**News digest** · 3 stories")
        assert fake.invalid == [] and tg_api.unexpected == []


# --- crash in the middle of a delivery --------------------------------------------------------------------


def _worker(db_url: str, fake: FakeDiscord) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "tests.fakes.discord_api", "--db", db_url, "--api", fake.api_base,
                             "--gateway", str(fake.gateway_url), "--lease", "1"], cwd=ROOT, env=env)


async def _wait_exit(p: subprocess.Popen, timeout: float) -> int:
    deadline = asyncio.get_running_loop().time() + timeout
    while p.poll() is None:
        if asyncio.get_running_loop().time() > deadline:
            p.kill()
            raise TimeoutError("worker did not exit")
        await asyncio.sleep(0.05)
    return p.returncode


def _shape(body: dict) -> tuple:
    return body.get("content") or "", tuple(e["title"] for e in body.get("embeds") or ())


@pytest.mark.parametrize("accepted_anyway", [False, True], ids=["post-lost", "post-accepted-unconfirmed"])
async def test_killed_mid_delivery_restart_loses_and_duplicates_nothing(tmp_path: Path, accepted_anyway: bool
                                                                       ) -> None:
    db_url = f"sqlite:///{tmp_path / 'crash.db'}"
    store = Store.open(db_url)
    chats = ChatStore(store.engine)
    now = utcnow()
    seed(store, now, 6, summary_chars=3000)
    async with FakeDiscord() as fake:
        guild = fake.add_guild("Crash", channels=("a", "b", "c"))
        targets = list(guild.channels)
        expected: dict[int, list[tuple]] = {}
        for c in targets:
            sub, _ = chats.subscribe(ChatRef("discord", str(c), kind="group"), DEFAULTS, now, next_due=next_due)
            digest = build_digest(chats.candidate_stories(now - timedelta(days=1), now), now=now,
                                  since=now - timedelta(days=1), max_stories=6)
            parts = [m.to_payload() for m in DiscordRenderer().render_digest(digest)]
            assert len(parts) >= 3
            enqueue_messages(chats, sub.chat_db_id, f"crash-{c}", parts, now, sub.id)
            expected[c] = [_shape({"content": p["text"], **p["extra"]}) for p in parts]
        first_target, held = targets[0], targets[1]
        fake.hold[held] = asyncio.Event()
        first = _worker(db_url, fake)
        try:
            # One channel gets parts confirmed, another's first part hangs in flight: then the process dies.
            await fake.wait_for(lambda: held in fake.held and len(fake.sent_to(first_target)) >= 2, timeout=30)
            await asyncio.sleep(0.2)
            first.send_signal(signal.SIGKILL)
            assert await _wait_exit(first, 10) == -signal.SIGKILL
        finally:
            if first.poll() is None:
                first.kill()
        confirmed = {r["id"] for r in outbox_rows(chats) if r["status"] == "sent"}
        assert confirmed, "some parts were confirmed before the kill"
        # The killed worker's held post is either lost, or Discord created the message although nobody recorded
        # that: then the restarted worker sends the same part again and its nonce makes Discord keep just one.
        fake.release(held, client_gone=not accepted_anyway)
        second = _worker(db_url, fake)
        try:
            await fake.wait_for(lambda: all(len(fake.sent_to(c)) == len(expected[c]) for c in targets), timeout=40)
            await asyncio.sleep(0.5)
            second.send_signal(signal.SIGTERM)
            assert await _wait_exit(second, 20) == 0, "SIGTERM shuts down cleanly"
        finally:
            if second.poll() is None:
                second.kill()
        for c in targets:
            assert [_shape(b) for b in fake.sent_to(c)] == expected[c], f"channel {c}: lost, duplicated or reordered"
        assert fake.invalid == []
    assert chats.outbox_counts() == {"sent": sum(len(v) for v in expected.values())}
    store.close()


async def test_digest_sentences_carry_their_sources_and_story_lists_outlets_and_timeline(rig: Rig) -> None:
    from bot.storage.stories import sentences_from_json
    from bot.storage.tables import stories
    from tests.fakes.stories import KERALA, add_summarized_story

    news = rig.channel("news")
    await rig.slash(news, "subscribe")
    sub = rig.chats.get_subscription(rig.ref("news"))
    assert sub is not None and sub.next_due_at is not None
    sid = add_summarized_story(rig.store, sub.next_due_at)
    with rig.store.engine.connect() as conn:
        stored = sentences_from_json(conn.execute(stories.select().where(stories.c.id == sid)).one().summary_sources)
    assert len(stored) >= 2 and {s.outlet for s in stored} == {"Reuters", "BBC <World>"}
    rig.clock.offset = sub.next_due_at - utcnow() + timedelta(seconds=1)
    await rig.fake.wait_sent(news, 1, timeout=10)
    await rig.runtime.drain(10)
    (embed,) = [e for p in rig.fake.sent_to(news) for e in p["embeds"]]
    assert embed["title"] == "Floods hit Kerala"
    for s in stored:
        # Each sentence is verbatim from the article its mark links to; the mark is a masked link to it.
        k = next(i for i, (outlet, _, _) in enumerate(KERALA) if outlet == s.outlet)
        assert s.text in KERALA[k][2]
        assert f"{s.text} \\[[{s.outlet}](https://outlet{k}.example/kerala?a={k}&b=%3Cx%3E)\\]" in embed["description"]
    assert embed["footer"]["text"] == f"2 outlets · /story {sid}"

    body = await rig.slash(news, "story", [{"name": "id", "type": 3, "value": str(sid)}],
                           permissions=EVERYONE_PERMISSIONS)
    content = body["data"]["content"]
    assert content.startswith(f"**Story {sid}: **") and "Floods hit Kerala" in content
    assert "[Reuters](https://outlet0.example/kerala?a=0&b=%3Cx%3E)" in content
    assert "https://outlet1.example/kerala?a=1&b=%3Cx%3E" in content
    assert content.index("Reuters: ") < content.index("BBC <World>: "), "timeline in order of arrival"
    body = await rig.slash(news, "story", [{"name": "id", "type": 3, "value": "abc"}])
    assert "Usage: /story ID" in body["data"]["content"]


async def _round(rig: Rig, targets: tuple[int, ...], report: tuple[str, str, str] | None, k: int,
                 sid: int) -> dict[int, list[dict]]:
    """A digest for every subscription now, with `report` joining the story just before; what each got."""
    from tests.fakes.stories import add_report

    rig.clock.offset += timedelta(hours=1)
    if report is not None:
        add_report(rig.store, sid, k, report, rig.clock.now() - timedelta(minutes=1))
    before = {t: len(rig.fake.sent_to(t)) for t in targets}
    rig.make_due()
    due = rig.clock.now()
    for _ in range(500):  # the scheduler handles them within a tick or two (a round may send nothing)
        if all(rig.chats.get_subscription(r).next_due_at > due for r in (rig.ref("news"), rig.ref("daily"))):
            break
        await asyncio.sleep(0.02)
    await rig.runtime.drain(10)
    return {t: rig.fake.sent_to(t)[before[t]:] for t in targets}


async def test_a_substantial_update_replies_to_the_earlier_digest_and_items_have_sources_buttons(rig: Rig) -> None:
    from tests.fakes.stories import add_summarized_story

    news, daily = rig.channel("news"), rig.thread("daily")
    for target in (news, daily):
        await rig.slash(target, "subscribe")
    sid = add_summarized_story(rig.store, rig.clock.now() + timedelta(minutes=30))
    got = await _round(rig, (news, daily), None, 0, sid)
    first = {t: m for t, (m,) in got.items()}
    for m in first.values():
        assert m["embeds"][0]["title"] == "Floods hit Kerala" and m.get("message_reference") is None
        # The item's button opens its /story (every outlet, link and the timeline).
        assert [c["custom_id"] for row in m["components"] for c in row["components"]] == [f"story:{sid}"]
    rig.fake.delete_message(daily, first[daily]["id"])

    assert await _round(rig, (news, daily), ("DW", "Kerala floods", "Rivers burst their banks across Kerala on "
                                             "Monday, flooding hundreds of villages."), 2, sid) == {news: [], daily: []}
    got = await _round(rig, (news, daily), ("AP <News>", "Kerala flood toll rises to 52 as Pinarayi Vijayan visits "
                                            "Wayanad", "The death toll in Kerala rose to 52 on Wednesday."), 3, sid)
    (up,), (alone,) = got[news], got[daily]
    assert up["message_reference"] == {"message_id": int(first[news]["id"]), "channel_id": news,
                                       "fail_if_not_exists": False, "type": 0}
    assert up["_reply_to"] == int(first[news]["id"]) and alone["_reply_to"] is None, "deleted: a post of its own"
    for m in (up, alone):
        assert m["content"] == "↪ **Update**"
        (embed,) = m["embeds"]
        assert embed["fields"][0] == {"name": "What's new", "inline": False,
                                      "value": "New: 52, Pinarayi Vijayan, Wayanad · now also reported by DW, AP <News>"}
        assert embed["footer"]["text"].endswith(f"updated story · /story {sid}")
    assert await _round(rig, (news, daily), None, 0, sid) == {news: [], daily: []}, "a follow-up goes once"

    # The button's data answers as /story does, for any member.
    from bot.ports import Invocation

    press = Invocation("discord", rig.ref("news"), str(MEMBER), "callback", callback_data=f"story:{sid}")
    (story,) = rig.adapter.renderer.render_reply(await rig.adapter.bot.service.handle(press))
    assert story.text.startswith(f"**Story {sid}: **") and "Outlets (4)" in story.text

"""Owner alerts end to end: feed failures recorded by the real Runner, queued by the chat runtime's scheduler,
sent by the real Telegram adapter to the fake Bot API; and the pure decision (bot/pipeline/alerts.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from bot.chat.commands import CommandService
from bot.chat.runtime import ChatRuntime, RuntimeConfig
from bot.chat.telegram_chat import TelegramChat
from bot.errors import FetchError
from bot.models import FeedSpec
from bot.pipeline import alerts as A
from bot.ports import ChatRef
from bot.runner import Runner
from bot.settings import DigestDefaults
from bot.storage.chat_store import ChatStore
from bot.storage.store import Store
from tests.fakes.clock import ShiftClock
from tests.fakes.telegram_api import TOKEN, FakeTelegramAPI, Sent

OWNER, USER = 1, 50
OWNERS = [f"telegram:{OWNER}"]
DEFAULTS = DigestDefaults(times=("08:00",), timezone="UTC", max_stories=4, topics=("world",))


class FailingFetcher:
    """A fetcher whose every feed fails with `error(url)`, or answers 304 when `error` is None."""

    def __init__(self, error: Callable[[str], Exception] | None) -> None:
        self.error = error

    async def get(self, url: str, **_: Any) -> Any:
        if self.error is not None:
            raise self.error(url)
        return SimpleNamespace(not_modified=True, etag=None, last_modified=None, max_age_s=None)


def gone(url: str) -> Exception:
    return FetchError(url, "HTTP 410 Gone", transient=False, status=410)


def unavailable(url: str) -> Exception:
    return FetchError(url, "HTTP 503 Service Unavailable", status=503)


@asynccontextmanager
async def running(api: FakeTelegramAPI, store: Store, clock: ShiftClock, tick_s: float
                  ) -> AsyncIterator[ChatRuntime]:
    chats = ChatStore(store.engine)
    service = CommandService(chats, admins=OWNERS, defaults=DEFAULTS, clock=clock.now)
    tg = TelegramChat(TOKEN, service, api_root=api.root, poll_timeout_s=1)
    runtime = ChatRuntime(chats, DEFAULTS, [tg], services=[tg], clock=clock, owners=OWNERS, alerts=chats,
                          config=RuntimeConfig(scheduler_tick_s=tick_s, claim_interval_s=0.05, lease_s=30))
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


async def command(api: FakeTelegramAPI, chat_id: int, user_id: int, text: str) -> Sent:
    before = len(api.sent_to(chat_id))
    api.user_message(chat_id, user_id, text)
    return (await api.wait_sent(chat_id, before + 1))[before]


def add_feeds(store: Store, n: int, prefix: str = "a") -> list[str]:
    urls = [f"https://feeds{i}.example.com/{prefix}.xml" for i in range(n)]
    for url in urls:
        store.add_feed(FeedSpec(url=url), "cli")
    return urls


async def tick(runtime: ChatRuntime, clock: ShiftClock) -> int:
    """One scheduler pass for alerts, then the outbox drained."""
    n = await asyncio.to_thread(runtime.schedule_alerts, clock.now())
    await runtime.drain(5)
    return n


@pytest.fixture
async def api() -> AsyncIterator[FakeTelegramAPI]:
    async with FakeTelegramAPI() as fake:
        fake.add_chat(OWNER)
        fake.add_chat(USER)
        yield fake
        assert fake.unexpected == [], fake.unexpected


async def test_a_paused_feed_alerts_the_owner_once_and_a_restart_sends_nothing_again(
        api: FakeTelegramAPI, sqlite_store: Store) -> None:
    clock = ShiftClock()
    (url,) = add_feeds(sqlite_store, 1)
    async with running(api, sqlite_store, clock, tick_s=0.1):
        reply = await command(api, OWNER, OWNER, "/alerts")
        assert "Owner alerts: on" in reply.plain and "this private chat" in reply.plain
        await Runner(sqlite_store, FailingFetcher(gone)).poll_once(force=True)  # type: ignore[arg-type]
        (alert,) = (await api.wait_sent(OWNER, 2))[1:]
        assert "Feed paused" in alert.plain and url in alert.plain and "410" in alert.plain
        assert alert.parse_mode == "HTML"
        await asyncio.sleep(1.0)  # ten scheduler ticks
        assert len(api.sent_to(OWNER)) == 2
    async with running(api, sqlite_store, clock, tick_s=0.1):
        await asyncio.sleep(1.0)
    assert len(api.sent_to(OWNER)) == 2, "a restart must not send an alert again"
    assert api.sent_to(USER) == []


async def test_failures_are_grouped_and_rate_limited(api: FakeTelegramAPI, store: Store) -> None:
    sqlite_store = store  # on PostgreSQL too when NEWSDIGEST_TEST_DATABASE_URL is set
    clock = ShiftClock()
    urls = add_feeds(sqlite_store, 5)
    async with running(api, sqlite_store, clock, tick_s=3600) as runtime:
        await command(api, OWNER, OWNER, "/alerts")
        failing = Runner(sqlite_store, FailingFetcher(unavailable))  # type: ignore[arg-type]
        for _ in range(A.FAILING_AFTER + 1):  # the alert comes once, at the third failure in a row
            await failing.poll_once(force=True)
        assert await tick(runtime, clock) == 1
        (grouped,) = api.sent_to(OWNER)[1:]
        assert grouped.plain.count("Feed failing") == 5 and all(u in grouped.plain for u in urls)
        assert "3 failures in a row" in grouped.plain and "503" in grouped.plain

        # More events within ten minutes wait; then they go as one message.
        (paused,) = add_feeds(sqlite_store, 1, prefix="gone")
        await Runner(sqlite_store, FailingFetcher(gone)).poll_once(force=True)  # type: ignore[arg-type]
        clock.offset += timedelta(minutes=9)
        assert await tick(runtime, clock) == 0
        clock.offset += timedelta(minutes=1, seconds=1)
        assert await tick(runtime, clock) == 1
        later = api.sent_to(OWNER)[-1]
        assert paused in later.plain and "Feed failing" not in later.plain

        # Recovery is news too.
        clock.offset += timedelta(minutes=11)
        await Runner(sqlite_store, FailingFetcher(None)).poll_once(force=True)  # type: ignore[arg-type]
        assert await tick(runtime, clock) == 1
        assert api.sent_to(OWNER)[-1].plain.count("Feed recovered") == 5
        assert len(api.sent_to(OWNER)) == 4


async def test_mute_and_only_owners_can_mute(api: FakeTelegramAPI, sqlite_store: Store) -> None:
    clock = ShiftClock()
    add_feeds(sqlite_store, 2)
    async with running(api, sqlite_store, clock, tick_s=3600) as runtime:
        help_user = await command(api, USER, USER, "/help")
        assert "/alerts" not in help_user.plain
        denied = await command(api, USER, USER, "/alerts off")
        assert "only the bot's owners" in denied.plain
        assert "/alerts" in (await command(api, OWNER, OWNER, "/help")).plain
        muted = await command(api, OWNER, OWNER, "/alerts 24h")
        assert "muted until" in muted.plain
        await Runner(sqlite_store, FailingFetcher(gone)).poll_once(force=True)  # type: ignore[arg-type]
        clock.offset += timedelta(minutes=30)
        assert await tick(runtime, clock) == 0
        assert len(api.sent_to(OWNER)) == 2  # the command replies only

        assert "Owner alerts: on" in (await command(api, OWNER, OWNER, "/alerts on")).plain
        (url,) = add_feeds(sqlite_store, 1, prefix="later")
        await Runner(sqlite_store, FailingFetcher(gone)).poll_once(force=True)  # type: ignore[arg-type]
        assert await tick(runtime, clock) == 1
        alert = api.sent_to(OWNER)[-1]
        assert url in alert.plain and "a.xml" not in alert.plain, "events while muted stay muted"

        assert "off" in (await command(api, OWNER, OWNER, "/alerts off")).plain
        bad = await command(api, OWNER, OWNER, "/alerts sometimes")
        assert "Usage: /alerts" in bad.plain
    assert api.sent_to(USER)[-1].plain.count("only the bot's owners") == 1


async def test_an_owner_without_a_private_chat_is_skipped(api: FakeTelegramAPI, sqlite_store: Store) -> None:
    clock = ShiftClock()
    add_feeds(sqlite_store, 1)
    async with running(api, sqlite_store, clock, tick_s=3600) as runtime:
        await Runner(sqlite_store, FailingFetcher(gone)).poll_once(force=True)  # type: ignore[arg-type]
        assert await tick(runtime, clock) == 0
    assert api.sent_to(OWNER) == []


# The pure decision -----------------------------------------------------------------------------------------

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def ev(i: int, kind: str = A.FEED_FAILING, subject: str = "https://x/feed", at: datetime = T0) -> A.AlertEvent:
    return A.AlertEvent(i, kind, subject, "HTTP 503", at)


def test_plan_groups_rate_limits_mutes_and_summarizes_daily() -> None:
    owner = A.OwnerState("telegram:1")
    msgs, (s1,) = A.plan_alerts([ev(1), ev(2), ev(3, subject="https://y/feed")], [owner], T0)
    assert len(msgs) == 1 and msgs[0].lines == ("Feed failing: https://x/feed (HTTP 503) ×2",
                                                "Feed failing: https://y/feed (HTTP 503)")
    assert s1.cursor == 3 and s1.last_sent_at == T0 and s1.last_summary_at == T0
    # Nothing new: no message, no change.
    assert A.plan_alerts([ev(1)], [s1], T0 + timedelta(hours=1)) == ([], [])
    # New within 10 minutes: held; at 10 minutes: sent.
    assert A.plan_alerts([ev(4)], [s1], T0 + timedelta(minutes=9))[0] == []
    msgs, (s2,) = A.plan_alerts([ev(4)], [s1], T0 + timedelta(minutes=10))
    assert len(msgs) == 1 and s2.cursor == 4
    # Muted: passed over, no summary either; the summary a day after the last one counts the day's events.
    muted = A.OwnerState("telegram:1", cursor=4, last_summary_at=T0, muted_until=T0 + timedelta(days=2))
    day = [ev(5, at=T0 + timedelta(hours=2)), ev(6, A.FEED_PAUSED, at=T0 + timedelta(hours=3))]
    msgs, (s3,) = A.plan_alerts(day, [muted], T0 + timedelta(days=1))
    assert msgs == [] and s3.cursor == 6 and s3.last_summary_at == T0 + timedelta(days=1)
    unmuted = A.OwnerState("telegram:1", cursor=6, last_summary_at=T0)
    msgs, _ = A.plan_alerts(day, [unmuted], T0 + timedelta(days=1))
    assert [m.heading for m in msgs] == ["newsdigest daily alert summary"]
    assert msgs[0].lines == ("Feed paused: 1", "Feed failing: 1")
    many = [ev(i, subject=f"https://f{i}/") for i in range(1, 40)]
    (big,), _ = A.plan_alerts(many, [A.OwnerState("o")], T0)
    assert len(big.lines) == A.MAX_LINES + 1 and big.lines[-1] == "… and 24 more"


def test_api_health_alerts_after_minutes_of_failures_and_on_recovery() -> None:
    h, kind = A.on_send_result(A.ApiHealth(), False, T0)
    assert kind is None and h.failing_since == T0
    h, kind = A.on_send_result(h, False, T0 + timedelta(minutes=4))
    assert kind is None
    h, kind = A.on_send_result(h, False, T0 + timedelta(minutes=5))
    assert kind == A.API_FAILING
    h, kind = A.on_send_result(h, False, T0 + timedelta(minutes=6))
    assert kind is None
    h, kind = A.on_send_result(h, True, T0 + timedelta(minutes=7))
    assert kind == A.API_RECOVERED and h == A.ApiHealth()
    assert A.on_send_result(A.ApiHealth(T0), True, T0) == (A.ApiHealth(), None)


async def test_a_paused_chat_and_an_unreachable_chat_api_alert_the_owner(api: FakeTelegramAPI,
                                                                         sqlite_store: Store) -> None:
    from tests.fakes.store_queries import enqueue_messages

    clock = ShiftClock()
    async with running(api, sqlite_store, clock, tick_s=3600) as runtime:
        await command(api, OWNER, OWNER, "/alerts")
        await command(api, USER, USER, "/subscribe")
        sub = runtime.chats.get_subscription(ChatRef("telegram", str(USER)))
        assert sub is not None
        api.block(USER)
        enqueue_messages(runtime.chats, sub.chat_db_id, "d1", [{"text": "hello"}], clock.now(), sub.id)
        await runtime.drain(5)
        assert await tick(runtime, clock) == 1
        assert f"Chat delivery paused: telegram:{USER}" in api.sent_to(OWNER)[-1].plain

        # Sends failing with 500 for more than 5 minutes, then getting through: both are told, once.
        api.chats[USER].blocked = False
        api.outage = "500"
        enqueue_messages(runtime.chats, sub.chat_db_id, "d2", [{"text": "again"}], clock.now(), sub.id)
        def failed_sends() -> int:
            return sum(1 for _, method, chat, status in api.log if method == "sendMessage" and chat == USER
                       and status == 500)

        def health() -> A.ApiHealth:
            return runtime._api_health.get("telegram", A.ApiHealth())

        # Wait for the runtime to have counted each failure, not just for the fake to have answered it: the
        # clock must move between the two counts, or the failures are seconds apart and nothing is alerted.
        await api.wait_for(lambda: failed_sends() >= 1 and health().failing_since is not None)
        clock.offset += timedelta(minutes=6)
        await api.wait_for(lambda: failed_sends() >= 2 and health().alerted)
        api.outage = None
        clock.offset += timedelta(minutes=6)
        await runtime.drain(10)
        assert await tick(runtime, clock) == 1
        text = api.sent_to(OWNER)[-1].plain
        assert "Chat API unreachable: telegram" in text and "Chat API reachable again: telegram" in text
        assert "Chat delivery paused" not in text


async def test_a_scale_out_worker_records_a_paused_chat_too(sqlite_store: Store) -> None:
    from bot.distributed.tasks import _failed
    from bot.errors import ChatForbiddenError
    from bot.pipeline.delivery import Limits
    from bot.pipeline.digest import next_due
    from tests.fakes.store_queries import enqueue_messages

    class NoLimiter:
        async def block(self, *_: Any) -> None:
            return None

    chats = ChatStore(sqlite_store.engine)
    ref = ChatRef("telegram", str(USER), title="")
    sub, _ = chats.subscribe(ref, DEFAULTS, datetime.now(UTC), next_due=next_due)
    enqueue_messages(chats, sub.chat_db_id, "d1", [{"text": "hello"}], datetime.now(UTC), sub.id)
    (item,) = chats.claim_outbox(datetime.now(UTC), lease_s=60, limit=5)
    await _failed(SimpleNamespace(limiter=NoLimiter(), chats=chats), item, Limits(),  # type: ignore[arg-type]
                  ChatForbiddenError("Forbidden: bot was blocked by the user"))
    assert chats.get_subscription(ref).paused_reason.startswith("blocked")  # type: ignore[union-attr]
    (event,) = chats.alert_events(0, datetime.now(UTC) - timedelta(hours=1))
    assert (event.kind, event.subject) == (A.CHAT_PAUSED, f"telegram:{USER}")


async def test_owners_menu_lists_alerts_and_feed_commands(sqlite_store: Store) -> None:
    async with FakeTelegramAPI() as api:
        api.add_chat(OWNER)  # an owner who started the bot; a second owner never did (Telegram refuses the menu)
        chats = ChatStore(sqlite_store.engine)
        owners = [*OWNERS, "telegram:77", "discord:5"]
        tg = TelegramChat(TOKEN, CommandService(chats, admins=owners, defaults=DEFAULTS), api_root=api.root,
                          poll_timeout_s=1)
        await tg.start()
        try:
            everyone = [c["command"] for c in api.commands]
            assert "settings" in everyone and "alerts" not in everyone and "addfeed" not in everyone
            assert set(api.chat_commands) == {OWNER}
            mine = [c["command"] for c in api.chat_commands[OWNER]]
            assert mine[:len(everyone)] == everyone
            assert {"alerts", "feeds", "addfeed", "removefeed", "importopml", "exportopml"} <= set(mine)
        finally:
            await tg.stop()
        assert api.unexpected == [], api.unexpected

"""The whole product over real sockets: local feeds -> poll -> topics and stories (real models) -> a Telegram user
and a Discord channel subscribe -> the schedule fires -> both get the digest; `/summary` answers."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.chat.commands import CommandService
from bot.chat.discord_chat import DiscordAdapter
from bot.chat.feed_admin import StoreFeedAdmin
from bot.chat.runtime import ChatRuntime, RuntimeConfig
from bot.chat.telegram_chat import TelegramChat
from bot.clock import utcnow
from bot.models import FeedSpec
from bot.net import Fetcher, FetchLimits
from bot.ports import ChatRef
from bot.runner import Runner
from bot.settings import DigestDefaults
from bot.storage.chat_store import ChatStore
from bot.storage.store import Store
from tests.fakes.clock import ShiftClock
from tests.fakes.discord_api import EVERYONE_PERMISSIONS, MANAGE_GUILD, FakeDiscord
from tests.fakes.discord_api import TOKEN as DISCORD_TOKEN
from tests.fakes.telegram_api import TOKEN as TELEGRAM_TOKEN
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.test_processing import FIRST, SECOND, SPORT, make_processor, processor_parts, rss  # noqa: F401

DEFAULTS = DigestDefaults(times=("08:00",), timezone="UTC", max_stories=5, min_topic_score=0.5, topics=("world",),
                          summary_cooldown_s=30)
LAVROV_A = "Breaking: Russia Warns NATO – No Troops in Ukraine Allowed!"
LAVROV_B = "JUST IN – Russia will not tolerate any NATO troops in Ukraine — Lavrov"



async def test_feeds_to_digests_in_telegram_and_discord(store: Store, feed_server, processor_parts,  # noqa: ANN001, F811
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    feed_server.files["/a.xml"] = rss([(LAVROV_A, "https://a.example/lavrov", FIRST),
                                       ("City beat Arsenal to go top", "https://a.example/football", SPORT)])
    feed_server.files["/b.xml"] = rss([(LAVROV_B, "https://b.example/lavrov-nato", SECOND)])
    store.add_feed(FeedSpec(url=feed_server.url("/a.xml"), name="Outlet A"), "cli")
    store.add_feed(FeedSpec(url=feed_server.url("/b.xml"), name="Outlet B"), "cli")

    clock = ShiftClock()
    chats = ChatStore(store.engine)
    commands = CommandService(chats, admins=set(), defaults=DEFAULTS, clock=clock.now, topics=("world",),
                              feed_admin=StoreFeedAdmin(store, allow_private=False))
    async with FakeDiscord() as discord_api, FakeTelegramAPI() as telegram_api:
        discord_api.install(monkeypatch)
        guild = discord_api.add_guild("World desk", channels=("news",))
        news = next(iter(guild.channels))
        tg = TelegramChat(TELEGRAM_TOKEN, commands, api_root=telegram_api.root, poll_timeout_s=1)
        dc = DiscordAdapter(DISCORD_TOKEN, commands)
        runtime = ChatRuntime(chats, DEFAULTS, [tg, dc], services=[tg, dc],
                              clock=clock, config=RuntimeConfig(scheduler_tick_s=0.1, claim_interval_s=0.05))
        await runtime.start()
        try:
            telegram_api.add_chat(77)
            telegram_api.user_message(77, 77, "/subscribe")
            assert "Subscribed" in (await telegram_api.wait_sent(77, 1))[0].plain
            iid = await discord_api.slash(news, "subscribe", permissions=EVERYONE_PERMISSIONS | MANAGE_GUILD)
            await discord_api.wait_for(lambda: iid in discord_api.callbacks)

            # The pipeline: poll the local feeds, then topics, stories and summaries on the real models.
            async with Fetcher(FetchLimits(allow_private=True)) as fetcher:
                report = await Runner(store, fetcher, processor=make_processor(store, processor_parts)).cycle()
            assert report.new_articles == 3 and report.failed == []

            sub = chats.get_subscription(ChatRef("telegram", "77"))
            clock.offset = sub.next_due_at - utcnow() + timedelta(seconds=1)
            await telegram_api.wait_sent(77, 2, timeout=20)
            await discord_api.wait_sent(news, 1, timeout=20)
            await runtime.drain(10)

            telegram_api.user_message(77, 77, "/summary 24h")
            summary_reply = (await telegram_api.wait_sent(77, 3, timeout=20))[2:]
        finally:
            await runtime.stop()
        assert telegram_api.unexpected == [] and discord_api.invalid == [] and discord_api.too_fast == []

    digest = "\n".join(m.plain for m in telegram_api.sent_to(77)[1:2])
    assert "1 top story" in digest and LAVROV_A in digest, digest
    assert "Outlet B" in digest and "Lavrov" in digest and "Arsenal" not in digest
    links = {e["url"] for m in telegram_api.sent_to(77)[1:2] for e in m.entities if e["type"] == "text_link"}
    assert {"https://a.example/lavrov", "https://b.example/lavrov-nato"} <= links

    embeds = [e for p in discord_api.sent_to(news) for e in p["embeds"]]
    assert [e["title"] for e in embeds] == [LAVROV_A]
    assert "Outlet B" in " ".join(f["value"] for f in embeds[0]["fields"]) and "Lavrov" in embeds[0]["description"]

    # /summary on demand: the same pipeline's digest for the period asked.
    assert LAVROV_A in summary_reply[0].plain and "also reported by Outlet B" in summary_reply[0].plain

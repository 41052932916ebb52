"""Slash-command flows of the Discord adapter, driven through simcord's simulated Discord (real discord.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass

import discord
import pytest
import simcord

from bot.chat.commands import CommandService
from bot.chat.discord_chat import DiscordBot
from bot.chat.feed_admin import StoreFeedAdmin
from bot.clock import utcnow
from bot.ports import ChatRef, LinkSummary
from bot.settings import DigestDefaults
from bot.storage.chat_store import ChatStore
from bot.storage.store import Store
from tests.fakes.discord_api import payload_problems
from tests.fakes.feed_probe import reachable_feed
from tests.fakes.stories import seed

DEFAULTS = DigestDefaults(times=("08:00",), timezone="UTC", max_stories=4, min_topic_score=0.5,
                          topics=("world",), summary_cooldown_s=30)
OPML = (b'<?xml version="1.0"?><opml version="2.0"><head/><body>'
        b'<outline type="rss" text="A" xmlUrl="https://a.example/feed"/>'
        b'<outline type="rss" text="L" xmlUrl="http://localhost/feed"/></body></opml>')


@dataclass
class World:
    env: simcord.Env
    bot: DiscordBot
    store: Store
    chats: ChatStore
    guild: simcord.GuildHandle
    channel: simcord.ChannelHandle
    mod: simcord.MemberActor
    member: simcord.MemberActor
    owner: simcord.MemberActor

    def ref(self) -> ChatRef:
        return ChatRef("discord", str(self.channel.id))

    def command_id(self, name: str) -> int:
        return int(self.env.backend.find_command(name, None)["id"])


def service(store: Store, chats: ChatStore, admins: set[str]) -> CommandService:
    return CommandService(chats, admins=admins, defaults=DEFAULTS, topics=("world", "economy"),
                          feed_admin=StoreFeedAdmin(store, allow_private=False, probe=reachable_feed))


@pytest.fixture
def chats(sqlite_store: Store) -> ChatStore:
    return ChatStore(sqlite_store.engine)


@pytest.fixture
def simcord_bot(sqlite_store: Store, chats: ChatStore) -> DiscordBot:
    """The bot simcord's `simcord_env` runs (logged in, commands synced, READY)."""
    return DiscordBot(service(sqlite_store, chats, set()))


@pytest.fixture
def world(simcord_env: simcord.Env, simcord_bot: DiscordBot, sqlite_store: Store, chats: ChatStore) -> Iterator[World]:
    env = simcord_env
    guild = env.create_guild("World desk")
    channel = guild.create_text_channel("news")
    mods = guild.create_role("Mods", permissions=discord.Permissions(manage_guild=True))
    w = World(env, simcord_bot, sqlite_store, chats, guild, channel,
              mod=guild.add_member(env.create_user("mod"), roles=[mods]),
              member=guild.add_member(env.create_user("member")),
              owner=guild.add_member(env.create_user("owner"), roles=[mods]))
    # The owners list names a user id, known once simcord made the user.
    simcord_bot.service = service(sqlite_store, chats, {f"discord:{w.owner.id}"})
    yield w
    for entry in env.http_requests:
        if entry.method == "POST" and entry.path.endswith("/messages") and isinstance(entry.json, dict):
            assert payload_problems("MessageCreateRequest", entry.json) == []


async def test_commands_are_synced_with_minimal_intents_and_permissions(world: World) -> None:
    assert world.bot.intents.value == discord.Intents(guilds=True).value
    assert not world.bot.intents.message_content
    names = set(world.mod.available_commands(world.channel))
    assert {"subscribe", "unsubscribe", "summary", "settings", "help", "feeds", "importopml"} <= names
    # Plain members do not even see the commands that change the channel's subscription or the feeds.
    visible = set(world.member.available_commands(world.channel))
    assert "summary" in visible and "help" in visible
    assert not visible & {"subscribe", "unsubscribe", "settings", "addfeed", "importopml"}


async def test_subscribe_settings_and_buttons(world: World) -> None:
    r = await world.mod.slash(world.channel, "subscribe")
    assert not r.ephemeral and "Subscribed this chat" in r.response.content and "08:00" in r.response.content
    sub = world.chats.get_subscription(world.ref())
    assert sub is not None and sub.active and sub.chat.kind == "group" and "World desk" in sub.chat.title

    r = await world.mod.slash(world.channel, "settings", setting="times", value="07:30 19:00")
    assert "at 07:30, 19:00 (UTC)" in r.response.content
    r = await world.mod.slash(world.channel, "settings", setting="timezone", value="Mars/Olympus")
    assert r.ephemeral and "not a time zone I know" in r.response.content
    r = await world.mod.slash(world.channel, "settings", value="5")
    assert r.ephemeral and "Choose which setting" in r.response.content

    r = await world.mod.slash(world.channel, "settings")
    assert r.response.components, "settings come with buttons"
    clicked = await world.mod.click(r.response.message, custom_id="st:m:5")
    assert clicked.acknowledged
    edited = world.channel.last_message
    assert edited.id == r.response.id and "at most 5" in edited.content
    labels = [c.label for row in edited.components for c in row.children]
    assert "✓ 5 stories" in labels
    sub = world.chats.get_subscription(world.ref())
    assert sub is not None and sub.max_stories == 5 and sub.schedule.times == ("07:30", "19:00")
    # Anyone can press a button; only Manage Server members change anything.
    refused = await world.member.click(edited, custom_id="st:m:3")
    assert refused.ephemeral and "Manage Server" in refused.response.content
    assert world.channel.last_message.content == edited.content
    assert world.chats.get_subscription(world.ref()).max_stories == 5

    r = await world.mod.slash(world.channel, "unsubscribe")
    assert "Unsubscribed" in r.response.content
    sub = world.chats.get_subscription(world.ref())
    assert sub is not None and not sub.active and sub.max_stories == 5, "settings are kept"


async def test_manage_server_is_checked_again_at_run_time(world: World) -> None:
    # A server may let everyone see /subscribe; the bot still refuses members without Manage Server.
    world.guild.set_command_permissions(world.command_id("subscribe"), {world.guild.default_role: True})
    assert "subscribe" in world.member.available_commands(world.channel)
    r = await world.member.slash(world.channel, "subscribe")
    assert r.ephemeral and "only members with the Manage Server permission" in r.response.content
    assert world.chats.get_subscription(world.ref()) is None


async def test_summary_digest_period_and_errors(world: World) -> None:
    seed(world.store, utcnow(), 6, summary_chars=1500)
    r = await world.member.slash(world.channel, "summary", period="12h")
    assert not r.ephemeral
    messages = [r.response, *r.followups]
    assert messages[0].content.startswith("**News digest** · 4 stories")
    embeds = [e for m in messages for e in m.embeds]
    assert len(embeds) == DEFAULTS.max_stories
    assert embeds[0].title.startswith("Story 3: leaders meet <again> & talk")
    assert all(len(m.embeds) <= 10 and sum(len(e) for e in m.embeds) <= 6000 for m in messages)
    assert any(f.name == "Also reported by" and "BBC <World>" in f.value for e in embeds for f in e.fields)

    r = await world.member.slash(world.channel, "summary")
    assert r.ephemeral and "Please wait" in r.response.content
    r = await world.member.slash(world.channel, "summary", period="yesterday")
    assert r.ephemeral and "neither a period" in r.response.content
    r = await world.member.slash(world.channel, "summary", period="6h", link="https://a.example/x")
    assert r.ephemeral and "either a period or a link" in r.response.content
    other = world.guild.create_text_channel("elsewhere")
    r = await world.member.slash(other, "summary", period="1h")
    assert not r.ephemeral and "No new stories since" in r.response.content


async def test_slow_work_is_deferred_then_answered(world: World, chats: ChatStore) -> None:
    calls: list[str] = []

    async def summarize(url: str) -> LinkSummary:
        """Stands in for the link-summary pipeline; only its slowness matters here (longer than 3 s)."""
        calls.append(url)
        await asyncio.sleep(5)
        return LinkSummary(url=url, title="Talks resume", summary="Delegations met.", outlet="Example News")

    world.bot.service = CommandService(chats, admins=(), defaults=DEFAULTS, summarize=summarize)
    r = await world.member.slash(world.channel, "summary", link="https://news.example/a_(1)")
    assert calls == ["https://news.example/a_(1)"]
    assert r.deferred and not r.ephemeral
    await world.env.advance_time(5)
    answer = r.response
    assert answer.content == ("**Talks resume**\n\nDelegations met.\n\n"
                              "[Example News](https://news.example/a_%281%29)")


async def test_owner_feed_commands_and_opml(world: World) -> None:
    r = await world.mod.slash(world.channel, "addfeed", url="https://example.com/rss")
    assert r.ephemeral and "only the bot's owners" in r.response.content

    r = await world.owner.slash(world.channel, "addfeed", url="https://example.com/rss")
    assert r.ephemeral and "Added feed" in r.response.content
    r = await world.owner.slash(world.channel, "importopml", file=("feeds.opml", OPML))
    assert r.ephemeral and "1 added" in r.response.content and "1 rejected" in r.response.content
    r = await world.mod.slash(world.channel, "importopml", file=("feeds.opml", OPML))
    assert "only the bot's owners" in r.response.content
    r = await world.owner.slash(world.channel, "feeds")
    assert "https://a.example/feed" in r.response.content and "example.com/rss" in r.response.content
    r = await world.owner.slash(world.channel, "exportopml")
    (attachment,) = r.response.attachments
    assert attachment.filename == "newsdigest-feeds.opml"
    assert b"https://a.example/feed" in await attachment.read()
    r = await world.owner.slash(world.channel, "removefeed", feed="999")
    assert r.ephemeral and "No feed “999”" in r.response.content


async def test_help_is_private_and_lists_what_the_user_may_do(world: World) -> None:
    r = await world.member.slash(world.channel, "help")
    assert r.ephemeral and "/subscribe" in r.response.content and "/addfeed" not in r.response.content
    r = await world.owner.slash(world.channel, "help")
    assert "/addfeed" in r.response.content

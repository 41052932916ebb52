"""Owner alerts by direct message and chat filters from /settings, end to end on Discord: the real discord.py
adapter against the fake Discord REST + gateway (tests/fakes/discord_api.py), the real Runner recording feed
events and the chat runtime queuing and sending them. Every body the bot sends is checked against Discord's
schema and limits (`fake.invalid`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from bot.chat.commands import CommandService
from bot.chat.discord_chat import DiscordAdapter
from bot.chat.runtime import ChatRuntime, RuntimeConfig
from bot.clock import utcnow
from bot.pipeline import alerts as A
from bot.ports import ChatRef
from bot.runner import Runner
from bot.settings import DigestDefaults
from bot.storage.chat_store import ChatStore
from bot.storage.store import Store
from bot.storage.tables import alert_events, outbox
from tests.fakes.clock import ShiftClock
from tests.fakes.discord_api import EVERYONE_PERMISSIONS, MANAGE_GUILD, TOKEN, FakeDiscord, FakeGuild
from tests.fakes.stories import seed
from tests.test_owner_alerts import FailingFetcher, add_feeds, gone

OWNER, SHY_OWNER, MEMBER = 4242, 4343, 5151  # SHY_OWNER's privacy settings refuse direct messages
ADMIN_PERMS = EVERYONE_PERMISSIONS | MANAGE_GUILD
DEFAULTS = DigestDefaults(times=("08:00",), timezone="UTC", max_stories=8, min_topic_score=0.5,
                          topics=("world",), summary_cooldown_s=30)


@dataclass
class Rig:
    fake: FakeDiscord
    guild: FakeGuild
    store: Store
    chats: ChatStore
    runtime: ChatRuntime
    clock: ShiftClock

    @property
    def news(self) -> int:
        return next(iter(self.guild.channels))

    async def slash(self, name: str, options: list[dict[str, Any]] | None = None, *, user_id: int = MEMBER,
                    permissions: int = ADMIN_PERMS) -> dict[str, Any]:
        """Run a slash command in #news; returns the interaction callback body."""
        iid = await self.fake.slash(self.news, name, options, user_id=user_id, permissions=permissions)
        await self.fake.wait_for(lambda: iid in self.fake.callbacks)
        return self.fake.callbacks[iid]

    async def click(self, message: dict[str, Any], custom_id: str, *, user_id: int = MEMBER,
                    permissions: int = ADMIN_PERMS) -> dict[str, Any]:
        """Press a button of a message the bot sent in #news; returns the interaction callback body."""
        iid = await self.fake.click(self.news, message, custom_id, user_id=user_id, permissions=permissions)
        await self.fake.wait_for(lambda: iid in self.fake.callbacks)
        return self.fake.callbacks[iid]

    async def tick(self) -> int:
        """One scheduler pass for owner alerts, then the outbox drained."""
        n = await asyncio.to_thread(self.runtime.schedule_alerts, self.clock.now())
        await self.runtime.drain(5)
        return n


def opt(name: str, value: str) -> dict[str, Any]:
    return {"name": name, "type": 3, "value": value}


def buttons(message: dict[str, Any]) -> dict[str, str]:
    """Label -> custom_id of a message's buttons."""
    return {c["label"]: c["custom_id"] for row in message.get("components") or [] for c in row["components"]}


@pytest.fixture
async def rig(sqlite_store: Store, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Rig]:
    clock = ShiftClock()
    owners = [f"discord:{OWNER}", f"discord:{SHY_OWNER}"]
    async with FakeDiscord() as fake:
        fake.install(monkeypatch)
        guild = fake.add_guild("World desk", channels=("news",))
        chats = ChatStore(sqlite_store.engine)
        service = CommandService(chats, admins=owners, defaults=DEFAULTS, clock=clock.now,
                                 topics=("world", "economy"))
        adapter = DiscordAdapter(TOKEN, service, guild_ready_timeout=0.05)
        # A long tick: the tests run the alert scheduler themselves (Rig.tick), the sender runs on its own.
        runtime = ChatRuntime(chats, DEFAULTS, [adapter], services=[adapter], clock=clock, owners=owners,
                              alerts=chats, config=RuntimeConfig(scheduler_tick_s=3600, claim_interval_s=0.05,
                                                                 lease_s=30))
        await runtime.start()
        try:
            await adapter.wait_until_ready(5)
            yield Rig(fake, guild, sqlite_store, chats, runtime, clock)
        finally:
            await runtime.stop()
        assert fake.invalid == [], fake.invalid
        assert fake.too_fast == [], fake.too_fast


async def test_owners_get_alerts_by_direct_message_and_closed_dms_are_data(rig: Rig) -> None:
    fake = rig.fake
    fake.closed_dms.add(SHY_OWNER)
    # Owners need no command first: the adapter registered their direct-message chats at start.
    (url,) = add_feeds(rig.store, 1)
    await Runner(rig.store, FailingFetcher(gone)).poll_once(force=True)  # type: ignore[arg-type]
    assert await rig.tick() == 2
    (alert,) = fake.dm_to(OWNER)
    assert "**newsdigest alerts**" in alert["content"] and "Feed paused" in alert["content"]
    assert url in alert["content"] and "410" in alert["content"]
    assert alert["allowed_mentions"] == {"parse": []}
    # The shy owner's DM was refused (403/50007): the part is cancelled, nothing crashed, nobody is told.
    assert fake.dm_to(SHY_OWNER) == [] and SHY_OWNER in fake.dms
    with rig.store.engine.connect() as conn:
        statuses = sorted(conn.execute(select(outbox.c.status)).scalars())
        kinds = list(conn.execute(select(alert_events.c.kind)).scalars())
    assert statuses == ["cancelled", "sent"]
    assert kinds == [A.FEED_PAUSED], "a refused owner DM is no alert of its own"
    assert rig.runtime.stats["paused"] == 1 and rig.runtime.stats["sent"] == 1

    # Later the shy owner opens their DMs: the next alert reaches them; the DM channel is opened once.
    fake.closed_dms.clear()
    rig.clock.offset += timedelta(minutes=11)
    add_feeds(rig.store, 1, prefix="second")
    await Runner(rig.store, FailingFetcher(gone)).poll_once(force=True)  # type: ignore[arg-type]
    assert await rig.tick() == 2
    assert len(fake.dm_to(OWNER)) == 2 and len(fake.dm_to(SHY_OWNER)) == 1
    assert "second.xml" in fake.dm_to(SHY_OWNER)[0]["content"]
    opened = [r for r in fake.requests if r.method == "POST" and r.path == "/users/@me/channels"]
    assert len(opened) == 2, "one DM channel per owner, kept by discord.py"


async def test_alerts_slash_command_mutes_and_is_for_owners_only(rig: Rig) -> None:
    fake = rig.fake
    commands = {c["name"]: c for c in fake.commands[None]}
    assert commands["alerts"]["default_member_permissions"] == MANAGE_GUILD
    assert [o["name"] for o in commands["alerts"]["options"]] == ["state"]

    body = await rig.slash("alerts", user_id=OWNER)
    assert body["data"]["flags"] & 64, "owner commands answer only the owner"
    assert "Owner alerts: on" in body["data"]["content"] and "direct messages" in body["data"]["content"]
    body = await rig.slash("alerts", [opt("state", "off")], user_id=OWNER)
    assert "Owner alerts: off" in body["data"]["content"]
    body = await rig.slash("alerts", [opt("state", "off")], user_id=MEMBER)
    assert body["data"]["flags"] & 64 and "only the bot's owners" in body["data"]["content"]
    body = await rig.slash("alerts", [opt("state", "soon")], user_id=OWNER)
    assert "Usage: /alerts" in body["data"]["content"]

    add_feeds(rig.store, 1)
    await Runner(rig.store, FailingFetcher(gone)).poll_once(force=True)  # type: ignore[arg-type]
    await rig.tick()
    assert fake.dm_to(OWNER) == [], "muted"
    assert len(fake.dm_to(SHY_OWNER)) == 1, "the other owner's alerts are not muted"
    body = await rig.slash("alerts", [opt("state", "on")], user_id=OWNER)
    assert "Owner alerts: on" in body["data"]["content"]
    help_text = (await rig.slash("help", user_id=OWNER))["data"]["content"]
    assert "/alerts [state: on|off|24h]" in help_text
    assert "/alerts" not in (await rig.slash("help", user_id=MEMBER))["data"]["content"]


async def test_filters_from_settings_buttons_and_options_shape_the_digest(rig: Rig) -> None:
    assert "Subscribed" in (await rig.slash("subscribe"))["data"]["content"]
    body = await rig.slash("settings", [opt("setting", "mute"), opt("value", "word Story 3, war")])
    assert "Muted words: Story 3, war." in body["data"]["content"]
    body = await rig.slash("settings", [opt("setting", "mute"), opt("value", "outlet Reuters")])
    assert "Muted outlets: Reuters." in body["data"]["content"]
    body = await rig.slash("settings", [opt("setting", "require"), opt("value", "economy chips, open source")])
    assert "economy stories need one of: chips, open source." in body["data"]["content"]

    settings = (await rig.slash("settings"))["data"]
    assert "Muted words: Story 3, war." in settings["content"]
    # The filters view replaces the settings message: one remove button per entry, and the way back.
    view = (await rig.click(settings, buttons(settings)["Filters (5)"]))
    assert view["type"] == 7, "the settings message is edited in place"
    view = view["data"]
    for line in ("Muted word: Story 3", "Muted word: war", "Muted outlet: Reuters", "Required for economy: chips"):
        assert line in view["content"]
    labels = buttons(view)
    assert {"✕ Story 3", "✕ war", "✕ outlet Reuters", "✕ economy: chips", "✕ economy: open source",
            "‹ Settings"} == set(labels)
    # Only members with Manage Server change anything; a refusal is for the presser's eyes only.
    refused = await rig.click(view, labels["✕ war"], permissions=EVERYONE_PERMISSIONS)
    assert refused["type"] == 4 and refused["data"]["flags"] & 64 and "Manage Server" in refused["data"]["content"]
    view = (await rig.click(view, labels["✕ war"]))["data"]
    assert "Muted word: war" not in view["content"] and "✕ war" not in buttons(view)
    # The same button on the old message again: nothing more goes, the view says so by showing what is left.
    again = (await rig.click({**view, "components": [{"type": 1, "components": [
        {"type": 2, "style": 2, "label": "✕ war", "custom_id": labels["✕ war"]}]}]}, labels["✕ war"]))["data"]
    assert "Muted word: Story 3" in again["content"]
    view = (await rig.click(view, labels["✕ economy: chips"]))["data"]
    view = (await rig.click(view, labels["✕ economy: open source"]))["data"]
    sub = rig.chats.get_subscription(ChatRef("discord", str(rig.news)))
    assert sub is not None and sub.filters.muted_words == ("Story 3",) and not sub.filters.required
    assert sub.filters.muted_outlets == ("Reuters",)
    back = (await rig.click(view, buttons(view)["‹ Settings"]))["data"]
    assert "Digest settings" in back["content"] and "Filters (2)" in buttons(back)

    # The digest: story 3 is muted by word, stories 0 and 4 come from Reuters only.
    assert sub.next_due_at is not None
    seed(rig.store, sub.next_due_at, 6)
    rig.clock.offset = sub.next_due_at - utcnow() + timedelta(seconds=1)
    await asyncio.to_thread(rig.runtime.schedule_due, rig.clock.now())
    await rig.runtime.drain(10)
    parts = rig.fake.sent_to(rig.news)
    titles = [e["title"] for p in parts for e in p["embeds"]]
    assert sorted(t.split(":")[0] for t in titles) == ["Story 1", "Story 2", "Story 5"]
    assert not any("Reuters" in f["value"] for p in parts for e in p["embeds"] for f in e.get("fields", []))

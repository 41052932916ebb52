"""Authorization matrix: every admin command on both platforms, from the bot's owner, a chat admin, a member and a
stranger, in a private chat, a group (a Discord server channel or thread) and a channel, checked against ONE table.

`user_is_chat_admin` is what the adapters compute: Telegram says True in a private chat and for a channel post (only
a channel's admins can post), and asks getChatMember in groups and for every button press outside a private
chat (any channel reader can press a button); Discord passes the member's Manage Server permission. A stranger is
someone who is not in the chat (a channel reader pressing a button, a user of another server); Discord has no
private chats (the adapter refuses DMs before the command layer).
"""

from __future__ import annotations

import pytest

from bot.chat.commands import COMMANDS, CommandService
from bot.chat.feed_admin import StoreFeedAdmin
from bot.pipeline.digest import next_due
from bot.ports import CHANNEL, GROUP, PRIVATE, ChatRef, Invocation, Reply
from bot.settings import DigestDefaults
from bot.storage.chat_store import ChatStore
from bot.storage.store import Store
from tests.fakes.feed_probe import reachable_feed

OWNER_ID = "1"
COMMAND_SPECS = {c.name: c for c in COMMANDS}
OPML = (b'<?xml version="1.0"?><opml version="2.0"><head/><body>'
        b'<outline type="rss" text="A" xmlUrl="https://a.example/feed"/></body></opml>')

# command -> (args, attachment, callback data)
CHAT_ADMIN_COMMANDS = {"subscribe": (), "settings": ("max", "5"), "callback": (), "unsubscribe": ()}
OWNER_COMMANDS = {"feeds": (), "addfeed": ("https://new.example/rss",), "removefeed": ("999",), "importopml": (),
                  "exportopml": (), "alerts": ("off",)}

A, OWN, ADM = "allowed", "owner only", "chat admins only"
# THE table: (platform, where, who) -> (chat-admin commands, owner commands). Each role's user_is_chat_admin is
# the adapter's answer for that user there; the owner is not a chat admin unless they are one.
MATRIX: dict[tuple[str, str, str], tuple[str, str]] = {
    ("telegram", "private", "owner"): (A, A),
    ("telegram", "private", "member"): (A, OWN),  # one's own private chat with the bot
    ("telegram", "group", "owner"): (ADM, A),
    ("telegram", "group", "chat admin"): (A, OWN),
    ("telegram", "group", "member"): (ADM, OWN),
    ("telegram", "group", "stranger"): (ADM, OWN),
    ("telegram", "channel", "owner"): (ADM, A),  # a reader pressing a button: not the channel's admin
    ("telegram", "channel", "chat admin"): (A, OWN),
    ("telegram", "channel", "stranger"): (ADM, OWN),
    ("telegram", "forum topic", "chat admin"): (A, OWN),
    ("telegram", "forum topic", "member"): (ADM, OWN),
    ("discord", "channel", "owner"): (ADM, A),
    ("discord", "channel", "chat admin"): (A, OWN),  # Manage Server
    ("discord", "channel", "member"): (ADM, OWN),
    ("discord", "channel", "stranger"): (ADM, OWN),
    ("discord", "thread", "owner"): (ADM, A),
    ("discord", "thread", "chat admin"): (A, OWN),
    ("discord", "thread", "member"): (ADM, OWN),
}

WHERE = {"private": (PRIVATE, ""), "group": (GROUP, ""), "channel": (CHANNEL, ""), "forum topic": (GROUP, "77"),
         "thread": (GROUP, "88")}
USERS = {"owner": OWNER_ID, "chat admin": "20", "member": "30", "stranger": "40"}


def chat_of(platform: str, where: str, who: str) -> ChatRef:
    kind, thread = WHERE[where]
    if platform == "discord" and where == "channel":
        kind = GROUP  # a server text channel: Discord's group chat
    chat_id = USERS[who] if where == "private" else "-500"
    return ChatRef(platform, chat_id, thread, kind, title="" if where == "private" else "desk")


def outcome(reply: Reply) -> str:
    words = "".join(s.text for b in reply.blocks for s in b) + (reply.notice or "")
    if "only the bot's owners" in words:
        return OWN
    if "administrators can" in words or "Manage Server permission can" in words:
        return ADM
    return A


@pytest.fixture
def svc(sqlite_store: Store) -> CommandService:
    defaults = DigestDefaults(topics=(), summary_cooldown_s=60)
    return CommandService(ChatStore(sqlite_store.engine), admins={f"telegram:{OWNER_ID}", f"discord:{OWNER_ID}"},
                          defaults=defaults,
                          feed_admin=StoreFeedAdmin(sqlite_store, allow_private=False, probe=reachable_feed))


@pytest.mark.parametrize(("platform", "where", "who"), list(MATRIX))
async def test_authorization_matrix(svc: CommandService, platform: str, where: str, who: str) -> None:
    chat = chat_of(platform, where, who)
    is_chat_admin = who == "chat admin" or where == "private"
    # The chat is subscribed (by its admins) so that settings and its buttons have something to change.
    svc.chats.subscribe(chat, svc.defaults, svc.clock(), next_due=next_due)
    expected_chat, expected_owner = MATRIX[(platform, where, who)]
    for command, args in CHAT_ADMIN_COMMANDS.items():
        inv = Invocation(platform, chat, USERS[who], command, args, user_is_chat_admin=is_chat_admin,
                         callback_data="st:m:3" if command == "callback" else None)
        before = svc.chats.get_subscription(chat)
        reply = await svc.handle(inv)
        got = outcome(reply)
        assert got == expected_chat, (command, platform, where, who, got, reply)
        if got != A:
            assert reply.error and svc.chats.get_subscription(chat) == before, "a refusal changes nothing"
    for command, args in OWNER_COMMANDS.items():
        if COMMAND_SPECS[command].usage(platform) is None:
            continue  # /alerts is Telegram's only (owners' private chats)
        inv = Invocation(platform, chat, USERS[who], command, args, user_is_chat_admin=is_chat_admin,
                         attachment=OPML if command == "importopml" else None)
        reply = await svc.handle(inv)
        assert outcome(reply) == expected_owner, (command, platform, where, who, reply)
    added = {f.url for f in svc.feed_admin.list()}  # type: ignore[union-attr]
    assert bool(added) == (expected_owner == A), "only an owner's commands change the feed list"


def test_the_table_covers_every_admin_command_and_role() -> None:
    from bot.chat.commands import COMMANDS, needs_chat_admin

    owner_only = {c.name for c in COMMANDS if c.owner_only}
    assert owner_only == set(OWNER_COMMANDS)
    assert {c.name for c in COMMANDS if needs_chat_admin(c.name)} | {"callback"} == set(CHAT_ADMIN_COMMANDS)
    for platform in ("telegram", "discord"):
        roles = {who for (p, _, who) in MATRIX if p == platform}
        assert roles == set(USERS), platform


async def test_a_channel_reader_cannot_press_the_settings_buttons_on_telegram(sqlite_store: Store) -> None:
    """The adapter's part of the table: a channel post counts as its admins', a button press is checked."""
    from bot.chat.telegram_chat import TelegramChat
    from tests.fakes.telegram_api import TOKEN, FakeTelegramAPI

    channel, admin, reader = -900, 7, 99
    chats = ChatStore(sqlite_store.engine)
    service = CommandService(chats, admins=(), defaults=DigestDefaults(topics=(), max_stories=8))
    async with FakeTelegramAPI() as api:
        tg = TelegramChat(TOKEN, service, api_root=api.root, poll_timeout_s=1)
        await tg.start()
        try:
            api.add_chat(channel, "channel", "News channel", admins={admin})
            api.user_message(channel, admin, "/subscribe")
            await api.wait_sent(channel, 1)  # updates are handled concurrently: one at a time here
            api.user_message(channel, admin, "/settings")
            (_, settings) = await api.wait_sent(channel, 2)
            assert settings.reply_markup is not None
            api.press_button(settings, reader, "st:m:3")
            await api.wait_for(lambda: len(api.callback_answers) >= 1)
            assert "channel's administrators" in api.callback_answers[-1]["text"]
            assert chats.get_subscription(ChatRef("telegram", str(channel))).max_stories == 8
            api.press_button(settings, admin, "st:m:3")
            await api.wait_for(lambda: len(api.callback_answers) >= 2)
            assert api.callback_answers[-1]["text"] == "Saved."
            assert chats.get_subscription(ChatRef("telegram", str(channel))).max_stories == 3
        finally:
            await tg.stop()

"""Time zone names in any case: `europe/berlin` is Europe/Berlin, stored in its canonical spelling."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.chat.commands import CommandService
from bot.ports import ChatRef, Invocation, Reply
from bot.settings import DigestDefaults, canonical_timezone, load_feeds_file
from bot.storage.chat_store import ChatStore
from bot.storage.store import Store

CHAT = ChatRef("telegram", "10")


@pytest.mark.parametrize("name,canonical", [("europe/berlin", "Europe/Berlin"), ("EUROPE/BERLIN", "Europe/Berlin"),
                                            ("utc", "UTC"), ("america/new_york", "America/New_York"),
                                            (" Asia/Kolkata ", "Asia/Kolkata"), ("Mars/Base", None),
                                            ("Europe", None), ("", None), ("../etc/passwd", None)])
def test_canonical_timezone(name: str, canonical: str | None) -> None:
    assert canonical_timezone(name) == canonical


def _text(reply: Reply) -> str:
    return "\n".join("".join(s.text for s in b) for b in reply.blocks)


async def test_settings_timezone_accepts_any_case_and_stores_the_canonical_name(sqlite_store: Store) -> None:
    chats = ChatStore(sqlite_store.engine)
    svc = CommandService(chats, admins=(), defaults=DigestDefaults())

    async def run(*args: str) -> str:
        return _text(await svc.handle(Invocation("telegram", CHAT, "5", args[0], args[1:], user_is_chat_admin=True)))

    await run("subscribe")
    assert "Europe/Berlin" in await run("settings", "timezone", "europe/berlin")
    assert chats.get_subscription(CHAT).schedule.timezone == "Europe/Berlin"
    assert "not a time zone" in await run("settings", "timezone", "Europe")
    assert chats.get_subscription(CHAT).schedule.timezone == "Europe/Berlin"


def test_feeds_file_timezone_in_any_case(tmp_path: Path) -> None:
    p = tmp_path / "feeds.yaml"
    p.write_text("digest: {timezone: asia/tokyo}")
    assert load_feeds_file(p).digest.timezone == "Asia/Tokyo"

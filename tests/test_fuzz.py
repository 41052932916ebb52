"""Fuzzing in CI: every target of bench/fuzz.py for a fixed seed and a bounded budget (about a minute in all),
plus regression tests for what fuzzing found."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from bot.chat.commands import CommandService, parse_command
from bot.chat.discord_chat import slash_invocation
from bot.chat.feed_admin import StoreFeedAdmin
from bot.chat.render_telegram import TelegramRenderer
from bot.errors import CommandError, ConfigError
from bot.ports import GROUP, Button, ChatRef, Invocation, Reply, para
from bot.settings import DigestDefaults, load_feeds_file
from bot.storage.chat_store import ChatStore
from bot.storage.store import Store
from tests.fakes.feed_probe import reachable_feed

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import fuzz  # noqa: E402

ENGINE = "atheris" if importlib.util.find_spec("atheris") else "random"
# Inputs per target, sized from measured rates so that each takes a few seconds; the time cap bounds slow machines.
RUNS = {"entry": 150, "article": 1500, "opml": 20000, "feeds_file": 3000, "commands": 3000,
        "discord_commands": 1500, "render_telegram": 2000, "render_discord": 2000}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("target", fuzz.TARGETS)
def test_target_only_returns_or_raises_our_errors(target: str, tmp_path: Path) -> None:
    (result,) = fuzz.fuzz_all([target], runs=RUNS[target], seconds=7, seed=1, engine=ENGINE, artifacts=tmp_path,
                              timeout=120)
    assert not result["crashed"], result["output"][-4000:]
    assert result["executions"] > 0, result


def test_every_target_has_a_budget() -> None:
    assert set(RUNS) == set(fuzz.TARGETS)


def test_seeds_run_clean() -> None:
    """The seed corpora themselves (real fixtures) never crash a target."""
    for name in fuzz.TARGETS:
        target = fuzz.make_target(name)
        for data in fuzz.seeds(name):
            target(data)


# Regressions found by fuzzing -------------------------------------------------------------------------------


def test_feeds_file_url_with_an_escaped_lone_surrogate_is_a_config_error(tmp_path: Path) -> None:
    """YAML's "\\ud800" escape made a URL that passed validation and crashed the database insert."""
    path = tmp_path / "feeds.yaml"
    path.write_text('feeds:\n  - url: "https://example.org/\\ud800x"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"feeds\[0\]\.url: .*lone surrogates"):
        load_feeds_file(path)


def test_command_text_with_lone_surrogates_parses_to_storable_arguments() -> None:
    """'/removefeed \\udcff' reached the database and failed there ("Something went wrong")."""
    name, args = parse_command("/removefeed \udcff\ud800 6h")
    assert name == "removefeed"
    assert all(a.encode("utf-8") for a in args) and args[-1] == "6h"


def test_telegram_button_labels_lose_lone_surrogates() -> None:
    """A label with a lone surrogate (a topic name from an escaped YAML string) made an unsendable message."""
    (msg,) = TelegramRenderer().render_reply(Reply(blocks=(para("Topics"),),
                                                   buttons=((Button("world\ud800 😀", "t:world"),),)))
    assert msg.buttons[0][0].label == "world 😀"
    assert msg.to_payload()["buttons"][0][0][0].encode("utf-8")


@pytest.mark.parametrize("setting,value", [("max", "9\u00b99"), ("every", "\u00b2h"), ("max", "9" * 5000),
                                           ("max", "\u0663\u0660\u0660")])
async def test_settings_numbers_that_pass_isdigit_but_not_int_are_a_usage_error(
        sqlite_store: Store, setting: str, value: str) -> None:
    """Discord fuzzing: "/settings max 9\u00b99" (a superscript digit passes str.isdigit, not int()) logged an
    internal failure and answered "Something went wrong"; on Telegram too."""
    svc = CommandService(ChatStore(sqlite_store.engine), admins=(), defaults=DigestDefaults())
    chat = ChatRef("discord", "10", "", GROUP)
    await svc.handle(Invocation("discord", chat, "2", "subscribe", (), user_is_chat_admin=True))
    inv = slash_invocation("settings", {"setting": setting, "value": value}, chat=chat, user_id="2", user_name="m",
                           manage_guild=True)
    reply = await svc.handle(inv)
    assert reply.error and "Usage: /settings " + setting in reply.blocks[0][0].text
    telegram = await svc.handle(Invocation("telegram", ChatRef("telegram", "5"), "2", "settings",
                                           (setting, value), user_is_chat_admin=True))
    assert "Something went wrong" not in str(telegram.blocks)


def test_slash_options_of_the_wrong_kind_or_missing_are_a_command_error() -> None:
    """What discord.py lets through is checked again at the boundary: no value reaches the service unread."""
    chat = ChatRef("discord", "10", "", GROUP)
    for command, options in [("addfeed", {}), ("removefeed", {"feed": 2**70}), ("summary", {"period": ["6h"]}),
                             ("help", {"extra": "x"}), ("settings", {"value": "5"}),
                             ("summary", {"period": "6h", "link": "https://x.org"}), ("settings", {"setting": "x"})]:
        with pytest.raises(CommandError):
            slash_invocation(command, options, chat=chat, user_id="1", user_name="m", manage_guild=True)
    with pytest.raises(CommandError, match="direct messages"):
        slash_invocation("help", {}, chat=None, user_id="1", user_name="m", manage_guild=False)
    inv = slash_invocation("settings", {"setting": "times", "value": " 08:00  18:00 "}, chat=chat, user_id="1",
                           user_name="m", manage_guild=True)
    assert inv.args == ("times", "08:00", "18:00") and inv.user_is_chat_admin


async def test_slash_option_values_with_lone_surrogates_reach_the_service_storable(sqlite_store: Store) -> None:
    """Discord fuzzing: /removefeed with "\\udc3a" in the option (a JSON escape Discord passes on) failed in the
    database insert ("Something went wrong"); the text command path replaced them already."""
    chat = ChatRef("discord", "10", "", GROUP)
    inv = slash_invocation("removefeed", {"feed": " kp://\udc3a\ud800 "}, chat=chat, user_id="1", user_name="m",
                           manage_guild=True, callback_data="t:\ud800")
    assert inv.args == ("kp://??",) and inv.callback_data == "t:?"
    svc = CommandService(ChatStore(sqlite_store.engine), admins={"discord:1"}, defaults=DigestDefaults(),
                         feed_admin=StoreFeedAdmin(sqlite_store, allow_private=False, probe=reachable_feed))
    reply = await svc.handle(inv)
    assert reply.error and "Something went wrong" not in str(reply.blocks)


async def test_slash_options_match_the_registered_slash_commands(sqlite_store: Store) -> None:
    """SLASH_OPTIONS (what slash_args and the fuzz target read) is what build_commands registers with Discord."""
    from bot.chat.discord_chat import SLASH_OPTIONS, DiscordBot, build_commands

    bot = DiscordBot(CommandService(ChatStore(sqlite_store.engine), admins=(), defaults=DigestDefaults()))
    try:
        registered = {c.name: {p.name: p.required for p in c.parameters} for c in build_commands(bot)}
    finally:
        await bot.close()
    assert {name: spec for name, spec in registered.items() if spec} == SLASH_OPTIONS
    assert set(registered) | {"callback"} == set(fuzz.DISCORD_COMMANDS)

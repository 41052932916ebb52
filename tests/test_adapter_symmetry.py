"""Symmetric adapters (issue 11): one constructor shape, limits read from each sink, one OPML size check in the
command layer, one text-measuring module for both renderers."""

from __future__ import annotations

import inspect
import io

from bot.chat import render_discord, render_telegram, text_units
from bot.chat.commands import CommandService
from bot.chat.console import ConsoleSink
from bot.chat.discord_chat import DISCORD_LIMITS, DiscordAdapter
from bot.chat.runtime import ChatRuntime
from bot.chat.telegram_chat import TelegramChat
from bot.feedlist import MAX_OPML_BYTES
from bot.pipeline.delivery import TELEGRAM_LIMITS, Limits
from bot.ports import ChatRef, ChatSink, Invocation, Reply
from bot.settings import DigestDefaults
from bot.storage.chat_store import ChatStore
from bot.storage.store import Store

SLOW = Limits(global_per_s=1.0, chat_interval_s=5.0)
OWNER = "telegram:1"


def service(store: Store) -> CommandService:
    return CommandService(ChatStore(store.engine), admins={OWNER, "discord:1"}, defaults=DigestDefaults())


def text(reply: Reply) -> str:
    return "\n".join("".join(s.text for s in b) for b in reply.blocks)


def test_both_adapters_take_token_and_service_then_keywords() -> None:
    for adapter in (TelegramChat, DiscordAdapter):
        params = list(inspect.signature(adapter.__init__).parameters.values())
        assert [p.name for p in params[:3]] == ["self", "token", "service"], adapter
        assert params[3].name == "limits" and params[3].kind is inspect.Parameter.KEYWORD_ONLY, adapter
        assert all(p.kind in (p.KEYWORD_ONLY, p.VAR_KEYWORD) for p in params[3:]), adapter


async def test_the_runtime_paces_each_sink_by_the_sinks_own_limits(sqlite_store: Store) -> None:
    commands = service(sqlite_store)
    tg = TelegramChat("1:x", commands, limits=SLOW, api_root="http://127.0.0.1:9", receive=False)
    dc = DiscordAdapter("token", commands)
    console = ConsoleSink(io.StringIO(), limits=SLOW)
    for sink in (tg, dc, console):
        assert isinstance(sink, ChatSink)
    runtime = ChatRuntime(ChatStore(sqlite_store.engine), DigestDefaults(), [tg, dc, console])
    assert runtime.pacers["telegram"].limits is SLOW and runtime.pacers["console"].limits is SLOW
    assert runtime.pacers["discord"].limits is DISCORD_LIMITS is dc.limits is dc.sink.limits
    assert TelegramChat("1:x", commands, receive=False).limits is TELEGRAM_LIMITS
    assert not hasattr(runtime, "limits")  # no table keyed by platform name


async def test_the_opml_size_check_is_the_command_layers(sqlite_store: Store) -> None:
    commands = service(sqlite_store)

    def inv(user: str, size: int | None, platform: str = "telegram") -> Invocation:
        return Invocation(platform, ChatRef(platform, "1"), user, "importopml", attachment_size=size,
                          attachment_name="feeds.opml", user_is_chat_admin=True)

    assert commands.wants_attachment(inv("1", 1000)) and commands.wants_attachment(inv("1", None))
    assert not commands.wants_attachment(inv("1", MAX_OPML_BYTES + 1))
    assert not commands.wants_attachment(inv("2", 1000)), "only owners' files are downloaded"
    for platform in ("telegram", "discord"):
        reply = await commands.handle(inv("1", MAX_OPML_BYTES + 1, platform))
        assert reply.error and f"too large (at most {MAX_OPML_BYTES // 1024} KiB)" in text(reply)
    refused = await commands.handle(inv("2", MAX_OPML_BYTES + 1))
    assert refused.error and "only the bot's owners" in text(refused)


def test_both_renderers_measure_text_with_one_module() -> None:
    assert render_telegram.units is text_units.units is render_discord.units
    assert text_units.units("a😀") == 3 and text_units.drop_surrogates("a\ud800b") == "ab"
    assert render_telegram.cut is text_units.cut
    assert text_units.cut("😀" * 5, 5) == "😀😀…"

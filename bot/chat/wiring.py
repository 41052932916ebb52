"""Composition of the chat layer for `newsdigest run`: command service, adapters with tokens, runtime.

bot.app (the composition root) calls it with the settings, the store and the feeds file; nothing here imports
bot.app, and bot.chat.runtime does not import this module.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from bot.chat.commands import CommandService
from bot.chat.console import CONSOLE_CHAT, ConsoleSink
from bot.chat.feed_admin import StoreFeedAdmin
from bot.chat.runtime import ChatRuntime, RuntimeConfig, Service
from bot.clock import utcnow
from bot.net import FetchLimits
from bot.pipeline.digest import next_due
from bot.ports import ChatSink, Summarize
from bot.settings import FeedsFile, Settings
from bot.storage.chat_store import ChatStore
from bot.storage.store import Store


class Adapter(ChatSink, Service, Protocol):
    """A chat platform adapter: a ChatSink the runtime sends through and a Service it starts and stops."""


log = logging.getLogger(__name__)

AdapterFactory = Callable[[CommandService], Adapter]


def chat_topics(feeds_file: FeedsFile) -> list[str]:
    """Every topic a chat can choose: the digest defaults, then every topic articles are scored on (the
    built-in ones and the feeds file's)."""
    from bot.pipeline import topic as topic_stage

    specs = [topic_stage.TopicSpec(name=t.name, description=t.description, examples=t.examples,
                                   keywords=t.keywords) for t in feeds_file.topics]
    # The classifier loads nothing until it scores, and its names are the topics articles get scores for.
    scored = topic_stage.TopicClassifier(None, topics=specs).names  # type: ignore[arg-type]
    return list(dict.fromkeys([*feeds_file.digest.topics, *scored]))


def build_command_service(settings: Settings, store: Store, feeds_file: FeedsFile,
                          summarize: Summarize | None = None, *, chats: ChatStore | None = None) -> CommandService:
    """The CommandService over the store (or `chats`), the settings and the feeds file."""
    return CommandService(chats or ChatStore(store.engine), admins=settings.admins, defaults=feeds_file.digest,
                          feed_admin=StoreFeedAdmin(store, allow_private=settings.allow_private_urls,
                                                    limits=FetchLimits.from_settings(settings)),
                          summarize=summarize, topics=chat_topics(feeds_file),
                          allow_private_urls=settings.allow_private_urls)


def platform_adapters(settings: Settings, service: CommandService) -> list[Adapter]:
    """An adapter for each platform whose token is set; its SDK is imported only then."""
    adapters: list[Adapter] = []
    if settings.telegram_bot_token:
        from bot.chat.telegram_chat import TelegramChat

        adapters.append(TelegramChat(settings.telegram_bot_token, service,
                                     api_root=settings.telegram_api_base_url))
    if settings.discord_bot_token:
        from bot.chat.discord_chat import DiscordAdapter

        adapters.append(DiscordAdapter(settings.discord_bot_token, service))
    return adapters


def build_chat_runtime(settings: Settings, store: Store, feeds_file: FeedsFile, *,
                       summarize: Summarize | None = None, extra_adapters: Sequence[AdapterFactory] = (),
                       config: RuntimeConfig | None = None) -> ChatRuntime:
    """Adapters whose token is set (Telegram, Discord; more via `extra_adapters`), else the console sink.

    Each extra adapter factory gets the CommandService and returns an Adapter (a ChatSink with its own limits
    and a Service). The runtime paces each sink by the sink's `limits`.
    """
    # One chat store for commands and the runtime; the runtime also needs its outbox side.
    chats = ChatStore(store.engine)
    service = build_command_service(settings, store, feeds_file, summarize, chats=chats)
    adapters = platform_adapters(settings, service) + [factory(service) for factory in extra_adapters]
    sinks: list[ChatSink] = list(adapters)
    if not sinks:
        # No chat platform configured: digests go to the terminal on the default schedule.
        service.chats.subscribe(CONSOLE_CHAT, feeds_file.digest, utcnow(), next_due=next_due)
        sinks.append(ConsoleSink())
        log.info("no chat token set: digests are printed to the terminal")
    return ChatRuntime(chats, feeds_file.digest, sinks, services=adapters, config=config,
                       owners=sorted(settings.admins), alerts=chats)

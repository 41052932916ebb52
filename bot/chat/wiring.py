"""Composition of the chat layer for `newsdigest run`: command service, adapters with tokens, runtime."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from bot.chat.commands import CommandService
from bot.chat.console import CONSOLE_CHAT, ConsoleSink
from bot.chat.feed_admin import StoreFeedAdmin
from bot.chat.runtime import ChatRuntime, RuntimeConfig
from bot.clock import utcnow
from bot.pipeline.delivery import Limits
from bot.pipeline.digest import next_due
from bot.ports import ChatSink, Summarize
from bot.storage.chat_store import ChatStore

log = logging.getLogger(__name__)

AdapterFactory = Callable[[CommandService], ChatSink]


def chat_topics(feeds_file: Any) -> list[str]:
    """Every topic a chat can choose: the digest defaults, then every topic articles are scored on (the
    built-in ones and the feeds file's)."""
    from bot.pipeline import topic as topic_stage

    specs = [topic_stage.TopicSpec(name=t.name, description=t.description, examples=t.examples,
                                   keywords=t.keywords) for t in feeds_file.topics]
    # The classifier loads nothing until it scores, and its names are the topics articles get scores for.
    scored = topic_stage.TopicClassifier(None, topics=specs).names  # type: ignore[arg-type]
    return list(dict.fromkeys([*feeds_file.digest.topics, *scored]))


def build_command_service(app: Any, summarize: Summarize | None = None, *,
                          chats: ChatStore | None = None) -> CommandService:
    """The CommandService over the app's store (or `chats`), settings and feeds file."""
    s = app.settings
    return CommandService(chats or ChatStore(app.store.engine), admins=s.admins, defaults=app.feeds_file.digest,
                          feed_admin=StoreFeedAdmin(app.store, allow_private=s.allow_private_urls,
                                                    limits=app.fetch_limits()),
                          summarize=summarize, topics=chat_topics(app.feeds_file),
                          allow_private_urls=s.allow_private_urls)


def build_chat_runtime(app: Any, *, summarize: Summarize | None = None,
                       extra_adapters: Sequence[AdapterFactory] = (), config: RuntimeConfig | None = None
                       ) -> ChatRuntime:
    """Adapters whose token is set (Telegram, Discord; more via `extra_adapters`), else the console sink.

    Each extra adapter factory gets the CommandService and returns an object that is both a ChatSink and a
    Service (start/stop). SDKs are imported only for the platforms whose token is set.
    """
    # One chat store for commands and the runtime; the runtime also needs its outbox side.
    chats = ChatStore(app.store.engine)
    service = build_command_service(app, summarize, chats=chats)
    sinks: list[Any] = []
    limits: dict[str, Limits] = {}
    if app.settings.telegram_bot_token:
        from bot.chat.telegram_chat import TelegramChat

        sinks.append(TelegramChat(app.settings.telegram_bot_token, app.settings.telegram_api_base_url, service))
    if app.settings.discord_bot_token:
        from bot.chat.discord_chat import DISCORD_LIMITS, DiscordAdapter

        sinks.append(DiscordAdapter(app.settings, service))
        limits["discord"] = DISCORD_LIMITS
    sinks += [factory(service) for factory in extra_adapters]
    services = list(sinks)
    if not sinks:
        # No chat platform configured: digests go to the terminal on the default schedule.
        service.chats.subscribe(CONSOLE_CHAT, app.feeds_file.digest, utcnow(), next_due=next_due)
        sinks.append(ConsoleSink())
        log.info("no chat token set: digests are printed to the terminal")
    return ChatRuntime(chats, app.feeds_file.digest, sinks, services=services, limits=limits,
                       config=config)

"""Send-only Discord for scale-out workers: discord.py's REST client, logged in without a gateway connection.

A worker only posts outbox parts. `discord.Client.login` authenticates over HTTP (no gateway session, no
intents), and `DiscordSink` then posts through `client.get_partial_messageable` and `client.create_dm`, which
are REST calls too, so many workers can send for one bot while commands are served by one gateway connection
elsewhere (`newsdigest run`). Pacing across workers is the shared limiter's job (bot/distributed/limiter.py,
with `DISCORD_LIMITS`); discord.py still honours Discord's rate-limit headers within each worker.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import discord

from bot.chat.discord_chat import (
    _TRANSPORT_ERRORS,
    DISCORD_LIMITS,
    MAX_RATELIMIT_WAIT_S,
    PLATFORM,
    DiscordSink,
)
from bot.errors import ConfigError, DeliveryError
from bot.pipeline.delivery import Limits
from bot.ports import ChatRef, OutgoingMessage

log = logging.getLogger(__name__)


class DiscordSender:
    """bot.ports.ChatSink for Discord over REST only; `start()` logs in, `stop()` closes the HTTP session."""

    platform = PLATFORM

    def __init__(self, token: str, *, limits: Limits = DISCORD_LIMITS, dm_users: Iterable[str] = ()) -> None:
        if not token:
            raise ConfigError("DISCORD_BOT_TOKEN", "DISCORD_BOT_TOKEN", "not set")
        self._token = token
        self.limits = limits
        # As the gateway adapter: a 429 longer than MAX_RATELIMIT_WAIT_S comes back as RateLimitedError, which
        # the worker writes to the shared limiter (every worker then waits); a shorter one discord.py waits out
        # in this worker, unseen by the others.
        self.client = discord.Client(intents=discord.Intents.none(), allowed_mentions=discord.AllowedMentions.none(),
                                     max_ratelimit_timeout=MAX_RATELIMIT_WAIT_S)
        self.sink = DiscordSink(self.client, limits=limits, dm_users=dm_users)

    async def start(self) -> None:
        """Log in over HTTP (a rejected token is a ConfigError); no gateway connection is opened. Discord out
        of reach is not fatal: the next send logs in, and parts wait in the outbox meanwhile."""
        try:
            await self.client.login(self._token)
        except discord.LoginFailure as exc:
            await self.client.close()
            raise ConfigError("DISCORD_BOT_TOKEN", "DISCORD_BOT_TOKEN", "Discord rejected the token") from exc
        except _TRANSPORT_ERRORS as exc:
            log.warning("discord: login failed (%s); the next send tries again", exc)

    async def send(self, chat: ChatRef, message: OutgoingMessage) -> str:
        """ChatSink.send (see DiscordSink.send), logging in first if start() could not."""
        if self.client.http.token is None and not self.client.is_closed():
            try:
                await self.client.login(self._token)
            except (discord.LoginFailure, *_TRANSPORT_ERRORS) as exc:
                raise DeliveryError(f"discord: cannot log in ({exc})", retry_after=30.0) from exc
        return await self.sink.send(chat, message)

    async def stop(self) -> None:
        """Close the HTTP session."""
        await self.client.close()


__all__ = ["DiscordSender"]

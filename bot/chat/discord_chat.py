"""Discord adapter (discord.py): slash commands into the CommandService, replies and outbox sends out.

    DiscordAdapter(token, service)             a Service for ChatRuntime: start() logs in, syncs the slash
      ├─ DiscordBot (discord.Client)           commands and connects to the gateway; stop() closes
      │    slash command / button ─▶ Invocation ─▶ CommandService.handle ─▶ Reply ─▶ DiscordRenderer ─▶ response
      └─ DiscordSink (bot.ports.ChatSink)      outbox part ─▶ channel or thread message; errors ─▶ bot.errors

Only the guilds intent is requested (no privileged intents): slash commands and buttons arrive as interactions.
Changing a channel's subscription needs Manage Server (the commands' default member permissions, checked again
at run time); the feed commands and /alerts are for bot owners (NEWSDIGEST_ADMINS, "discord:<user id>"). Owner
alerts go to those owners as direct messages: their chat row is the user id (kind private), and DiscordSink
opens the DM channel when it sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any, Literal, get_args

import aiohttp
import discord
from discord import app_commands

from bot.chat.commands import COMMANDS, CommandService
from bot.chat.render_discord import DiscordRenderer
from bot.errors import ChatForbiddenError, CommandError, ConfigError, DeliveryError, RateLimitedError
from bot.pipeline.delivery import Limits
from bot.ports import GROUP, PRIVATE, Button, ChatRef, Invocation, OutgoingMessage, Reply, para

log = logging.getLogger(__name__)

PLATFORM = "discord"
# Discord allows 50 requests/s per bot and about 5 messages per 5 s per channel; stay below both, so that
# discord.py's own 429 handling is the exception, not the rule.
DISCORD_LIMITS = Limits(global_per_s=40.0, chat_interval_s=0.2, group_per_window=5, group_window_s=5.0)
# An interaction must be answered within 3 s; work still running after this long is answered with a defer.
DEFER_AFTER_S = 2.0
# discord.py waits out shorter 429s itself; a longer one comes back to the outbox as RateLimitedError.
MAX_RATELIMIT_WAIT_S = 30.0
LOGIN_RETRY_S = 15.0
# Discord error codes after which a channel cannot get messages: pause the subscription, keep its settings.
GONE_CODES = {10003: "Unknown Channel", 50001: "Missing Access", 50013: "Missing Permissions",
              50083: "Thread is archived", 10004: "Unknown Guild",
              50007: "Cannot send messages to this user"}  # a direct message: the user closed their DMs
OWNER_COMMANDS = frozenset(c.name for c in COMMANDS if c.owner_only)
SETTINGS_KEYS = Literal["times", "every", "max", "timezone", "topics", "mute", "unmute", "require", "unrequire"]


def delivery_error(exc: BaseException) -> DeliveryError:
    """Translate a discord.py/aiohttp failure into bot.errors at the adapter boundary."""
    if isinstance(exc, discord.RateLimited):
        return RateLimitedError(f"discord: {exc}", exc.retry_after)
    if isinstance(exc, discord.HTTPException):
        code, status = exc.code, exc.status
        reason = f"discord {status}/{code}: {exc.text or GONE_CODES.get(code, 'error')}"[:300]
        if code in GONE_CODES or status == 403:
            return ChatForbiddenError(reason)
        if status == 401:
            return DeliveryError(reason)  # our token, not the chat: keep the part for when it works again
        if status == 429:
            retry = exc.response.headers.get("Retry-After") if exc.response is not None else None
            return RateLimitedError(reason, float(retry or 5.0))
        if isinstance(exc, discord.DiscordServerError) or status >= 500:
            return DeliveryError(reason)
        # Other 4xx (invalid body, unknown message, ...) will not succeed on a retry.
        return DeliveryError(reason, permanent=True)
    return DeliveryError(f"discord: {type(exc).__name__}: {exc}"[:300])


_TRANSPORT_ERRORS = (discord.HTTPException, discord.RateLimited, aiohttp.ClientError, asyncio.TimeoutError, OSError)


def button_view(rows: tuple[tuple[Button, ...], ...]) -> discord.ui.View:
    """A view carrying the buttons; clicks are routed by custom_id in DiscordBot.on_interaction."""
    view = discord.ui.View(timeout=None)
    for i, row in enumerate(rows):
        for b in row:
            view.add_item(discord.ui.Button(label=b.label, custom_id=b.data, style=discord.ButtonStyle.secondary,
                                            row=i))
    # A stopped view is not stored by discord.py, so no callback of its own competes with ours.
    view.stop()
    return view


def send_kwargs(message: OutgoingMessage) -> dict[str, Any]:
    """discord.py keyword arguments (for send, send_message, followup.send, edit) for a rendered message."""
    kwargs: dict[str, Any] = {"allowed_mentions": discord.AllowedMentions.none()}
    if message.text:
        kwargs["content"] = message.text
    if message.extra.get("embeds"):
        kwargs["embeds"] = [discord.Embed.from_dict(e) for e in message.extra["embeds"]]
    if message.buttons:
        kwargs["view"] = button_view(message.buttons)
    if message.file is not None:
        kwargs["file"] = discord.File(io.BytesIO(message.file.data), filename=message.file.filename,
                                      description=message.file.caption or None)
    return kwargs


def idempotency_nonce(channel_id: int, message: OutgoingMessage) -> str | None:
    """A nonce that is the same for the same message to the same channel.

    discord.py sends it with enforce_nonce, so Discord creates the message only once when a part is sent again
    within minutes (its confirmation was lost in a crash, or the lease ran out mid-send).
    """
    if message.file is not None:
        return None
    data = json.dumps([channel_id, message.to_payload()], sort_keys=True, ensure_ascii=False).encode()
    return hashlib.sha256(data).hexdigest()[:25]  # Discord takes at most 25 characters


def chat_ref(channel: Any, guild: discord.Guild | None) -> ChatRef:
    """The ChatRef of a guild text channel, or of a thread (chat = its parent channel, thread = the thread)."""
    prefix = f"{guild.name} " if guild is not None else ""
    if isinstance(channel, discord.Thread):
        return ChatRef(PLATFORM, str(channel.parent_id), str(channel.id), GROUP,
                       f"{prefix}#{channel.parent.name if channel.parent else channel.parent_id} / {channel.name}")
    name = getattr(channel, "name", None) or str(getattr(channel, "id", ""))
    return ChatRef(PLATFORM, str(channel.id), "", GROUP, f"{prefix}#{name}")


DM_ERROR = "Use me in a server's text channel or thread; direct messages are not supported."
# Each slash command's options: name -> required. The values are validated by Discord and discord.py first
# (lengths, choices); slash_args checks again what reaches it, as it is the boundary to the CommandService.
SLASH_OPTIONS: dict[str, dict[str, bool]] = {
    "summary": {"period": False, "link": False}, "settings": {"setting": False, "value": False},
    "addfeed": {"url": True}, "removefeed": {"feed": True}, "importopml": {"file": True}, "story": {"id": True},
    "alerts": {"state": False}}
ATTACHMENT_OPTIONS = frozenset({"file"})
SETTING_NAMES: tuple[str, ...] = get_args(SETTINGS_KEYS)


def slash_args(command: str, options: Mapping[str, object]) -> tuple[str, ...]:
    """A slash command's option values as the text command's arguments; CommandError for what the user must fix.

    Pure (no discord.py objects), so that bench/fuzz.py drives it as the adapter does.
    """
    spec = SLASH_OPTIONS.get(command, {})
    given = {k: v for k, v in options.items() if v is not None}
    # An attachment option is not an argument: slash_invocation gets its name and size.
    text = {k: v for k, v in given.items() if k not in ATTACHMENT_OPTIONS}
    if set(given) - set(spec) or any(not isinstance(v, str) for v in text.values()) \
            or any(required and name not in given for name, required in spec.items()):
        raise CommandError("I could not read those options. Please try the command again (see /help).")
    values = {k: _storable(v).strip() for k, v in text.items() if isinstance(v, str)}
    if command == "summary":
        if values.get("period") and values.get("link"):
            raise CommandError("Give either a period or a link, not both.")
        return tuple(v for v in (values.get("period") or values.get("link"),) if v)
    if command == "settings":
        setting, value = values.get("setting"), values.get("value")
        if value and not setting:
            raise CommandError("Choose which setting the value is for.")
        if setting and setting not in SETTING_NAMES:
            raise CommandError(f"Choose one of: {', '.join(SETTING_NAMES)}.")
        return (setting, *(value or "").split()) if setting else ()
    return tuple(values[name] for name in spec if name in values)


def slash_invocation(command: str, options: Mapping[str, object], *, chat: ChatRef | None, user_id: str,
                     user_name: str, manage_guild: bool, attachment_name: str | None = None,
                     attachment_size: int | None = None, callback_data: str | None = None) -> Invocation:
    """The platform-neutral Invocation of a slash command or button click (chat None: not in a server)."""
    if chat is None:
        raise CommandError(DM_ERROR)
    return Invocation(
        platform=PLATFORM, chat=chat, user_id=user_id, command=command, args=slash_args(command, options),
        # Resolved for this member in this channel (Administrator implies it); checked on every run.
        user_is_chat_admin=manage_guild, attachment_name=attachment_name, attachment_size=attachment_size,
        callback_data=_storable(callback_data) if callback_data is not None else None, user_name=user_name)


def _storable(text: str) -> str:
    # Lone surrogates (a JSON "\ud800" escape in the interaction) can be neither stored nor sent: replaced, as
    # parse_command does for text commands.
    return text.encode("utf-8", "replace").decode("utf-8")


def guild_chat_refs(guild: discord.Guild) -> list[str]:
    """The chat_ref of every channel of a server; a thread's subscriptions hang off its parent channel's."""
    return list(dict.fromkeys([*(str(c.id) for c in guild.channels), *(str(t.parent_id) for t in guild.threads)]))


def owner_ids(admins: Iterable[str]) -> frozenset[str]:
    """The Discord user ids among the owners ("discord:<user id>" in NEWSDIGEST_ADMINS)."""
    return frozenset(a.partition(":")[2] for a in admins if a.startswith(f"{PLATFORM}:"))


class DiscordSink:
    """bot.ports.ChatSink for Discord: one rendered message to a channel or thread, or a direct message to an
    owner (a private chat whose id is one of `dm_users`: only the owners are ever sent direct messages)."""

    platform = PLATFORM

    def __init__(self, client: discord.Client, renderer: DiscordRenderer | None = None, *,
                 limits: Limits = DISCORD_LIMITS, dm_users: Iterable[str] = ()) -> None:
        self.client = client
        self.renderer = renderer or DiscordRenderer()
        self.limits = limits
        self.dm_users = frozenset(dm_users)

    async def send(self, chat: ChatRef, message: OutgoingMessage) -> str:
        """Post the message; returns its id; raises ChatForbiddenError, RateLimitedError or DeliveryError."""
        try:
            target = int(chat.thread_id or chat.chat_id)
        except ValueError as exc:
            raise DeliveryError(f"not a Discord channel id: {chat.key}", permanent=True) from exc
        if self.client.http.token is None or self.client.is_closed():
            raise DeliveryError("discord: not logged in yet", retry_after=30.0)
        try:
            if chat.kind == PRIVATE and chat.chat_id in self.dm_users:
                # An owner's alerts: a direct message. discord.py keeps the DM channel once it is opened.
                dm = await self.client.create_dm(discord.Object(target))
                channel: discord.abc.Messageable = dm
                target = dm.id
            else:
                channel = self.client.get_partial_messageable(target)
            kwargs = send_kwargs(message)
            if message.reply_to.isdecimal():
                # A follow-up answers the message the channel got the story in; if that one was deleted, Discord
                # posts it as a message of its own.
                kwargs["reference"] = discord.MessageReference(message_id=int(message.reply_to), channel_id=target,
                                                               fail_if_not_exists=False)
            # None asks discord.py for a random nonce (its send does so); the overloads leave None out.
            sent = await channel.send(**kwargs, nonce=idempotency_nonce(target, message))  # type: ignore[arg-type]
        except _TRANSPORT_ERRORS as exc:
            raise delivery_error(exc) from exc
        return str(sent.id)


Work = Callable[[], Awaitable[Reply]]


class DiscordBot(discord.Client):
    """The discord.py client: slash commands and settings buttons, answered through the CommandService."""

    def __init__(self, service: CommandService, *, limits: Limits = DISCORD_LIMITS, sync_guild: int | None = None,
                 **options: Any) -> None:
        intents = discord.Intents.none()
        intents.guilds = True
        super().__init__(intents=intents, allowed_mentions=discord.AllowedMentions.none(),
                         max_ratelimit_timeout=MAX_RATELIMIT_WAIT_S, **options)
        self.service = service
        self.renderer = DiscordRenderer()
        self.sink = DiscordSink(self, self.renderer, limits=limits, dm_users=owner_ids(service.admins))
        self.sync_guild = sync_guild
        self.tree = app_commands.CommandTree(self)
        self.tree.error(self._on_tree_error)

    async def setup_hook(self) -> None:
        """Register and sync the slash commands (once, at login)."""
        guild = discord.Object(self.sync_guild) if self.sync_guild else None
        if not self.tree.get_commands(guild=guild):  # a login retried after a failed sync runs this again
            for command in build_commands(self):
                self.tree.add_command(command, guild=guild)
        synced = await self.tree.sync(guild=guild)
        log.info("discord: %d slash commands synced%s", len(synced), f" to guild {self.sync_guild}" if guild else "")

    # commands -----------------------------------------------------------------------------------------------

    def invocation(self, interaction: discord.Interaction, command: str, options: Mapping[str, object] = {}, *,
                   attachment_name: str | None = None, attachment_size: int | None = None,
                   callback_data: str | None = None) -> Invocation:
        """The platform-neutral Invocation of an interaction (see slash_invocation)."""
        in_guild = interaction.guild_id is not None and interaction.channel is not None
        return slash_invocation(
            command, options, chat=chat_ref(interaction.channel, interaction.guild) if in_guild else None,
            user_id=str(interaction.user.id), user_name=interaction.user.display_name,
            manage_guild=interaction.permissions.manage_guild, attachment_name=attachment_name,
            attachment_size=attachment_size, callback_data=callback_data)

    async def run_command(self, interaction: discord.Interaction, command: str,
                          options: Mapping[str, object] = {}) -> None:
        """Answer a slash command: handle it (deferring when slow), then send the rendered reply."""
        ephemeral = command in OWNER_COMMANDS or command == "help"
        attachment = options.get("file")

        async def work() -> Reply:
            file = attachment if isinstance(attachment, discord.Attachment) else None
            inv = self.invocation(interaction, command, options,
                                  attachment_name=file.filename if file else None,
                                  attachment_size=file.size if file else None)
            if file is not None and self.service.wants_attachment(inv):
                inv = replace(inv, attachment=await file.read())
            return await self.service.handle(inv)

        reply = await self._within_deadline(interaction, work, ephemeral=ephemeral)
        await self.respond(interaction, reply, ephemeral=ephemeral)

    async def _within_deadline(self, interaction: discord.Interaction, work: Work, *, ephemeral: bool,
                               update: bool = False) -> Reply:
        """Run `work`; if it is not done within DEFER_AFTER_S, acknowledge the interaction first."""
        task = asyncio.ensure_future(self._safely(work))
        try:
            done, _ = await asyncio.wait({task}, timeout=DEFER_AFTER_S)
            if not done:
                if update:
                    await interaction.response.defer()
                else:
                    await interaction.response.defer(ephemeral=ephemeral, thinking=True)
        except BaseException:
            task.cancel()  # the interaction could not be acknowledged: nobody will read the answer
            raise
        return await task

    @staticmethod
    async def _safely(work: Work) -> Reply:
        try:
            return await work()
        except CommandError as exc:
            return _error(str(exc))

    async def respond(self, interaction: discord.Interaction, reply: Reply, *, ephemeral: bool = False) -> None:
        """Send a reply's messages as the interaction response and followups; errors are only for the user."""
        ephemeral = ephemeral or reply.error
        for message in self.renderer.render_reply(reply):
            kwargs = send_kwargs(message)
            if not interaction.response.is_done():
                await interaction.response.send_message(**kwargs, ephemeral=ephemeral)
            else:
                # After a defer the first followup replaces the "thinking" message.
                await interaction.followup.send(**kwargs, ephemeral=ephemeral)

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        """Settings buttons: a click is the command "callback" with the button's data."""
        if interaction.type is not discord.InteractionType.component:
            return
        payload: Mapping[str, object] = interaction.data or {}
        custom_id = payload.get("custom_id")
        data = custom_id if isinstance(custom_id, str) else ""

        async def work() -> Reply:
            return await self.service.handle(self.invocation(interaction, "callback", callback_data=data))

        try:
            reply = await self._within_deadline(interaction, work, ephemeral=True, update=True)
            if reply.edit and not reply.error:
                # The settings message is one message; it is replaced in place.
                kwargs = send_kwargs(self.renderer.render_reply(reply)[0])
                kwargs.setdefault("content", None)
                kwargs.pop("file", None)
                if interaction.response.is_done():
                    await interaction.edit_original_response(**kwargs)
                else:
                    await interaction.response.edit_message(**kwargs)
            else:
                await self.respond(interaction, reply, ephemeral=True)
        except Exception as exc:
            await self._on_failure(interaction, exc)

    # removed from a server, channels deleted ------------------------------------------------------------------

    async def on_guild_remove(self, guild: discord.Guild) -> None:
        """Removed from a server (kicked, banned, the server deleted): every subscription in it pauses at once,
        each channel's and thread's, instead of one by one on a 403; what is queued for them is cancelled."""
        await self._pause_chats(guild_chat_refs(guild), "bot removed from the server", f"server {guild.id}")

    async def on_guild_channel_delete(self, channel: discord.abc.GuildChannel) -> None:
        """A channel was deleted: its subscription and its threads' pause."""
        await self._pause_chats([str(channel.id)], "channel deleted", f"channel {channel.id}")

    async def on_raw_thread_delete(self, payload: discord.RawThreadDeleteEvent) -> None:
        """A thread was deleted: its subscription pauses (its parent channel's is not touched)."""
        ref = ChatRef(PLATFORM, str(payload.parent_id), str(payload.thread_id), GROUP)
        chats, clock = self.service.chats, self.service.clock

        def pause() -> int:
            sub = chats.get_subscription(ref)
            if sub is None or not sub.active:
                return 0
            chats.pause(sub.chat_db_id, "thread deleted", clock())
            return 1
        await self._paused(pause, f"thread {payload.thread_id}")

    async def _pause_chats(self, refs: list[str], reason: str, what: str) -> None:
        chats, clock = self.service.chats, self.service.clock
        await self._paused(lambda: chats.pause_chats(PLATFORM, refs, reason, clock()), what)

    @staticmethod
    async def _paused(pause: Callable[[], int], what: str) -> None:
        try:
            n = await asyncio.to_thread(pause)
        except Exception:
            # The event is not sent again; the sends' 403/10003 pause these subscriptions later instead.
            log.exception("discord: could not pause the subscriptions of %s", what)
            return
        log.info("discord: %s gone; %d subscription(s) paused", what, n)

    # errors -------------------------------------------------------------------------------------------------

    async def _on_tree_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        await self._on_failure(interaction, error)

    async def _on_failure(self, interaction: discord.Interaction, error: BaseException) -> None:
        """Never a traceback for the user: a short ephemeral note, the details in the log."""
        cause = getattr(error, "original", error)
        if isinstance(error, app_commands.NoPrivateMessage):
            text = DM_ERROR
        elif isinstance(error, app_commands.MissingPermissions):
            text = "Sorry, only members with the Manage Server permission can do that."
        elif isinstance(error, app_commands.TransformerError | app_commands.CommandSignatureMismatch):
            text = "I could not read those options. Please try the command again (see /help)."
        else:
            log.error("discord interaction %s failed", interaction.id, exc_info=cause)
            text = "Something went wrong on my side. Please try again in a few minutes."
        with contextlib.suppress(*_TRANSPORT_ERRORS):
            if interaction.response.is_done():
                await interaction.followup.send(text, ephemeral=True)
            else:
                await interaction.response.send_message(text, ephemeral=True)


SlashCommand = app_commands.Command[Any, ..., Any]


def _slash(name: str, *, manage: bool = False) -> Callable[[Any], SlashCommand]:
    """Decorator: a guild-only slash command described as /help describes it; `manage` needs Manage Server."""
    usage = next(c.usage(PLATFORM) or (c.args, c.description) for c in COMMANDS if c.name == name)

    def wrap(fn: Any) -> SlashCommand:
        cmd: SlashCommand = app_commands.command(name=name, description=usage[1][:100])(fn)
        cmd = app_commands.guild_only()(cmd)
        return app_commands.default_permissions(manage_guild=True)(cmd) if manage else cmd
    return wrap


def _without_options(bot: DiscordBot, name: str, *, manage: bool = False) -> SlashCommand:
    """A slash command that takes no options."""
    @_slash(name, manage=manage)
    async def run(interaction: discord.Interaction) -> None:
        await bot.run_command(interaction, name)
    return run


def _summary(bot: DiscordBot) -> SlashCommand:
    """/summary [period] [link]: one of the two, as the text command's single argument."""
    @_slash("summary")
    @app_commands.describe(period="how far back, e.g. 6h or 2d (at most 7d)", link="an article to summarize")
    async def summary(interaction: discord.Interaction, period: app_commands.Range[str, 1, 20] | None = None,
                      link: app_commands.Range[str, 1, 2000] | None = None) -> None:
        await bot.run_command(interaction, "summary", {"period": period, "link": link})
    return summary


def _story(bot: DiscordBot) -> SlashCommand:
    """/story id: a story's outlets, links and timeline (the id is in each digest item's footer)."""
    @_slash("story")
    @app_commands.describe(id="the story's number, shown under each digest item")
    async def story(interaction: discord.Interaction, id: app_commands.Range[str, 1, 20]) -> None:  # noqa: A002
        await bot.run_command(interaction, "story", {"id": id})
    return story


def _settings(bot: DiscordBot) -> SlashCommand:
    """/settings [setting] [value]: the value split into the text command's arguments."""
    @_slash("settings", manage=True)
    @app_commands.describe(setting="what to change; leave empty to see the settings with buttons",
                           value="e.g. times: 08:00 18:00 · every: 6 · max: 5 · timezone: Europe/Berlin · "
                                 "topics: all or topic names")
    async def settings(interaction: discord.Interaction, setting: SETTINGS_KEYS | None = None,
                       value: app_commands.Range[str, 1, 200] | None = None) -> None:
        await bot.run_command(interaction, "settings", {"setting": setting, "value": value})
    return settings


def _feed_commands(bot: DiscordBot) -> list[SlashCommand]:
    """/addfeed url, /removefeed feed, /importopml file (bot owners; Manage Server to see them)."""
    @_slash("addfeed", manage=True)
    @app_commands.describe(url="the RSS or Atom feed's URL (http or https)")
    async def addfeed(interaction: discord.Interaction, url: app_commands.Range[str, 1, 2000]) -> None:
        await bot.run_command(interaction, "addfeed", {"url": url})

    @_slash("removefeed", manage=True)
    @app_commands.describe(feed="the feed's id (see /feeds) or URL")
    async def removefeed(interaction: discord.Interaction, feed: app_commands.Range[str, 1, 2000]) -> None:
        await bot.run_command(interaction, "removefeed", {"feed": feed})

    @_slash("importopml", manage=True)
    @app_commands.describe(file="an OPML file of feeds")
    async def importopml(interaction: discord.Interaction, file: discord.Attachment) -> None:
        await bot.run_command(interaction, "importopml", {"file": file})
    return [addfeed, removefeed, importopml]


def _alerts(bot: DiscordBot) -> SlashCommand:
    """/alerts [state]: an owner's alerts by direct message: see them, turn them on or off, or mute them."""
    @_slash("alerts", manage=True)
    @app_commands.describe(state="on, off, or mute for a while, e.g. 24h, 30m, 2d; leave empty to see the state")
    async def alerts(interaction: discord.Interaction, state: app_commands.Range[str, 1, 20] | None = None) -> None:
        await bot.run_command(interaction, "alerts", {"state": state})
    return alerts


def build_commands(bot: DiscordBot) -> list[SlashCommand]:
    """The slash commands, new objects per bot (a command belongs to one tree), in /help's order."""
    return [_without_options(bot, "help"), _without_options(bot, "subscribe", manage=True),
            _without_options(bot, "unsubscribe", manage=True), _summary(bot), _story(bot), _settings(bot),
            _without_options(bot, "feeds", manage=True), *_feed_commands(bot),
            _without_options(bot, "exportopml", manage=True), _alerts(bot)]


def _error(text: str) -> Reply:
    return Reply(blocks=(para(text),), error=True)


class DiscordAdapter:
    """The Discord side of `newsdigest run`: commands in, outbox parts out; a ChatRuntime service and sink.

    Constructed as every adapter is: `DiscordAdapter(token, service, *, limits=..., <platform options>)`. Pass
    it to ChatRuntime as a sink and a service (paced by its `limits`); or use it as `async with
    DiscordAdapter(...)`.
    """

    platform = PLATFORM

    def __init__(self, token: str, service: CommandService, *, limits: Limits = DISCORD_LIMITS,
                 sync_guild: int | None = None, **client_options: Any) -> None:
        if not token:
            raise ConfigError("DISCORD_BOT_TOKEN", "DISCORD_BOT_TOKEN", "not set")
        self._token = token
        self.limits = limits
        self.bot = DiscordBot(service, limits=limits, sync_guild=sync_guild, **client_options)
        self.sink = self.bot.sink
        self.renderer = self.sink.renderer
        self._task: asyncio.Task[None] | None = None

    async def send(self, chat: ChatRef, message: OutgoingMessage) -> str:
        """ChatSink.send (see DiscordSink.send)."""
        return await self.sink.send(chat, message)

    async def start(self) -> None:
        """Log in (a rejected token is a ConfigError), sync the slash commands, and connect to the gateway.

        When Discord cannot be reached, the rest of the service starts anyway and the login is retried.
        """
        await self.register_owners()
        try:
            await self._login()
        except _TRANSPORT_ERRORS as exc:
            log.warning("discord: login failed (%s); retrying in the background", exc)
            self._task = asyncio.create_task(self._login_then_connect(), name="discord-login")
        else:
            self._task = asyncio.create_task(self.bot.connect(reconnect=True), name="discord-gateway")
        self._task.add_done_callback(self._gateway_ended)

    async def register_owners(self) -> None:
        """Give each Discord owner (NEWSDIGEST_ADMINS "discord:<user id>") a private chat row, so that owner
        alerts reach them by direct message without a command first (a bot may open a DM with any user who
        shares a server with it). A database failure is logged: `/alerts` registers the owner too."""
        service = self.bot.service
        store = service.alerts
        users = sorted(owner_ids(service.admins))
        if store is None or not users:
            return

        def register() -> None:
            for user in users:
                store.register_owner_chat(PLATFORM, user, service.clock())
        try:
            await asyncio.to_thread(register)
        except Exception:
            log.exception("discord: could not record the owners' direct-message chats; /alerts records them")

    async def _login(self) -> None:
        try:
            await self.bot.login(self._token)
        except discord.LoginFailure as exc:
            await self.bot.close()
            raise ConfigError("DISCORD_BOT_TOKEN", "DISCORD_BOT_TOKEN", "Discord rejected the token") from exc

    async def _login_then_connect(self, delay: float = LOGIN_RETRY_S) -> None:
        while True:
            await asyncio.sleep(delay)
            try:
                await self._login()
                break
            except _TRANSPORT_ERRORS as exc:
                log.warning("discord: login failed again (%s)", exc)
                delay = min(delay * 2, 600.0)
        await self.bot.connect(reconnect=True)

    @staticmethod
    def _gateway_ended(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("discord gateway connection ended", exc_info=task.exception())

    async def wait_until_ready(self, timeout: float = 60.0) -> None:
        """Until the gateway session is ready (READY and the guilds received)."""
        await asyncio.wait_for(self.bot.wait_until_ready(), timeout)

    async def stop(self) -> None:
        """Close the gateway and the HTTP session."""
        await self.bot.close()
        if self._task is not None:
            self._task.cancel()  # a login still being retried; a closed gateway connection has ended already
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def __aenter__(self) -> DiscordAdapter:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

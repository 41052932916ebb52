"""A local fake of Discord's REST API and gateway on 127.0.0.1, for smoke tests of the real discord.py client.

It speaks just enough of both for a bot to log in, receive READY and GUILD_CREATE, sync slash commands, get
INTERACTION_CREATE (slash commands and button clicks), GUILD_DELETE, CHANNEL_DELETE and THREAD_DELETE events, answer
them (callback, followups, @original edits), post channel messages and open direct messages (a user can have them
closed: 403/50007, as Discord answers). It
records every request; like Discord, it answers a body that breaks Discord's schema (the OpenAPI excerpt in
tests/data/discord) or its documented limits with 400/50035 (and lists it in `invalid`), and it notes sends
faster than Discord allows (`too_fast`). A channel can be made to answer with an error, a 429 the way Discord
sends it (JSON body, `Via` header, rate-limit headers), a 500, or to hold a post in flight.

Point discord.py at it with `install(monkeypatch)`: that sets `discord.http.Route.BASE` and
`discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY`.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import yarl
from aiohttp import WSMsgType, web
from jsonschema import Draft202012Validator

EVERYONE_PERMISSIONS = 0x0000_0000_0000_0C00 | (1 << 31)  # view channel, send messages, use application commands
ADMIN_PERMISSIONS = 1 << 3
MANAGE_GUILD = 1 << 5


SCHEMA_FILE = Path(__file__).resolve().parent.parent / "data" / "discord" / "openapi_excerpt.json"
GLOBAL_PER_S = 50  # requests per second per bot
CHANNEL_PER_5S = 5  # messages per 5 seconds per channel
# Where Discord's documentation is stricter than its OpenAPI description (which allows 4000).
CONTENT_MAX, EMBEDS_TOTAL_MAX = 2000, 6000


@cache
def _validator(schema: str) -> Draft202012Validator:
    components = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))["components"]
    return Draft202012Validator({"$ref": f"#/components/schemas/{schema}", "components": components})


def embeds_total(embeds: list[dict[str, Any]]) -> int:
    """Characters Discord counts over a message's embeds: titles, descriptions, fields, footers, authors."""
    total = 0
    for e in embeds:
        total += len(e.get("title") or "") + len(e.get("description") or "")
        total += sum(len(f.get("name") or "") + len(f.get("value") or "") for f in e.get("fields") or [])
        total += len((e.get("footer") or {}).get("text") or "") + len((e.get("author") or {}).get("name") or "")
    return total


def payload_problems(schema: str, body: Any) -> list[str]:
    """What is wrong with a request body: Discord's schema `schema` plus the documented limits it lacks."""
    body = copy.deepcopy(body)
    if isinstance(body, dict):
        # Uploads name their files by index ("id": 0), as in Discord's own upload example; the OpenAPI
        # description's snowflake type would only take a string there.
        msg = body.get("data") if schema.endswith("InteractionCallbackRequest") else body
        if isinstance(msg, dict) and msg.get("attachments"):
            msg["attachments"] = [{**a, "id": str(a["id"])} for a in msg["attachments"]]
        # Discord takes snowflakes as JSON integers too, and discord.py sends a reply's reference so.
        if isinstance(msg, dict) and isinstance(msg.get("message_reference"), dict):
            msg["message_reference"] = {k: str(v) if k.endswith("_id") and isinstance(v, int) else v
                                        for k, v in msg["message_reference"].items()}
    problems = [f"{'/'.join(map(str, e.absolute_path)) or '(body)'}: {e.message[:200]}"
                for e in _validator(schema).iter_errors(body)]
    msg = body.get("data") if isinstance(body, dict) and schema.endswith("InteractionCallbackRequest") else body
    if isinstance(msg, dict):
        if len(msg.get("content") or "") > CONTENT_MAX:
            problems.append(f"content: {len(msg['content'])} characters (at most {CONTENT_MAX})")
        total = embeds_total(msg.get("embeds") or [])
        if total > EMBEDS_TOTAL_MAX:
            problems.append(f"embeds: {total} characters in all (at most {EMBEDS_TOTAL_MAX})")
    return problems


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # discord.py parses a body as JSON only for exactly "application/json" (no charset parameter).
    return web.Response(body=json.dumps(data).encode(), status=status,
                        headers={**(headers or {}), "Content-Type": "application/json"})


def _now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class Recorded:
    """One request the bot made."""

    method: str
    path: str
    query: dict[str, str]
    json: Any
    files: dict[str, bytes] = field(default_factory=dict)


@dataclass
class FakeGuild:
    """A guild the bot is in, with text channels and threads (id -> name)."""

    id: int
    name: str
    owner_id: int
    channels: dict[int, str] = field(default_factory=dict)
    threads: dict[int, tuple[int, str]] = field(default_factory=dict)  # id -> (parent id, name)


class FakeDiscord:
    """Fake Discord REST (`/api/v10/...`) and gateway (`/gateway`) on one local port."""

    def __init__(self, *, app_id: int = 900_000_000_000_000_001, bot_id: int = 900_000_000_000_000_002,
                 token: str | None = None) -> None:
        self.app_id, self.bot_id = app_id, bot_id
        self.token = token  # when set, other bot tokens get 401 (interaction webhooks need none)
        self.bot_user = {"id": str(bot_id), "username": "newsdigest", "discriminator": "0", "global_name": None,
                         "avatar": None, "bot": True}
        self.guilds: dict[int, FakeGuild] = {}
        self.requests: list[Recorded] = []
        self.messages: dict[int, list[dict[str, Any]]] = {}
        self.commands: dict[int | None, list[dict[str, Any]]] = {}
        self.callbacks: dict[int, dict[str, Any]] = {}
        self.followups: dict[int, list[dict[str, Any]]] = {}
        self.identify: dict[str, Any] | None = None
        self.invalid: list[tuple[str, list[str]]] = []  # (request, problems) answered with 400/50035
        self.heartbeats = 0
        self.failures: dict[int, tuple[int, int, str]] = {}
        self.server_errors: dict[int, int] = {}  # channel id -> how many 500s to answer first
        self.hold: dict[int, asyncio.Event] = {}
        self.held: set[int] = set()
        self.gone_clients: set[int] = set()
        self.dropped: list[dict[str, Any]] = []
        self.too_fast: list[str] = []  # sends that broke Discord's global or per-channel rate
        self._times: deque[float] = deque()
        self._channel_times: dict[int, deque[float]] = {}
        self.rate_limits: dict[int, list[float]] = {}
        self.dms: dict[int, int] = {}  # user id -> the DM channel opened with them
        self.closed_dms: set[int] = set()  # users whose privacy settings refuse the bot's direct messages
        self._ids = itertools.count(1_100_000_000_000_000_000)
        self._seq = itertools.count(1)
        self._ws: web.WebSocketResponse | None = None
        self._ready = asyncio.Event()
        self._changed = asyncio.Condition()
        self._tokens: dict[str, int] = {}
        self._cdn: dict[str, bytes] = {}
        self._nonces: dict[tuple[int, str], dict[str, Any]] = {}
        self.deleted: set[tuple[int, int]] = set()
        self._runner: web.AppRunner | None = None
        self.port = 0
        # Fault injection (tests/test_fault_chat_outage.py): while `outage` is "500", "502" or "reset", every
        # message post fails that way; "lost" performs the post, then resets the connection before the answer.
        self.outage: str | None = None
        self.faults = 0

    # lifecycle ------------------------------------------------------------------------------------------

    async def start(self) -> FakeDiscord:
        """Listen on an ephemeral port of 127.0.0.1."""
        app = web.Application()
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/gateway/", self._gateway)
        app.router.add_route("*", "/api/v10/{tail:.*}", self._rest)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        """Close the gateway socket and the server."""
        if self._ws is not None and not self._ws.closed:
            await self._ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> FakeDiscord:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        for ev in self.hold.values():
            ev.set()
        await self.stop()

    @property
    def api_base(self) -> str:
        """What `discord.http.Route.BASE` must be."""
        return f"http://127.0.0.1:{self.port}/api/v10"

    @property
    def gateway_url(self) -> yarl.URL:
        """What `DiscordWebSocket.DEFAULT_GATEWAY` must be."""
        return yarl.URL(f"ws://127.0.0.1:{self.port}/gateway")

    def install(self, monkeypatch: Any) -> None:
        """Point discord.py at this server for the rest of the test."""
        import discord.gateway
        import discord.http

        monkeypatch.setattr(discord.http.Route, "BASE", self.api_base)
        monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", self.gateway_url)

    # world building -------------------------------------------------------------------------------------

    def snowflake(self) -> int:
        """A fresh id."""
        return next(self._ids)

    def add_guild(self, name: str = "Guild", *, channels: tuple[str, ...] = ("general",),
                  threads: tuple[tuple[str, str], ...] = ()) -> FakeGuild:
        """A guild with text channels and (channel name, thread name) threads; add before the bot connects."""
        guild = FakeGuild(self.snowflake(), name, owner_id=self.snowflake())
        for ch in channels:
            guild.channels[self.snowflake()] = ch
        by_name = {v: k for k, v in guild.channels.items()}
        for parent, th in threads:
            guild.threads[self.snowflake()] = (by_name[parent], th)
        self.guilds[guild.id] = guild
        return guild

    def fail_channel(self, channel_id: int, status: int = 403, code: int = 50001,
                     message: str = "Missing Access") -> None:
        """Answer every message post to this channel with a Discord error."""
        self.failures[channel_id] = (status, code, message)

    def rate_limit_channel(self, channel_id: int, *retry_after: float) -> None:
        """Answer the next posts to this channel with 429s carrying these retry_after values."""
        self.rate_limits[channel_id] = list(retry_after)

    def release(self, channel_id: int, *, client_gone: bool) -> None:
        """Let the held post to this channel proceed; with `client_gone` it is dropped, not delivered."""
        if client_gone:
            self.gone_clients.add(channel_id)
        self.hold.pop(channel_id).set()

    def error_channel(self, channel_id: int, times: int = 1) -> None:
        """Answer the next posts to this channel with 500 Internal Server Error."""
        self.server_errors[channel_id] = times

    def dm_to(self, user_id: int) -> list[dict[str, Any]]:
        """Direct messages posted to a user, in order."""
        return self.sent_to(self.dms[user_id]) if user_id in self.dms else []

    def delete_message(self, channel_id: int, message_id: int | str) -> None:
        """A member deleted a message the bot posted: a reply to it finds no message."""
        self.deleted.add((channel_id, int(message_id)))

    def sent_to(self, channel_id: int) -> list[dict[str, Any]]:
        """Message bodies posted to a channel or thread, in order."""
        return self.messages.get(channel_id, [])

    async def wait_sent(self, channel_id: int, n: int = 1, timeout: float = 10) -> list[dict[str, Any]]:
        """Until at least n messages were posted to the channel."""
        await self.wait_for(lambda: len(self.sent_to(channel_id)) >= n, timeout)
        return self.sent_to(channel_id)

    # gateway --------------------------------------------------------------------------------------------

    async def wait_ready(self, timeout: float = 10) -> None:
        """Until READY has been sent."""
        await asyncio.wait_for(self._ready.wait(), timeout)

    async def _send(self, payload: dict[str, Any]) -> None:
        assert self._ws is not None, "the bot is not connected"
        await self._ws.send_str(json.dumps(payload))

    async def _dispatch(self, event: str, data: Any) -> None:
        await self._send({"op": 0, "t": event, "s": next(self._seq), "d": data})

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._ws = ws
        await self._send({"op": 10, "d": {"heartbeat_interval": 45_000}, "s": None, "t": None})
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                break
            payload = json.loads(msg.data)
            op = payload.get("op")
            if op == 1:
                self.heartbeats += 1
                await self._send({"op": 11, "d": None, "s": None, "t": None})
            elif op == 2:
                self.identify = payload["d"]
                await self._dispatch("READY", {
                    "v": 10, "user": self.bot_user, "session_id": "fake-session", "shard": [0, 1],
                    "resume_gateway_url": str(self.gateway_url), "application": {"id": str(self.app_id), "flags": 0},
                    "guilds": [{"id": str(g), "unavailable": True} for g in self.guilds]})
                for guild in self.guilds.values():
                    await self._dispatch("GUILD_CREATE", self._guild_payload(guild))
                self._ready.set()
            elif op == 6:
                await self._dispatch("RESUMED", {})
        return ws

    def _channel_payload(self, guild: FakeGuild, channel_id: int) -> dict[str, Any]:
        if channel_id in guild.threads:
            parent, name = guild.threads[channel_id]
            return {"id": str(channel_id), "type": 11, "guild_id": str(guild.id), "name": name,
                    "parent_id": str(parent), "owner_id": str(guild.owner_id), "message_count": 0,
                    "member_count": 1, "rate_limit_per_user": 0, "flags": 0,
                    "thread_metadata": {"archived": False, "auto_archive_duration": 1440, "locked": False,
                                        "archive_timestamp": _now()}}
        return {"id": str(channel_id), "type": 0, "guild_id": str(guild.id), "name": guild.channels[channel_id],
                "position": 0, "permission_overwrites": [], "nsfw": False, "topic": None, "parent_id": None,
                "rate_limit_per_user": 0, "flags": 0}

    def _guild_payload(self, guild: FakeGuild) -> dict[str, Any]:
        return {
            "id": str(guild.id), "name": guild.name, "icon": None, "owner_id": str(guild.owner_id),
            "unavailable": False, "large": False, "member_count": 2, "joined_at": _now(), "features": [],
            "roles": [{"id": str(guild.id), "name": "@everyone", "permissions": str(EVERYONE_PERMISSIONS),
                       "position": 0, "color": 0, "hoist": False, "managed": False, "mentionable": False,
                       "flags": 0}],
            "channels": [self._channel_payload(guild, c) for c in guild.channels],
            "threads": [self._channel_payload(guild, t) for t in guild.threads],
            "members": [], "presences": [], "voice_states": [], "emojis": [], "stickers": [],
            "stage_instances": [], "guild_scheduled_events": [], "premium_tier": 0, "preferred_locale": "en-US",
            "system_channel_flags": 0, "verification_level": 0, "explicit_content_filter": 0,
            "default_message_notifications": 0, "mfa_level": 0, "nsfw_level": 0, "afk_timeout": 300,
        }

    def _guild_of(self, channel_id: int) -> FakeGuild:
        return next(g for g in self.guilds.values() if channel_id in g.channels or channel_id in g.threads)

    async def slash(self, channel_id: int, name: str, options: list[dict[str, Any]] | None = None, *,
                    user_id: int | None = None, permissions: int = EVERYONE_PERMISSIONS,
                    attachments: dict[str, tuple[str, bytes]] | None = None) -> int:
        """Dispatch INTERACTION_CREATE for a synced slash command; returns the interaction id.

        `attachments` maps an option name to (filename, bytes), served from this server like Discord's CDN.
        """
        await self.wait_ready()
        guild = self._guild_of(channel_id)
        synced = self.commands.get(guild.id, []) + self.commands.get(None, [])
        command = next((c for c in synced if c["name"] == name), None)
        assert command is not None, f"/{name} was never synced"
        options = list(options or [])
        resolved: dict[str, Any] = {}
        for opt_name, (filename, data) in (attachments or {}).items():
            att_id = self.snowflake()
            url = f"http://127.0.0.1:{self.port}/api/v10/cdn/{att_id}/{filename}"
            self._cdn[url] = data
            resolved.setdefault("attachments", {})[str(att_id)] = {
                "id": str(att_id), "filename": filename, "size": len(data), "url": url, "proxy_url": url,
                "content_type": "application/octet-stream"}
            options.append({"name": opt_name, "type": 11, "value": str(att_id)})
        data: dict[str, Any] = {"id": command["id"], "name": name, "type": 1, "options": options}
        if resolved:
            data["resolved"] = resolved
        return await self._interact(guild, channel_id, {"type": 2, "data": data}, user_id, permissions)

    async def _interact(self, guild: Any, channel_id: int, body: dict[str, Any], user_id: int | None,
                        permissions: int) -> int:
        """Dispatch one INTERACTION_CREATE from a member of `guild` in `channel_id`; returns its id."""
        interaction_id, token = self.snowflake(), f"tok{self.snowflake()}"
        self._tokens[token] = interaction_id
        user = {"id": str(user_id or self.snowflake()), "username": "member", "discriminator": "0",
                "global_name": "Member", "avatar": None}
        await self._dispatch("INTERACTION_CREATE", {
            "id": str(interaction_id), "application_id": str(self.app_id), **body,
            "guild_id": str(guild.id), "channel_id": str(channel_id),
            "channel": self._channel_payload(guild, channel_id),
            "member": {"user": user, "roles": [], "permissions": str(permissions), "joined_at": _now(),
                       "deaf": False, "mute": False, "flags": 0},
            "token": token, "version": 1, "app_permissions": str(EVERYONE_PERMISSIONS), "locale": "en-US",
            "guild_locale": "en-US", "entitlements": [], "authorizing_integration_owners": {"0": str(guild.id)},
            "context": 0, "attachment_size_limit": 26_214_400})
        return interaction_id

    async def click(self, channel_id: int, message: dict[str, Any], custom_id: str, *, user_id: int | None = None,
                    permissions: int = EVERYONE_PERMISSIONS) -> int:
        """Dispatch INTERACTION_CREATE for a button click on `message` (a message body the bot sent, e.g. an
        interaction callback's `data`); returns the interaction id. The button must be on the message."""
        await self.wait_ready()
        ids = [c["custom_id"] for row in message.get("components") or [] for c in row.get("components") or []]
        assert custom_id in ids, f"no button {custom_id!r} on the message (buttons: {ids})"
        guild = self._guild_of(channel_id)
        msg = message if "id" in message else self._message(channel_id, message)
        return await self._interact(guild, channel_id, {"type": 3, "message": msg,
                                                        "data": {"custom_id": custom_id, "component_type": 2}},
                                    user_id, permissions)

    async def remove_bot(self, guild_id: int) -> None:
        """The bot is kicked from a guild: GUILD_DELETE (not `unavailable`), and its channels answer 403/50001."""
        await self.wait_ready()
        guild = self.guilds.pop(guild_id)
        for channel in [*guild.channels, *guild.threads]:
            self.failures.setdefault(channel, (403, 50001, "Missing Access"))
        await self._dispatch("GUILD_DELETE", {"id": str(guild_id)})

    async def outage_of(self, guild_id: int) -> None:
        """A guild becomes unavailable (a Discord outage, not a removal): GUILD_DELETE with `unavailable`."""
        await self.wait_ready()
        await self._dispatch("GUILD_DELETE", {"id": str(guild_id), "unavailable": True})

    async def delete_channel(self, channel_id: int) -> None:
        """A channel (with its threads) or a thread is deleted: CHANNEL_DELETE or THREAD_DELETE."""
        await self.wait_ready()
        guild = self._guild_of(channel_id)
        payload = self._channel_payload(guild, channel_id)
        if channel_id in guild.threads:
            del guild.threads[channel_id]
            await self._dispatch("THREAD_DELETE", {k: payload[k] for k in ("id", "guild_id", "parent_id", "type")})
            return
        del guild.channels[channel_id]
        for thread in [t for t, (parent, _) in guild.threads.items() if parent == channel_id]:
            del guild.threads[thread]
        await self._dispatch("CHANNEL_DELETE", payload)

    async def wait_for(self, predicate: Any, timeout: float = 10) -> None:
        """Until predicate() is true, re-checked after every request."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(predicate), timeout)

    # REST -----------------------------------------------------------------------------------------------

    def _message(self, channel_id: int, body: dict[str, Any], *, flags: int = 0) -> dict[str, Any]:
        return {"id": str(self.snowflake()), "channel_id": str(channel_id), "type": 0, "author": self.bot_user,
                "content": body.get("content") or "", "embeds": body.get("embeds") or [],
                "components": body.get("components") or [], "attachments": [], "timestamp": _now(),
                "edited_timestamp": None, "tts": False, "mention_everyone": False, "mentions": [],
                "mention_roles": [], "pinned": False, "flags": flags | int(body.get("flags") or 0)}

    @staticmethod
    def _error(status: int, code: int, message: str) -> web.Response:
        return _json({"message": message, "code": code}, status=status)

    async def _body(self, request: web.Request) -> tuple[Any, dict[str, bytes]]:
        if request.content_type == "multipart/form-data":
            payload, files = None, {}
            reader = await request.multipart()
            async for part in reader:
                if part.name == "payload_json":
                    payload = json.loads(await part.text())
                elif part.name:
                    files[part.filename or part.name] = bytes(await part.read())
            return payload, files
        if request.can_read_body:
            return await request.json(), {}
        return None, {}

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        body, files = await self._body(request)
        path = "/" + request.match_info["tail"]
        if self.outage is None:
            # During an injected outage the requests never reach Discord's rate limiter (see the report of
            # tests/test_fault_chat_outage.py: discord.py's own 5xx retries are not paced by the outbox).
            self._count_rate(request.method, path)
        if self.token is not None and request.headers.get("Authorization") != f"Bot {self.token}" \
                and not path.startswith(("/interactions/", "/webhooks/", "/cdn/")):
            return self._error(401, 0, "401: Unauthorized")
        self.requests.append(Recorded(request.method, path, dict(request.query), body, files))
        try:
            parts = path.strip("/").split("/")
            problems = self._check(request.method, parts, body)
            if problems:
                self.invalid.append((f"{request.method} {path}", problems))
                return _json({"message": "Invalid Form Body", "code": 50035, "errors": problems}, status=400)
            if self.outage and request.method == "POST" and parts[0] == "channels" and parts[-1] == "messages":
                return await self._faulty(request, parts, body, files)
            return await self._route(request, parts, body, files)
        finally:
            async with self._changed:
                self._changed.notify_all()

    async def _faulty(self, request: web.Request, parts: list[str], body: Any,
                      files: dict[str, bytes]) -> web.StreamResponse:
        """A message post during an injected outage."""
        self.faults += 1
        if self.outage in ("500", "502"):
            return self._error(int(self.outage), 0, f"{self.outage}: Server Error")
        if self.outage == "lost":
            await self._route(request, parts, body, files)
        assert request.transport is not None
        request.transport.abort()
        return web.Response(status=599)

    def _count_rate(self, method: str, path: str) -> None:
        now = time.monotonic()
        self._times.append(now)
        while self._times and self._times[0] <= now - 1.0:
            self._times.popleft()
        if len(self._times) > GLOBAL_PER_S:
            self.too_fast.append(f"{len(self._times)} requests within 1 s ({method} {path})")
        parts = path.strip("/").split("/")
        if method == "POST" and len(parts) == 3 and parts[0] == "channels" and parts[2] == "messages":
            times = self._channel_times.setdefault(int(parts[1]), deque())
            times.append(now)
            while times and times[0] <= now - 5.0:
                times.popleft()
            if len(times) > CHANNEL_PER_5S:
                self.too_fast.append(f"{len(times)} messages within 5 s to channel {parts[1]}")

    @staticmethod
    def _check(method: str, parts: list[str], body: Any) -> list[str]:
        """Validate the bodies the bot sends against Discord's schema and limits, as Discord does."""
        match method, parts:
            case "POST", ["channels", _, "messages"]:
                return payload_problems("MessageCreateRequest", body)
            case "POST", ["interactions", _, _, "callback"]:
                kind = body.get("type") if isinstance(body, dict) else None
                schema = "UpdateMessageInteractionCallbackRequest" if kind in (6, 7) else \
                    "CreateMessageInteractionCallbackRequest"
                return payload_problems(schema, body)
            case "POST", ["webhooks", _, _]:
                return payload_problems("IncomingWebhookRequestPartial", body)
            case "PATCH", ["webhooks", _, _, "messages", "@original"]:
                return payload_problems("IncomingWebhookUpdateRequestPartial", body)
            case "PUT", ["applications", _, "commands"] | ["applications", _, "guilds", _, "commands"]:
                return [p for c in body for p in payload_problems("ApplicationCommandUpdateRequest", c)]
            case "POST", ["users", "@me", "channels"]:
                recipient = body.get("recipient_id") if isinstance(body, dict) else None
                # A snowflake as a string or, as discord.py sends it, a number.
                ok = str(recipient).isdigit() and set(body) == {"recipient_id"}
                return [] if ok else [f"(body): a DM needs exactly a recipient_id snowflake, got {body!r}"[:200]]
        return []

    async def _route(self, request: web.Request, parts: list[str], body: Any, files: dict[str, bytes]
                     ) -> web.StreamResponse:
        method = request.method
        if parts[0] == "cdn":
            url = f"http://127.0.0.1:{self.port}/api/v10/" + "/".join(parts)
            return web.Response(body=self._cdn[url]) if url in self._cdn else self._error(404, 0, "404: Not Found")
        match method, parts:
            case "GET", ["users", "@me"]:
                return _json(self.bot_user)
            case "GET", ["oauth2", "applications", "@me"]:
                return _json({"id": str(self.app_id), "name": "newsdigest", "icon": None,
                                          "description": "", "bot_public": True, "bot_require_code_grant": False,
                                          "verify_key": "00", "flags": 0, "owner": self.bot_user,
                                          "team": None, "summary": ""})
            case "PUT", ["applications", _, "commands"] | ["applications", _, "guilds", _, "commands"]:
                scope = int(parts[3]) if len(parts) == 5 else None
                registered = [{**c, "id": str(self.snowflake()), "application_id": str(self.app_id),
                               "version": "1", **({"guild_id": str(scope)} if scope else {})} for c in body]
                self.commands[scope] = registered
                return _json(registered)
            case "POST", ["channels", channel, "messages"]:
                return await self._post_message(int(channel), body, files)
            case "POST", ["users", "@me", "channels"]:
                user_id = int(body["recipient_id"])
                dm = self.dms.setdefault(user_id, self.snowflake())
                recipient = {"id": str(user_id), "username": "owner", "discriminator": "0", "global_name": None,
                             "avatar": None}
                return _json({"id": str(dm), "type": 1, "last_message_id": None, "flags": 0,
                              "recipients": [recipient]})
            case "POST", ["interactions", interaction, _, "callback"]:
                self.callbacks[int(interaction)] = body
                data = body.get("data") or {}
                kind = body["type"]
                message = self._message(self._channel_for_interaction(), data) if kind in (4, 5) else None
                out: dict[str, Any] = {"interaction": {
                    "id": interaction, "type": 2, "response_message_loading": kind == 5,
                    "response_message_ephemeral": bool(int(data.get("flags") or 0) & 64)}}
                if message is not None and kind == 4:
                    out["interaction"]["response_message_id"] = message["id"]
                    out["resource"] = {"type": kind, "message": message}
                return _json(out)
            case "POST", ["webhooks", _, token]:
                self.followups.setdefault(self._tokens[token], []).append({**body, "_files": files})
                return _json(self._message(self._channel_for_interaction(), body))
            case "PATCH", ["webhooks", _, token, "messages", "@original"]:
                self.followups.setdefault(self._tokens[token], []).append({**body, "_files": files,
                                                                           "_edit": True})
                return _json(self._message(self._channel_for_interaction(), body))
            case "GET", ["channels", channel]:
                channel_id = int(channel)
                guild = next((g for g in self.guilds.values()
                              if channel_id in g.channels or channel_id in g.threads), None)
                if guild is None:
                    return self._error(404, 10003, "Unknown Channel")
                return _json(self._channel_payload(guild, channel_id))
        return self._error(404, 0, f"fake Discord has no route {method} /{'/'.join(parts)}")

    def _reference(self, channel_id: int, ref: Any) -> tuple[int | None, web.Response | None]:
        """The message a post replies to, as Discord resolves message_reference: one posted in this channel and
        not deleted; else none when fail_if_not_exists is false, or 400 (Unknown message)."""
        if not ref:
            return None, None
        mid = int(ref["message_id"])
        same_channel = int(ref.get("channel_id") or channel_id) == channel_id
        if same_channel and (channel_id, mid) not in self.deleted \
                and any(int(m["id"]) == mid for m in self.messages.get(channel_id, [])):
            return mid, None
        if ref.get("fail_if_not_exists") is False:
            return None, None
        return None, _json({"message": "Invalid Form Body", "code": 50035, "errors": {"message_reference": {
            "_errors": [{"code": "REPLIES_UNKNOWN_MESSAGE", "message": "Unknown message"}]}}}, status=400)

    def _channel_for_interaction(self) -> int:
        # Response messages need some channel id; the tests read what was sent from `callbacks`/`followups`.
        return next(iter(next(iter(self.guilds.values())).channels))

    async def _post_message(self, channel_id: int, body: dict[str, Any], files: dict[str, bytes]) -> web.Response:
        if channel_id in self.hold:
            # Held: the test decides when this request proceeds, and whether its client died meanwhile (then
            # the message counts as never delivered, like a request Discord never finished).
            self.held.add(channel_id)
            await self.hold[channel_id].wait()
            if channel_id in self.gone_clients:
                self.gone_clients.discard(channel_id)
                self.dropped.append(body)
                return self._error(500, 0, "client gone")
        if self.server_errors.get(channel_id):
            self.server_errors[channel_id] -= 1
            return self._error(500, 0, "500: Internal Server Error")
        pending = self.rate_limits.get(channel_id)
        if pending:
            retry = pending.pop(0)
            return _json(
                {"message": "You are being rate limited.", "retry_after": retry, "global": False},
                status=429, headers={"Via": "1.1 google", "X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "0",
                                     "X-RateLimit-Reset-After": str(retry), "X-RateLimit-Bucket": "fake",
                                     "X-RateLimit-Scope": "user", "Retry-After": str(retry)})
        if channel_id in self.failures:
            return self._error(*self.failures[channel_id])
        dm_user = next((u for u, c in self.dms.items() if c == channel_id), None)
        if dm_user in self.closed_dms:
            return self._error(403, 50007, "Cannot send messages to this user")
        if dm_user is None and not any(channel_id in g.channels or channel_id in g.threads
                                       for g in self.guilds.values()):
            return self._error(404, 10003, "Unknown Channel")
        nonce = body.get("nonce") if body.get("enforce_nonce") else None
        if nonce is not None and (channel_id, nonce) in self._nonces:
            # Discord returns the message created with this nonce (within minutes) instead of a new one.
            return _json(self._nonces[channel_id, nonce])
        reply_to, refused = self._reference(channel_id, body.get("message_reference"))
        if refused is not None:
            return refused
        message = self._message(channel_id, body)
        if reply_to is not None:
            message["type"] = 19  # REPLY
            message["message_reference"] = {"type": 0, "message_id": str(reply_to), "channel_id": str(channel_id)}
        self.messages.setdefault(channel_id, []).append({**body, "_files": files, "id": message["id"],
                                                         "_reply_to": reply_to})
        if nonce is not None:
            self._nonces[channel_id, nonce] = message
        return _json(message)


# A delivery process for crash tests: `python -m tests.fakes.discord_api --db URL --api BASE --gateway URL`
# runs ChatRuntime with the Discord adapter against this fake until SIGTERM/SIGINT.

TOKEN = "fake-discord-token"


async def _deliver(db: str, api_base: str, gateway: str, lease_s: float) -> int:

    import discord.gateway
    import discord.http

    from bot.chat.commands import CommandService
    from bot.chat.discord_chat import DiscordAdapter
    from bot.chat.runtime import ChatRuntime
    from bot.settings import DigestDefaults
    from bot.storage.chat_store import ChatStore
    from bot.storage.store import Store
    from tests.fakes.chat_worker import run_until_signalled, worker_config

    discord.http.Route.BASE = api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway)
    store = Store.open(db)
    chats = ChatStore(store.engine)
    defaults = DigestDefaults()
    adapter = DiscordAdapter(TOKEN,
                             CommandService(chats, admins=(), defaults=defaults))
    await run_until_signalled(ChatRuntime(chats, defaults, [adapter], services=[adapter],
                                          config=worker_config(lease_s)))
    store.close()
    return 0


if __name__ == "__main__":
    import argparse
    import logging

    p = argparse.ArgumentParser()
    p.add_argument("--db", required=True)
    p.add_argument("--api", required=True)
    p.add_argument("--gateway", required=True)
    p.add_argument("--lease", type=float, default=1.0)
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="worker %(levelname)s %(name)s: %(message)s")
    raise SystemExit(asyncio.run(_deliver(a.db, a.api, a.gateway, a.lease)))

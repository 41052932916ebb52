"""A small fake Telegram Bot API server (HTTP/JSON over a real socket) for end-to-end tests and the bench.

It speaks the methods the bot uses, parses HTML like Telegram (only Telegram's tags, strict nesting, only
&lt; &gt; &amp; &quot; and numeric entities), enforces the 4096-unit limit, can answer 403/429/migration, and
records everything. Anything it does not expect is recorded in `unexpected` (tests assert it stays empty)
and answered 404/400 loudly.
"""

from __future__ import annotations

import asyncio
import html
import itertools
import json
import re
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

TOKEN = "123456:TEST-token"
BOT_ID = 123456
BOT_USERNAME = "newsdigest_test_bot"
MESSAGE_LIMIT = 4096

_TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre", "tg-spoiler",
         "blockquote", "span", "tg-emoji"}
_TAG = re.compile(r'<(/?)([a-zA-Z][a-zA-Z0-9-]*)((?:\s+[a-zA-Z-]+\s*=\s*"[^"<>]*")*)\s*>')
_ATTR = re.compile(r'([a-zA-Z-]+)\s*=\s*"([^"<>]*)"')
_ENTITY = re.compile(r"&(#[0-9]{1,7}|#x[0-9a-fA-F]{1,6}|lt|gt|amp|quot);")


class HTMLParseError(ValueError):
    """What Telegram reports as "can't parse entities"."""


def utf16_len(s: str) -> int:
    """Length in UTF-16 code units."""
    return len(s.encode("utf-16-le", "surrogatepass")) // 2


def parse_html(src: str) -> tuple[str, list[dict[str, Any]]]:
    """Telegram-style HTML -> (plain text, entities with UTF-16 offsets); raises HTMLParseError."""
    out: list[str] = []
    pos16 = 0
    stack: list[tuple[str, int, dict[str, str]]] = []
    entities: list[dict[str, Any]] = []
    i = 0
    while i < len(src):
        ch = src[i]
        if ch == "<":
            m = _TAG.match(src, i)
            if not m:
                raise HTMLParseError(f"Unsupported start tag at byte offset {i}")
            closing, name, attrs = m.group(1) == "/", m.group(2).lower(), dict(_ATTR.findall(m.group(3)))
            if name not in _TAGS:
                raise HTMLParseError(f'Unsupported start tag "{name}" at byte offset {i}')
            if closing:
                if not stack or stack[-1][0] != name:
                    raise HTMLParseError(f'Unmatched end tag at byte offset {i}, expected "</{stack[-1][0]}>", '
                                         f'found "</{name}>"' if stack else f"Unexpected end tag at byte offset {i}")
                tag, start, a = stack.pop()
                kind = {"b": "bold", "strong": "bold", "i": "italic", "em": "italic", "u": "underline",
                        "ins": "underline", "s": "strikethrough", "strike": "strikethrough",
                        "del": "strikethrough", "a": "text_link", "code": "code", "pre": "pre",
                        "tg-spoiler": "spoiler", "blockquote": "blockquote", "span": "spoiler",
                        "tg-emoji": "custom_emoji"}[tag]
                if pos16 > start:
                    ent: dict[str, Any] = {"type": kind, "offset": start, "length": pos16 - start}
                    if tag == "a":
                        ent["url"] = html.unescape(a.get("href", ""))
                    entities.append(ent)
            else:
                if name == "a" and not attrs.get("href"):
                    raise HTMLParseError("Can't find end of the entity: a tag without href")
                if name == "a" and not re.match(r"^(https?://|tg://)", html.unescape(attrs["href"])):
                    raise HTMLParseError(f"Wrong URL {attrs['href']!r}")
                stack.append((name, pos16, attrs))
            i = m.end()
            continue
        if ch == "&":
            m = _ENTITY.match(src, i)
            if not m:
                raise HTMLParseError(f"Unsupported HTML entity at byte offset {i}")
            decoded = html.unescape(m.group(0))
            out.append(decoded)
            pos16 += utf16_len(decoded)
            i = m.end()
            continue
        if ch == ">":
            raise HTMLParseError(f"Unexpected > at byte offset {i}")
        out.append(ch)
        pos16 += utf16_len(ch)
        i += 1
    if stack:
        raise HTMLParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    return "".join(out), entities


@dataclass
class FakeChat:
    """A chat the fake knows."""

    id: int
    type: str = "private"
    title: str = ""
    blocked: bool = False
    migrate_to: int | None = None
    admins: set[int] = field(default_factory=set)
    is_forum: bool = False

    def as_json(self) -> dict[str, Any]:
        """Telegram Chat object."""
        d: dict[str, Any] = {"id": self.id, "type": self.type}
        if self.type == "private":
            d["first_name"] = self.title or f"user{self.id}"
        else:
            d["title"] = self.title or f"chat{self.id}"
        if self.is_forum:
            d["is_forum"] = True
        return d


@dataclass
class Sent:
    """A message the bot sent (or an edit), as the fake recorded it."""

    method: str
    chat_id: int
    message_id: int
    text: str
    plain: str
    entities: list[dict[str, Any]]
    parse_mode: str | None
    thread_id: int | None
    reply_markup: dict[str, Any] | None
    link_preview_disabled: bool
    at: float
    document: bytes | None = None
    filename: str | None = None
    # The message this one replies to (reply_parameters), None when it is no reply or the target was gone.
    reply_to: int | None = None


class FakeTelegramAPI:
    """The fake server; use `async with FakeTelegramAPI() as api:` and point the bot at `api.root`."""

    def __init__(self, *, token: str = TOKEN, enforce_limits: bool = False, clock: Any = time.monotonic,
                 response_delay_s: float = 0.0, record_requests: bool = True) -> None:
        self.token = token
        self.enforce_limits = enforce_limits
        self.clock = clock
        self.response_delay_s = response_delay_s
        self.record_requests = record_requests
        self.chats: dict[int, FakeChat] = {}
        self.sent: list[Sent] = []
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.unexpected: list[str] = []
        self.commands: list[dict[str, Any]] = []
        self.chat_commands: dict[int, list[dict[str, Any]]] = {}  # menus set with a BotCommandScopeChat
        self.callback_answers: list[dict[str, Any]] = []
        self.files: dict[str, bytes] = {}
        self.rate_limits: dict[int, deque[float]] = defaultdict(deque)
        self.violations: list[str] = []
        self.too_many: int = 0
        self.hold: dict[int, asyncio.Event] = {}
        self.held: set[int] = set()
        self.dropped: list[dict[str, Any]] = []
        self.deleted: set[tuple[int, int]] = set()
        self._next_429: dict[int, list[int]] = defaultdict(list)
        self._updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1000)
        self._new_update = asyncio.Condition()
        self._global_times: deque[float] = deque()
        self._chat_last: dict[int, float] = {}
        self._group_times: dict[int, deque[float]] = defaultdict(deque)
        self._runner: web.AppRunner | None = None
        self.port = 0
        # Fault injection (tests/test_fault_chat_outage.py): while `outage` is "500", "502", "reset" or
        # "timeout", every Bot API call fails that way; "timeout" holds the request until the outage ends and,
        # with `deliver_timed_out`, then performs it (the client gave up: the documented in-flight duplicate).
        # `storm_retry_after` > 0 answers every send 429 with that retry_after. `log` has (time, method, chat, status).
        self.outage: str | None = None
        self.deliver_timed_out = False
        self.storm_retry_after = 0
        self.faults = 0
        self.log: list[tuple[float, str, int | None, int]] = []
        self._outage_over = asyncio.Event()

    # server lifecycle ---------------------------------------------------------------------------------------

    async def __aenter__(self) -> FakeTelegramAPI:
        app = web.Application(client_max_size=60 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_get("/file/bot{token}/{path:.+}", self._file)
        app.router.add_route("*", "/{tail:.*}", self._unknown_path)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for ev in self.hold.values():
            ev.set()
        self._outage_over.set()
        assert self._runner is not None
        await self._runner.cleanup()

    @property
    def root(self) -> str:
        """What TELEGRAM_API_BASE_URL should be."""
        return f"http://127.0.0.1:{self.port}"

    # test controls ------------------------------------------------------------------------------------------

    def add_chat(self, chat_id: int, type: str = "private", title: str = "", *, admins: set[int] | None = None,
                 is_forum: bool = False) -> FakeChat:
        """Make a chat known (unknown chats answer 'chat not found')."""
        chat = FakeChat(chat_id, type, title, admins=set(admins or ()), is_forum=is_forum)
        self.chats[chat_id] = chat
        return chat

    def block(self, chat_id: int) -> None:
        """The user blocked the bot: sends answer 403."""
        self.chats[chat_id].blocked = True

    def migrate(self, chat_id: int, new_id: int) -> None:
        """A group became a supergroup: sends to the old id answer 400 with migrate_to_chat_id."""
        self.chats[chat_id].migrate_to = new_id
        self.add_chat(new_id, "supergroup", self.chats[chat_id].title, admins=self.chats[chat_id].admins)

    def kick(self, chat_id: int, by_user: int, status: str = "kicked") -> int:
        """The bot is removed from a group ("kicked" or "left"): sends answer 403 and a my_chat_member update
        arrives; returns the update id."""
        chat = self.chats[chat_id]
        chat.blocked = True
        bot = {"id": BOT_ID, "is_bot": True, "first_name": "newsdigest", "username": BOT_USERNAME}
        new: dict[str, Any] = {"user": bot, "status": status}
        if status == "kicked":
            new["until_date"] = 0
        return self._push({"my_chat_member": {"chat": chat.as_json(), "from": self._user(by_user),
                                              "date": int(time.time()),
                                              "old_chat_member": {"user": bot, "status": "member"},
                                              "new_chat_member": new}})

    def delete_message(self, chat_id: int, message_id: int) -> None:
        """A user deleted a message the bot sent: replies to it find no message."""
        self.deleted.add((chat_id, message_id))

    def rate_limit_next(self, chat_id: int, retry_after: int) -> None:
        """The next send to this chat answers 429 with retry_after."""
        self._next_429[chat_id].append(retry_after)

    def start_outage(self, mode: str, *, deliver_timed_out: bool = False) -> None:
        """Every call fails as `mode` ("500", "502", "reset", "timeout") until end_outage()."""
        self.outage, self.deliver_timed_out = mode, deliver_timed_out
        self._outage_over.clear()

    def end_outage(self) -> None:
        """The API answers normally again (held "timeout" requests proceed)."""
        self.outage = None
        self._outage_over.set()

    def add_file(self, data: bytes) -> str:
        """Store a file the bot can getFile + download; returns its file_id."""
        file_id = f"file{len(self.files) + 1}"
        self.files[file_id] = data
        return file_id

    def _push(self, update: dict[str, Any]) -> int:
        uid = next(self._update_ids)
        update["update_id"] = uid
        self._updates.append(update)

        async def notify() -> None:
            async with self._new_update:
                self._new_update.notify_all()

        asyncio.get_running_loop().create_task(notify())
        return uid

    def _user(self, user_id: int) -> dict[str, Any]:
        return {"id": user_id, "is_bot": False, "first_name": f"User{user_id}"}

    def user_message(self, chat_id: int, user_id: int, text: str, *, thread_id: int | None = None,
                     document: tuple[str, bytes] | None = None) -> int:
        """A user sends a message (commands get a bot_command entity); returns the update id."""
        chat = self.chats[chat_id]
        msg: dict[str, Any] = {"message_id": next(self._message_ids), "date": int(time.time()),
                               "chat": chat.as_json(), "from": self._user(user_id)}
        body_key = "caption" if document else "text"
        msg[body_key] = text
        if text.startswith("/"):
            cmd = text.split()[0]
            msg[f"{'caption_' if document else ''}entities"] = [
                {"type": "bot_command", "offset": 0, "length": utf16_len(cmd)}]
        if thread_id is not None:
            msg["message_thread_id"] = thread_id
            msg["is_topic_message"] = True
        if document is not None:
            name, data = document
            fid = self.add_file(data)
            msg["document"] = {"file_id": fid, "file_unique_id": "u" + fid, "file_name": name,
                               "file_size": len(data)}
        kind = "channel_post" if chat.type == "channel" else "message"
        if kind == "channel_post":
            msg.pop("from")
            msg["sender_chat"] = chat.as_json()
        return self._push({kind: msg})

    def press_button(self, sent: Sent, user_id: int, data: str) -> int:
        """A user presses an inline button under a message the bot sent."""
        chat = self.chats[sent.chat_id]
        message = {"message_id": sent.message_id, "date": int(time.time()), "chat": chat.as_json(),
                   "from": {"id": BOT_ID, "is_bot": True, "first_name": "bot", "username": BOT_USERNAME},
                   "text": sent.plain}
        return self._push({"callback_query": {"id": str(next(self._message_ids)), "from": self._user(user_id),
                                              "chat_instance": "ci", "message": message, "data": data}})

    def sent_to(self, chat_id: int) -> list[Sent]:
        """Messages sent to a chat, in order."""
        return [s for s in self.sent if s.chat_id == chat_id]

    async def wait_for(self, predicate: Any, timeout: float = 10.0) -> None:
        """Wait until predicate() is true (polling the recorded state)."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"fake Telegram: condition not met in {timeout} s; sent={len(self.sent)}, "
                                   f"unexpected={self.unexpected}")
            await asyncio.sleep(0.01)

    async def wait_sent(self, chat_id: int, n: int = 1, timeout: float = 10.0) -> list[Sent]:
        """Wait for at least n messages to a chat; returns them."""
        await self.wait_for(lambda: len(self.sent_to(chat_id)) >= n, timeout)
        return self.sent_to(chat_id)

    # HTTP -------------------------------------------------------------------------------------------------

    @staticmethod
    def _ok(result: Any) -> web.Response:
        return web.json_response({"ok": True, "result": result})

    @staticmethod
    def _err(code: int, description: str, **parameters: Any) -> web.Response:
        body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
        if parameters:
            body["parameters"] = parameters
        return web.json_response(body, status=code)

    async def _unknown_path(self, request: web.Request) -> web.Response:
        self.unexpected.append(f"{request.method} {request.path}")
        return self._err(404, "Not Found")

    async def _params(self, request: web.Request) -> dict[str, Any]:
        if request.content_type == "application/json":
            raw = await request.json()
            return dict(raw or {})
        form = await request.post()
        out: dict[str, Any] = {}
        for k, v in form.items():
            if hasattr(v, "file"):
                out[k] = {"filename": v.filename, "data": v.file.read()}
            else:
                out[k] = v
        return out

    async def _handle(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            self.unexpected.append(f"bad token {request.match_info['token']!r}")
            return self._err(401, "Unauthorized")
        method = request.match_info["method"]
        params = await self._params(request)
        if self.record_requests:
            self.requests.append((method, {k: v for k, v in params.items() if k != "document"}))
        chat_id = params.get("chat_id")
        response = await self._faulty(request, method, params)
        self.log.append((time.monotonic(), method, int(chat_id) if chat_id is not None else None,
                         response.status if response is not None else 200))
        if response is not None:
            return response
        handler = getattr(self, f"_m_{method}", None)
        if method == "sendMessage" and chat_id is not None and int(chat_id) in self.hold:
            # Held: the test decides when this request proceeds; if the client went away meanwhile (killed),
            # the message counts as never delivered, like a request Telegram never finished.
            self.held.add(int(chat_id))
            await self.hold[int(chat_id)].wait()
            if request.transport is None or request.transport.is_closing():
                self.dropped.append(params)
                return self._err(500, "client gone")
        if handler is None:
            self.unexpected.append(f"method {method}")
            return self._err(404, f"Not Found: method {method} not supported by the fake")
        try:
            return await handler(params)
        except (KeyError, ValueError, TypeError) as exc:
            self.unexpected.append(f"{method}: bad parameters {params!r}: {exc!r}")
            return self._err(400, f"Bad Request: {exc}")

    async def _faulty(self, request: web.Request, method: str, params: dict[str, Any]) -> web.Response | None:
        """The injected fault's answer, or None to handle the call normally."""
        mode = self.outage
        if mode is None:
            if self.storm_retry_after and method in ("sendMessage", "sendDocument"):
                self.too_many += 1
                ra = self.storm_retry_after
                return self._err(429, f"Too Many Requests: retry after {ra}", retry_after=ra)
            return None
        self.faults += 1
        if mode in ("500", "502"):
            return self._err(int(mode), "Internal Server Error" if mode == "500" else "Bad Gateway")
        if mode == "reset":
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=599)
        assert mode == "timeout", mode
        await self._outage_over.wait()
        if self.deliver_timed_out and method == "sendMessage":
            return None
        return self._err(500, "client gone")

    async def _file(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        if request.match_info["token"] != self.token or path not in self.files:
            self.unexpected.append(f"file {path}")
            return web.Response(status=404)
        return web.Response(body=self.files[path])

    @staticmethod
    def _json(params: dict[str, Any], key: str) -> Any:
        v = params.get(key)
        return json.loads(v) if isinstance(v, str) else v

    # methods ----------------------------------------------------------------------------------------------

    async def _m_getMe(self, params: dict[str, Any]) -> web.Response:
        return self._ok({"id": BOT_ID, "is_bot": True, "first_name": "newsdigest", "username": BOT_USERNAME,
                         "can_join_groups": True, "can_read_all_group_messages": False,
                         "supports_inline_queries": False})

    async def _m_deleteWebhook(self, params: dict[str, Any]) -> web.Response:
        return self._ok(True)

    async def _m_setMyCommands(self, params: dict[str, Any]) -> web.Response:
        cmds = self._json(params, "commands")
        for c in cmds:
            if not re.fullmatch(r"[a-z0-9_]{1,32}", c["command"]) or not 1 <= len(c["description"]) <= 256:
                raise ValueError(f"bad command {c!r}")
        scope = self._json(params, "scope") or {"type": "default"}
        if scope["type"] == "chat":
            chat_id = int(scope["chat_id"])
            if chat_id not in self.chats:
                return self._err(400, "Bad Request: chat not found")
            self.chat_commands[chat_id] = cmds
        elif scope["type"] == "default":
            self.commands = cmds
        else:
            raise ValueError(f"scope {scope!r} not faked")
        return self._ok(True)

    async def _m_getUpdates(self, params: dict[str, Any]) -> web.Response:
        offset = int(params.get("offset") or 0)
        timeout = float(params.get("timeout") or 0)
        if offset:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        deadline = time.monotonic() + timeout
        while not self._updates and time.monotonic() < deadline:
            async with self._new_update:
                try:
                    await asyncio.wait_for(self._new_update.wait(), max(0.0, deadline - time.monotonic()))
                except TimeoutError:
                    break
        return self._ok(list(self._updates))

    def _check_limits(self, chat: FakeChat) -> str | None:
        now = self.clock()
        problems = []
        g = self._global_times
        while g and g[0] <= now - 1.0:
            g.popleft()
        if len(g) >= 30:
            problems.append("more than 30 messages/s overall")
        last = self._chat_last.get(chat.id)
        if last is not None and now - last < 1.0 - 1e-3:
            problems.append(f"chat {chat.id}: {now - last:.3f} s after the previous message")
        if chat.type in ("group", "supergroup"):
            w = self._group_times[chat.id]
            while w and w[0] <= now - 60.0:
                w.popleft()
            if len(w) >= 20:
                problems.append(f"group {chat.id}: more than 20 messages/min")
        if problems:
            return "; ".join(problems)
        g.append(now)
        self._chat_last[chat.id] = now
        if chat.type in ("group", "supergroup"):
            self._group_times[chat.id].append(now)
        return None

    async def _target(self, params: dict[str, Any]) -> tuple[FakeChat | None, web.Response | None]:
        chat_id = int(params["chat_id"])
        chat = self.chats.get(chat_id)
        if chat is None:
            return None, self._err(400, "Bad Request: chat not found")
        if chat.migrate_to is not None:
            return None, self._err(400, "Bad Request: group chat was upgraded to a supergroup chat",
                                   migrate_to_chat_id=chat.migrate_to)
        if chat.blocked:
            return None, self._err(403, "Forbidden: bot was blocked by the user")
        if self._next_429.get(chat_id):
            ra = self._next_429[chat_id].pop(0)
            self.too_many += 1
            return None, self._err(429, f"Too Many Requests: retry after {ra}", retry_after=ra)
        problem = self._check_limits(chat)
        if problem:
            self.violations.append(problem)
            if self.enforce_limits:
                self.too_many += 1
                return None, self._err(429, "Too Many Requests: retry after 1", retry_after=1)
        return chat, None

    def _message_json(self, chat: FakeChat, sent: Sent) -> dict[str, Any]:
        m: dict[str, Any] = {"message_id": sent.message_id, "date": int(time.time()), "chat": chat.as_json(),
                             "from": {"id": BOT_ID, "is_bot": True, "first_name": "newsdigest",
                                      "username": BOT_USERNAME}}
        if sent.document is not None:
            m["document"] = {"file_id": f"sent{sent.message_id}", "file_unique_id": f"s{sent.message_id}",
                             "file_name": sent.filename, "file_size": len(sent.document)}
            if sent.plain:
                m["caption"] = sent.plain
        else:
            m["text"] = sent.plain
            if sent.entities:
                m["entities"] = sent.entities
        if sent.thread_id:
            m["message_thread_id"] = sent.thread_id
            m["is_topic_message"] = True
        if sent.reply_markup:
            m["reply_markup"] = sent.reply_markup
        return m

    def _parse_text(self, text: str, parse_mode: str | None, limit: int) -> tuple[str, list, web.Response | None]:
        if parse_mode not in (None, "", "HTML"):
            self.unexpected.append(f"parse_mode {parse_mode}")
            return "", [], self._err(400, f"Bad Request: unsupported parse_mode {parse_mode}")
        try:
            plain, entities = parse_html(text) if parse_mode == "HTML" else (text, [])
        except HTMLParseError as exc:
            self.unexpected.append(f"invalid HTML: {exc}: {text[:200]!r}")
            return "", [], self._err(400, f"Bad Request: can't parse entities: {exc}")
        if utf16_len(plain) > limit:
            self.unexpected.append(f"message too long: {utf16_len(plain)}")
            return "", [], self._err(400, "Bad Request: message is too long")
        return plain, entities, None

    def _markup(self, params: dict[str, Any]) -> dict[str, Any] | None:
        markup = self._json(params, "reply_markup")
        if markup:
            for row in markup["inline_keyboard"]:
                for b in row:
                    if len(b["callback_data"].encode()) > 64:
                        raise ValueError("callback_data longer than 64 bytes")
        return markup

    async def _m_sendMessage(self, params: dict[str, Any]) -> web.Response:
        if self.response_delay_s:
            await asyncio.sleep(self.response_delay_s)
        chat, err = await self._target(params)
        if err is not None:
            return err
        assert chat is not None
        text = params["text"]
        if not text.strip():
            return self._err(400, "Bad Request: message text is empty")
        plain, entities, err = self._parse_text(text, params.get("parse_mode"), MESSAGE_LIMIT)
        if err is not None:
            return err
        preview = self._json(params, "link_preview_options") or {}
        thread = int(params["message_thread_id"]) if params.get("message_thread_id") else None
        reply_to, err = self._reply_target(chat, thread, params)
        if err is not None:
            return err
        sent = Sent("sendMessage", chat.id, next(self._message_ids), text, plain, entities, params.get("parse_mode"),
                    thread, self._markup(params), bool(preview.get("is_disabled")), self.clock(), reply_to=reply_to)
        self.sent.append(sent)
        return self._ok(self._message_json(chat, sent))

    def _reply_target(self, chat: FakeChat, thread: int | None,
                      params: dict[str, Any]) -> tuple[int | None, web.Response | None]:
        """The message a send replies to, as Telegram resolves reply_parameters: one the bot sent to this chat
        and topic and nobody deleted; else no reply with allow_sending_without_reply, or 400."""
        if params.get("reply_to_message_id"):
            raise ValueError("reply_to_message_id is deprecated: use reply_parameters")
        rp = self._json(params, "reply_parameters")
        if not rp:
            return None, None
        mid = int(rp["message_id"])
        if rp.get("chat_id") is not None:
            raise ValueError("a reply in another chat is not what the bot sends")
        found = any(s.chat_id == chat.id and s.message_id == mid and s.thread_id == thread for s in self.sent)
        if found and (chat.id, mid) not in self.deleted:
            return mid, None
        if rp.get("allow_sending_without_reply"):
            return None, None
        return None, self._err(400, "Bad Request: message to be replied not found")

    async def _m_sendDocument(self, params: dict[str, Any]) -> web.Response:
        chat, err = await self._target(params)
        if err is not None:
            return err
        assert chat is not None
        doc = params["document"]
        if not isinstance(doc, dict):
            raise ValueError("document must be an uploaded file")
        caption = params.get("caption") or ""
        plain, entities, err = self._parse_text(caption, params.get("parse_mode"), 1024)
        if err is not None:
            return err
        thread = int(params["message_thread_id"]) if params.get("message_thread_id") else None
        sent = Sent("sendDocument", chat.id, next(self._message_ids), caption, plain, entities,
                    params.get("parse_mode"), thread, None, True, self.clock(), doc["data"], doc["filename"])
        self.sent.append(sent)
        return self._ok(self._message_json(chat, sent))

    async def _m_editMessageText(self, params: dict[str, Any]) -> web.Response:
        chat = self.chats[int(params["chat_id"])]
        mid = int(params["message_id"])
        original = next((s for s in self.sent if s.chat_id == chat.id and s.message_id == mid), None)
        if original is None:
            return self._err(400, "Bad Request: message to edit not found")
        plain, entities, err = self._parse_text(params["text"], params.get("parse_mode"), MESSAGE_LIMIT)
        if err is not None:
            return err
        markup = self._markup(params)
        if plain == original.plain and markup == original.reply_markup:
            return self._err(400, "Bad Request: message is not modified")
        edited = Sent("editMessageText", chat.id, mid, params["text"], plain, entities, params.get("parse_mode"),
                      original.thread_id, markup, True, self.clock())
        self.sent.append(edited)
        return self._ok(self._message_json(chat, edited))

    async def _m_answerCallbackQuery(self, params: dict[str, Any]) -> web.Response:
        if len(params.get("text") or "") > 200:
            raise ValueError("callback answer text longer than 200 characters")
        self.callback_answers.append(params)
        return self._ok(True)

    async def _m_getChatMember(self, params: dict[str, Any]) -> web.Response:
        chat = self.chats[int(params["chat_id"])]
        user_id = int(params["user_id"])
        user = self._user(user_id)
        if user_id in chat.admins:
            return self._ok({"status": "creator", "user": user, "is_anonymous": False})
        return self._ok({"status": "member", "user": user})

    async def _m_getFile(self, params: dict[str, Any]) -> web.Response:
        fid = params["file_id"]
        if fid not in self.files:
            return self._err(400, "Bad Request: invalid file_id")
        return self._ok({"file_id": fid, "file_unique_id": "u" + fid, "file_size": len(self.files[fid]),
                         "file_path": fid})

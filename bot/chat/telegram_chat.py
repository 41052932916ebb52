"""Telegram adapter on python-telegram-bot: updates -> Invocation -> CommandService -> rendered replies, and a
ChatSink for the outbox. python-telegram-bot errors are translated into bot.errors here and nowhere else.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from dataclasses import replace
from datetime import timedelta

from telegram import (
    BotCommand,
    BotCommandScopeChat,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputFile,
    LinkPreviewOptions,
    Message,
    ReplyParameters,
    Update,
)
from telegram.constants import ChatMemberStatus, ChatType, ParseMode
from telegram.error import BadRequest, ChatMigrated, Forbidden, NetworkError, RetryAfter, TelegramError
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    ChatMemberHandler,
    ContextTypes,
    ExtBot,
    MessageHandler,
    filters,
)
from telegram.warnings import PTBDeprecationWarning

from bot.chat.commands import CommandService, needs_chat_admin, parse_command
from bot.chat.render_telegram import TelegramRenderer
from bot.clock import utcnow
from bot.errors import ChatForbiddenError, DeliveryError, RateLimitedError
from bot.pipeline.delivery import TELEGRAM_LIMITS, Limits
from bot.ports import CHANNEL, GROUP, PRIVATE, ChatRef, Invocation, OutgoingMessage, Reply

log = logging.getLogger(__name__)

PLATFORM = "telegram"
API_ROOT = "https://api.telegram.org"
_ADMIN_STATUSES = {ChatMemberStatus.ADMINISTRATOR, ChatMemberStatus.OWNER}
# Bad requests that mean the chat is gone for us, like a 403.
_GONE = ("chat not found", "bot was kicked", "user is deactivated", "not enough rights to send",
         "have no rights to send", "chat_write_forbidden")
MAX_REPLY_RETRY_AFTER_S = 10.0


def translate_error(exc: TelegramError) -> DeliveryError:
    """The bot.errors equivalent of a python-telegram-bot error."""
    if isinstance(exc, Forbidden):
        return ChatForbiddenError(exc.message)
    if isinstance(exc, RetryAfter):
        with warnings.catch_warnings():
            # PTB 22 warns that retry_after becomes a timedelta; both forms are handled below.
            warnings.simplefilter("ignore", PTBDeprecationWarning)
            ra = exc.retry_after
        seconds = ra.total_seconds() if isinstance(ra, timedelta) else float(ra)
        return RateLimitedError(exc.message, seconds)
    if isinstance(exc, ChatMigrated):
        return DeliveryError(exc.message, migrate_to=str(exc.new_chat_id))
    if isinstance(exc, BadRequest):
        if any(g in exc.message.lower() for g in _GONE):
            return ChatForbiddenError(exc.message)
        return DeliveryError(exc.message, permanent=True)
    if isinstance(exc, NetworkError):
        return DeliveryError(exc.message)
    return DeliveryError(exc.message, permanent=True)


def _markup(message: OutgoingMessage) -> InlineKeyboardMarkup | None:
    if not message.buttons:
        return None
    return InlineKeyboardMarkup([[InlineKeyboardButton(b.label, callback_data=b.data) for b in row]
                                 for row in message.buttons])


def chat_ref(msg: Message | None, update: Update) -> ChatRef:
    """ChatRef for the chat (and forum topic) an update came from."""
    chat = update.effective_chat
    assert chat is not None
    kinds: dict[str, str] = {ChatType.PRIVATE: PRIVATE, ChatType.CHANNEL: CHANNEL}
    kind = kinds.get(chat.type, GROUP)
    thread = ""
    if msg is not None and msg.is_topic_message and msg.message_thread_id:
        thread = str(msg.message_thread_id)
    title = chat.title or chat.full_name or chat.username or ""
    return ChatRef(PLATFORM, str(chat.id), thread, kind, title)


class TelegramChat:
    """The Telegram adapter: a Service (receives updates by long polling) and a ChatSink (sends messages).

    Constructed as every adapter is: `TelegramChat(token, service, *, limits=..., <platform options>)`.
    """

    platform = PLATFORM

    def __init__(self, token: str, service: CommandService, *, limits: Limits = TELEGRAM_LIMITS,
                 api_root: str = API_ROOT, poll_timeout_s: float = 10.0, connection_pool: int = 32,
                 receive: bool = True) -> None:
        self.service = service
        self.limits = limits
        self.renderer = TelegramRenderer()
        self.receive = receive
        self.poll_timeout_s = poll_timeout_s
        root = api_root.rstrip("/")
        self.app = (Application.builder().token(token).base_url(f"{root}/bot").base_file_url(f"{root}/file/bot")
                    .connection_pool_size(connection_pool).concurrent_updates(8)
                    .get_updates_read_timeout(poll_timeout_s + 10).build())
        self.app.add_handler(MessageHandler(filters.StatusUpdate.MIGRATE, self._on_migrate))
        self.app.add_handler(MessageHandler(filters.Document.ALL & filters.CaptionRegex(r"^/"), self._on_document))
        self.app.add_handler(MessageHandler(filters.COMMAND & ~filters.UpdateType.EDITED, self._on_command))
        # Plain text in a private chat gets a pointer to /help (in a group it is people talking to each other).
        self.app.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND & filters.ChatType.PRIVATE
                                            & ~filters.UpdateType.EDITED, self._on_plain_text))
        self.app.add_handler(CallbackQueryHandler(self._on_callback))
        self.app.add_handler(ChatMemberHandler(self._on_my_member, ChatMemberHandler.MY_CHAT_MEMBER))
        self.app.add_error_handler(self._on_error)
        self._started = False

    @property
    def bot(self) -> ExtBot[None]:
        """The python-telegram-bot Bot."""
        return self.app.bot

    # lifecycle ----------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, register the command menu and start long polling."""
        await self.app.initialize()
        self._started = True
        try:
            await self.bot.set_my_commands([BotCommand(n, d) for n, d in self.service.command_menu()])
        except TelegramError as exc:
            log.warning("setMyCommands failed: %s", exc)
        await self._owner_menus()
        if self.receive:
            assert self.app.updater is not None
            await self.app.updater.start_polling(
                timeout=int(self.poll_timeout_s), allowed_updates=["message", "channel_post", "callback_query",
                                                                   "my_chat_member"])
            await self.app.start()
        log.info("Telegram adapter started as @%s", self.bot.username)

    async def _owner_menus(self) -> None:
        """In each Telegram owner's private chat the menu lists the owners' commands too (/alerts, /feeds, ...);
        an owner who never started the bot has no such chat yet (Telegram refuses; the default menu stays)."""
        menu = [BotCommand(n, d) for n, d in self.service.command_menu(owner=True)]
        for owner in sorted(self.service.admins):
            platform, _, user_id = owner.partition(":")
            if platform != PLATFORM:
                continue
            try:
                await self.bot.set_my_commands(menu, scope=BotCommandScopeChat(int(user_id)))
            except TelegramError as exc:
                log.info("owner menu for %s not set: %s", owner, exc)

    async def stop(self) -> None:
        """Stop polling and close connections."""
        if not self._started:
            return
        if self.receive:
            assert self.app.updater is not None
            if self.app.updater.running:
                await self.app.updater.stop()
            if self.app.running:
                await self.app.stop()
        await self.app.shutdown()
        self._started = False

    # ChatSink -----------------------------------------------------------------------------------------------

    async def send(self, chat: ChatRef, message: OutgoingMessage) -> str:
        """Send one message (a document when it carries a file); errors come out as bot.errors."""
        thread = int(chat.thread_id) if chat.thread_id else None
        parse_mode = ParseMode.HTML if message.parse_mode == "html" else None
        try:
            if message.file is not None:
                f = message.file
                sent = await self.bot.send_document(
                    chat_id=int(chat.chat_id), document=InputFile(f.data, filename=f.filename),
                    caption=message.text or None, parse_mode=parse_mode, message_thread_id=thread)
            else:
                # A follow-up answers the message the chat got the story in; if that one was deleted, Telegram
                # sends it as a message of its own.
                reply = ReplyParameters(message_id=int(message.reply_to), allow_sending_without_reply=True) \
                    if message.reply_to.isdecimal() else None
                sent = await self.bot.send_message(
                    chat_id=int(chat.chat_id), text=message.text, parse_mode=parse_mode, message_thread_id=thread,
                    link_preview_options=LinkPreviewOptions(is_disabled=not message.link_preview),
                    reply_markup=_markup(message), reply_parameters=reply)
        except TelegramError as exc:
            raise translate_error(exc) from exc
        return str(sent.message_id)

    # updates -> commands ------------------------------------------------------------------------------------

    async def _invocation(self, update: Update, msg: Message, text: str) -> Invocation | None:
        parsed = parse_command(text, self.bot.username)
        if parsed is None:
            return None
        command, args = parsed
        chat = chat_ref(msg, update)
        user = update.effective_user
        user_id = str(user.id) if user else str(chat.chat_id)
        admin = chat.kind != GROUP
        if not admin and needs_chat_admin(command):
            # An anonymous group admin posts as the group itself.
            admin = (msg.sender_chat is not None and msg.sender_chat.id == msg.chat_id) or \
                await self._is_chat_admin(chat, user_id)
        return Invocation(PLATFORM, chat, user_id, command, args, user_is_chat_admin=admin,
                          user_name=user.full_name if user else chat.title)

    async def _is_chat_admin(self, chat: ChatRef, user_id: str) -> bool:
        """Whether Telegram reports the user as an administrator (or the owner) of the chat."""
        try:
            member = await self.bot.get_chat_member(int(chat.chat_id), int(user_id))
        except TelegramError as exc:
            log.warning("getChatMember failed in %s: %s", chat.chat_id, exc)
            return False
        return member.status in _ADMIN_STATUSES

    async def _on_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        msg = update.effective_message
        if msg is None or not msg.text:
            return
        inv = await self._invocation(update, msg, msg.text)
        if inv is not None:
            await self._answer(inv, msg)

    async def _on_plain_text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        msg = update.effective_message
        if msg is not None:
            await self._reply(chat_ref(msg, update), msg, self.service.plain_text_reply())

    async def _on_document(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        msg = update.effective_message
        if msg is None or msg.document is None or not msg.caption:
            return
        doc = msg.document
        inv = await self._invocation(update, msg, msg.caption)
        if inv is None:
            return
        inv = replace(inv, attachment_name=doc.file_name, attachment_size=doc.file_size)
        if self.service.wants_attachment(inv):
            tg_file = await doc.get_file()
            inv = replace(inv, attachment=bytes(await tg_file.download_as_bytearray()))
        await self._answer(inv, msg)

    async def _on_callback(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        q = update.callback_query
        if q is None:
            return
        msg = q.message if isinstance(q.message, Message) else None
        if msg is None:
            await q.answer("This message is too old; send /settings again.")
            return
        chat = chat_ref(msg, update)
        user_id = str(q.from_user.id)
        # Only a private chat is the user's own: in a channel any reader can press a button, so ask.
        admin = chat.kind == PRIVATE or await self._is_chat_admin(chat, user_id)
        inv = Invocation(PLATFORM, chat, user_id, "callback", user_is_chat_admin=admin, callback_data=q.data,
                         user_name=q.from_user.full_name)
        reply = await self.service.handle(inv)
        await q.answer(reply.notice or None)
        rendered = self.renderer.render_reply(reply)
        if reply.edit and rendered:
            first = rendered[0]
            try:
                await msg.edit_text(first.text, parse_mode=ParseMode.HTML, reply_markup=_markup(first),
                                    link_preview_options=LinkPreviewOptions(is_disabled=True))
            except BadRequest as exc:
                if "not modified" not in exc.message.lower():
                    log.warning("editMessageText failed: %s", exc)
        elif not reply.notice:
            await self._send_all(chat, rendered)

    async def _on_migrate(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        msg = update.effective_message
        if msg is not None and msg.migrate_to_chat_id:
            await asyncio.to_thread(self.service.chats.migrate_chat, PLATFORM, str(msg.chat_id),
                                    str(msg.migrate_to_chat_id))
            log.info("chat %s migrated to %s", msg.chat_id, msg.migrate_to_chat_id)

    async def _on_my_member(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        change = update.my_chat_member
        if change is None:
            return
        if change.new_chat_member.status in (ChatMemberStatus.BANNED, ChatMemberStatus.LEFT):
            # The whole group is gone: its forum topics' subscriptions pause too, not one by one on a 403.
            n = await asyncio.to_thread(self.service.chats.pause_chat, PLATFORM, str(change.chat.id),
                                        f"bot {change.new_chat_member.status}", utcnow())
            log.info("removed from chat %s; %d subscription(s) paused", change.chat.id, n)

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        log.error("error while handling a Telegram update", exc_info=context.error)

    # replies ------------------------------------------------------------------------------------------------

    async def _answer(self, inv: Invocation, msg: Message) -> None:
        reply = await self.service.handle(inv)
        await self._reply(inv.chat, msg, reply)

    async def _reply(self, chat: ChatRef, msg: Message, reply: Reply) -> None:
        await self._send_all(chat, self.renderer.render_reply(reply))

    async def _send_all(self, chat: ChatRef, messages: list[OutgoingMessage]) -> None:
        for m in messages:
            for attempt in range(2):
                try:
                    await self.send(chat, m)
                    break
                except RateLimitedError as exc:
                    if attempt or (exc.retry_after or 0) > MAX_REPLY_RETRY_AFTER_S:
                        log.warning("reply to %s dropped: rate limited for %s s", chat.key, exc.retry_after)
                        return
                    await asyncio.sleep(exc.retry_after or 1)
                except DeliveryError as exc:
                    log.warning("reply to %s failed: %s", chat.key, exc.reason)
                    return

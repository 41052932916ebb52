"""The owners' /alerts command: see, mute and unmute the alerts the chat runtime sends them (bot/pipeline/alerts.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.errors import CommandError
from bot.ports import PRIVATE, AlertStore, Invocation, Reply, para
from bot.settings import parse_duration

DISCORD = "discord"
USAGE = "Usage: /alerts on, /alerts off, or /alerts 24h (mute for a while, e.g. 30m, 6h, 2d)"
FOREVER = datetime(9999, 1, 1, tzinfo=UTC)
MAX_MUTE = timedelta(days=365)


def _state(until: datetime | None, now: datetime) -> str:
    if until is None or until <= now:
        return "on"
    if until >= FOREVER:
        return "off (until /alerts on)"
    return f"muted until {until:%Y-%m-%d %H:%M} UTC"


def alerts_command(store: AlertStore | None, inv: Invocation, now: datetime) -> Reply:
    """Answer /alerts for an owner (the caller checks that): show, turn on, turn off or mute for a duration."""
    if store is None:
        raise CommandError("Alerts are not available here.")
    if len(inv.args) > 1:
        raise CommandError(USAGE)
    owner = inv.user_key
    # Discord bots open a direct message with a member themselves (the owner's chat row is the user id, as a
    # Telegram private chat's id is); a Telegram bot can only answer a private chat the user started.
    dm = inv.platform == DISCORD
    if dm:
        store.register_owner_chat(inv.platform, inv.user_id, now)
    elif inv.chat.kind == PRIVATE and not inv.chat.thread_id:
        store.register_owner_chat(inv.platform, inv.chat.chat_id, now)
    if inv.args:
        arg = inv.args[0].lower()
        if arg == "on":
            until = None
        elif arg == "off":
            until = FOREVER
        else:
            try:
                seconds = parse_duration(arg)
            except ValueError:
                raise CommandError(USAGE) from None
            until = now + min(timedelta(seconds=seconds), MAX_MUTE)
        store.set_alert_mute(owner, until)
    else:
        until = store.alert_owner_states([owner])[owner].muted_until
    if dm:
        where = "They come to you as direct messages from the bot (if your privacy settings allow them)."
    elif inv.chat.kind == PRIVATE and not inv.chat.thread_id:
        where = "They come to this private chat."
    else:
        where = "They go to your private chat with the bot: send /alerts there once."
    return Reply(blocks=(para(f"Owner alerts: {_state(until, now)}. {where}"),
                         para("Feeds paused, failing or recovered, chats paused and chat APIs unreachable; at most "
                              "one message per 10 minutes, and a daily summary.")))

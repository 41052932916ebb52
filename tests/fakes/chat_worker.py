"""A chat-delivery process for the crash test: ChatRuntime + Telegram sink over a database, until SIGTERM/SIGINT.

Run as `python -m tests.fakes.chat_worker --db URL --api ROOT [--lease S]`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from bot.chat.commands import CommandService
from bot.chat.runtime import ChatRuntime, RuntimeConfig
from bot.chat.telegram_chat import TelegramChat
from bot.settings import DigestDefaults
from bot.storage.chat_store import ChatStore
from bot.storage.store import Store
from tests.fakes.telegram_api import TOKEN


def worker_config(lease_s: float) -> RuntimeConfig:
    """Fast ticks, so a killed-and-restarted worker test runs in seconds."""
    return RuntimeConfig(scheduler_tick_s=0.2, claim_interval_s=0.05, lease_s=lease_s, shutdown_grace_s=5)


async def run_until_signalled(runtime: ChatRuntime) -> None:
    """Run a chat runtime until SIGINT or SIGTERM, then stop it cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await runtime.run(stop)


async def main(db: str, api: str, lease_s: float) -> int:
    """Deliver until a signal; exit 0 after a clean stop."""
    store = Store.open(db)
    chats = ChatStore(store.engine)
    defaults = DigestDefaults()
    tg = TelegramChat(TOKEN, CommandService(chats, admins=(), defaults=defaults), api_root=api, receive=False)
    await run_until_signalled(ChatRuntime(chats, defaults, [tg], services=[tg], config=worker_config(lease_s)))
    store.close()
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--db", required=True)
    p.add_argument("--api", required=True)
    p.add_argument("--lease", type=float, default=1.0)
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="worker %(levelname)s %(name)s: %(message)s")
    raise SystemExit(asyncio.run(main(a.db, a.api, a.lease)))

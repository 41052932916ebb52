"""The chat layer's storage: one facade over the subscription, outbox and digest-candidate domains.

Each domain lives in its own module (bot/storage/chats.py, outbox.py, stories.py) behind a Protocol in
bot/ports.py; it composes with Store over the same engine (and the same SQLite write lock).
"""

from __future__ import annotations

from bot.storage.alerts import AlertStorage
from bot.storage.chats import CANCELLED, FAILED, PENDING, SENT, Subscription, SubscriptionStorage
from bot.storage.db import Database
from bot.storage.outbox import OutboxItem, OutboxStorage
from bot.storage.stories import MAX_CANDIDATES, MAX_LINKS_PER_STORY, StoryCandidateStorage


class ChatStore(AlertStorage, SubscriptionStorage, OutboxStorage, StoryCandidateStorage, Database):
    """Database access for the chat layer: chats, subscriptions, sent stories, outbox, digest candidates."""


__all__ = ["CANCELLED", "FAILED", "MAX_CANDIDATES", "MAX_LINKS_PER_STORY", "PENDING", "SENT", "ChatStore",
           "OutboxItem", "Subscription"]

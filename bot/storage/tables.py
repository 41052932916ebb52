"""Database schema (SQLAlchemy Core). Alembic migrations in `migrations/` must match these tables."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)



class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive text, so we add UTC back on read)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

feeds = Table(
    "feeds",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("url", String(2048), nullable=False, unique=True),
    Column("name", String(300), nullable=False, default=""),
    Column("tags", JSON, nullable=False, default=list),
    Column("region", String(100)),
    Column("language", String(20)),
    Column("interval_s", Integer, nullable=False, default=900),
    Column("timeout_s", Float),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("all_world", Boolean, nullable=False, default=False),
    Column("date_fallback", Boolean, nullable=False, default=False),
    Column("state_media", Boolean, nullable=False, default=False),
    # Where the row came from: "file" rows follow feeds.yaml, others were added by an operator.
    Column("origin", String(20), nullable=False, default="file"),
    # Soft delete, so that an admin's removal survives the next start that re-reads feeds.yaml.
    Column("removed", Boolean, nullable=False, default=False),
    Column("etag", String(500)),
    Column("last_modified", String(100)),
    Column("error_count", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("last_checked_at", UTCDateTime),
    Column("last_success_at", UTCDateTime),
    Column("next_check_at", UTCDateTime),
    Column("paused_reason", Text),
    Column("title", String(500)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

articles = Table(
    "articles",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("feed_id", Integer, ForeignKey("feeds.id", ondelete="SET NULL"), index=True),
    Column("key", String(100), nullable=False, unique=True),
    Column("url", String(2048)),
    Column("canonical_url", String(2048), unique=True),
    Column("title", Text, nullable=False, default=""),
    Column("teaser", Text, nullable=False, default=""),
    Column("text", Text, nullable=False, default=""),
    # "feed": text came with the entry; "page": extracted from the article page; "pending"/"failed" otherwise.
    Column("text_source", String(20), nullable=False, default="feed"),
    Column("content_hash", String(64), nullable=False, index=True),
    Column("published_at", UTCDateTime, index=True),
    Column("fetched_at", UTCDateTime, nullable=False, index=True),
    Column("extract_attempts", Integer, nullable=False, default=0),
    Column("extract_error", Text),
    Column("topic_score", Float),
    Column("topics", JSON),
    Column("story_id", Integer, ForeignKey("stories.id", ondelete="SET NULL"), index=True),
    Column("story_reason", String(30)),
    # The same-story decision's score: with story_reason it says whether the article surely belongs (core member).
    Column("story_score", Float),
    Column("processed_at", UTCDateTime, index=True),
    # Topic scores and same-story features computed ahead of placement (scale-out: the embed queue, in parallel);
    # bot.processing.Prepared.to_bytes(); cleared when the article is processed. NULL: computed at placement.
    Column("prepared", LargeBinary),
)

stories = Table(
    "stories",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("title", Text, nullable=False, default=""),
    Column("created_at", UTCDateTime, nullable=False, index=True),
    Column("updated_at", UTCDateTime, nullable=False, index=True),
    # Bumped on a substantial update; a chat gets a story again when its version grew.
    Column("version", Integer, nullable=False, default=1),
    Column("major_update_at", UTCDateTime, nullable=False),
    Column("article_count", Integer, nullable=False, default=0),
    Column("outlet_count", Integer, nullable=False, default=0),
    Column("topic_score", Float, nullable=False, default=0.0),
    Column("topics", JSON),
    Column("state", LargeBinary),
    Column("summary", Text),
    Column("summary_method", String(100)),
    # [{"text", "article_id", "outlet", "url"}, ...]: the summary's sentences and their sources (NULL: unknown).
    Column("summary_sources", JSON),
)

summaries = Table(
    "summaries",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("model", String(300), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

chats = Table(
    "chats",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("platform", String(20), nullable=False),
    Column("chat_ref", String(100), nullable=False),
    # Forum topic (Telegram) or thread (Discord); "" for the chat itself.
    Column("thread_ref", String(100), nullable=False, default=""),
    Column("kind", String(20), nullable=False, default="private"),
    Column("title", String(300), nullable=False, default=""),
    Column("created_at", UTCDateTime, nullable=False),
    # When the last /summary here started: the cooldown, claimed and checked in one UPDATE (ChatStore.claim_summary).
    Column("last_summary_at", UTCDateTime),
    UniqueConstraint("platform", "chat_ref", "thread_ref", name="uq_chats_platform_ref"),
)

subscriptions = Table(
    "subscriptions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("chat_id", Integer, ForeignKey("chats.id", ondelete="CASCADE"), nullable=False, unique=True),
    Column("active", Boolean, nullable=False, default=True),
    Column("paused_reason", Text),
    Column("timezone", String(64), nullable=False, default="UTC"),
    Column("times", JSON),
    Column("every_hours", Integer),
    Column("max_stories", Integer, nullable=False, default=8),
    Column("topics", JSON),
    Column("filters", JSON),  # bot.pipeline.filters.ChatFilters.to_json(); NULL: no filters
    Column("last_digest_at", UTCDateTime),
    Column("next_due_at", UTCDateTime, index=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

sent_stories = Table(
    "sent_stories",
    metadata,
    Column("subscription_id", Integer, ForeignKey("subscriptions.id", ondelete="CASCADE"), primary_key=True),
    Column("story_id", Integer, ForeignKey("stories.id", ondelete="CASCADE"), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("sent_at", UTCDateTime, nullable=False),
    # What the item showed (bot.pipeline.followups.Coverage.to_json()): an update is news to the chat against it.
    Column("coverage", JSON),
    # The outbox part it went in: its message_ref, once sent, is what a follow-up replies to.
    Column("outbox_id", Integer, ForeignKey("outbox.id", ondelete="SET NULL")),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("chat_id", Integer, ForeignKey("chats.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("subscription_id", Integer, ForeignKey("subscriptions.id", ondelete="SET NULL")),
    # One digest run for one chat; parts of it share the key and are sent in part order.
    Column("digest_key", String(100), nullable=False),
    Column("part", Integer, nullable=False, default=0),
    Column("payload", JSON, nullable=False),
    Column("story_ids", JSON),
    Column("status", String(20), nullable=False, default="pending"),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("claimed_until", UTCDateTime),
    Column("last_error", Text),
    Column("message_ref", String(100)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime),
    UniqueConstraint("digest_key", "part", name="uq_outbox_digest_part"),
)
Index("ix_outbox_status_next", outbox.c.status, outbox.c.next_attempt_at)

# Owner alerts (bot/pipeline/alerts.py): events as they happen, and what each owner was sent.
alert_events = Table(
    "alert_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(40), nullable=False),
    Column("subject", String(500), nullable=False),
    Column("detail", Text, nullable=False, default=""),
    Column("created_at", UTCDateTime, nullable=False, index=True),
)

alert_owners = Table(
    "alert_owners",
    metadata,
    # 'telegram:123' as in NEWSDIGEST_ADMINS
    Column("owner", String(100), primary_key=True),
    Column("cursor", Integer, nullable=False, default=0),
    Column("last_sent_at", UTCDateTime),
    Column("last_summary_at", UTCDateTime),
    Column("muted_until", UTCDateTime),
)

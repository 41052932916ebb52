"""`newsdigest digest [--since 24h] [--json]`: print the digest `/summary` would send now."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta
from typing import Any, TextIO

from bot.chat.console import plain_digest
from bot.chat.digests import DigestBuilder
from bot.clock import utcnow
from bot.pipeline.digest import Digest
from bot.settings import DigestDefaults
from bot.storage.chat_store import ChatStore
from bot.storage.store import Store


def digest_json(digest: Digest) -> dict[str, Any]:
    """JSON-ready form of a digest."""
    return {"since": digest.since.isoformat(), "until": digest.until.isoformat(),
            "stories": [{"id": s.id, "version": s.version, "title": s.title, "summary": s.summary,
                         "score": round(s.score, 4), "outlet_count": s.outlet_count,
                         "links": [{"outlet": lk.outlet, "url": lk.url, "title": lk.title} for lk in s.links]}
                        for s in digest.stories]}


def current_digest(store: Store, defaults: DigestDefaults, since: timedelta, *,
                   now: datetime | None = None) -> Digest:
    """The digest of the last `since` with the default settings from feeds.yaml (what `/summary <since>` sends
    in a chat without a subscription)."""
    return DigestBuilder(ChatStore(store.engine), defaults).on_request(now or utcnow(), None, since)


def print_digest(store: Store, defaults: DigestDefaults, since: timedelta, *, as_json: bool,
                 out: TextIO | None = None) -> int:
    """Print the digest; exit status 0 (an empty digest is not an error)."""
    out = out or sys.stdout
    digest = current_digest(store, defaults, since)
    if as_json:
        json.dump(digest_json(digest), out, ensure_ascii=False, indent=2)
        out.write("\n")
    elif digest.stories:
        out.write(plain_digest(digest) + "\n")
    else:
        out.write(f"No stories in the last {since}.\n")
    return 0

"""`newsdigest digest [--since 24h] [--json]`: print the digest `/summary` would send now."""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from typing import Any, TextIO

from bot.chat.console import plain_digest
from bot.clock import utcnow
from bot.pipeline.digest import Digest, build_digest
from bot.storage.chat_store import ChatStore


def digest_json(digest: Digest) -> dict[str, Any]:
    """JSON-ready form of a digest."""
    return {"since": digest.since.isoformat(), "until": digest.until.isoformat(),
            "stories": [{"id": s.id, "version": s.version, "title": s.title, "summary": s.summary,
                         "score": round(s.score, 4), "outlet_count": s.outlet_count,
                         "links": [{"outlet": lk.outlet, "url": lk.url, "title": lk.title} for lk in s.links]}
                        for s in digest.stories]}


def current_digest(app: Any, since: timedelta) -> Digest:
    """The digest of the last `since` with the default settings from feeds.yaml."""
    d = app.feeds_file.digest
    now = utcnow()
    chats = ChatStore(app.store.engine)
    start = now - since
    return build_digest(chats.candidate_stories(start, now), now=now, since=start, max_stories=d.max_stories,
                        topics=d.topics, min_topic_score=d.min_topic_score)


def print_digest(app: Any, since: timedelta, *, as_json: bool, out: TextIO | None = None) -> int:
    """Print the digest; exit status 0 (an empty digest is not an error)."""
    out = out or sys.stdout
    digest = current_digest(app, since)
    if as_json:
        json.dump(digest_json(digest), out, ensure_ascii=False, indent=2)
        out.write("\n")
    elif digest.stories:
        out.write(plain_digest(digest) + "\n")
    else:
        out.write(f"No stories in the last {since}.\n")
    return 0

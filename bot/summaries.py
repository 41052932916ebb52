"""Summaries at the core's edge: the database-backed summary cache, story summaries and `/summary <link>`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from bot.net import PAGE_ACCEPT, Fetcher, FetchLimits
from bot.pipeline import article as article_stage
from bot.pipeline.digest import (
    SourcedSentence,
    repeats_headline,
    strip_headline,
    strip_headline_sentences,
    strip_leading_headline,
)
from bot.ports import LinkSummary, StoryStore, SummaryStore
from bot.storage.stories import StoryMember

if TYPE_CHECKING:  # both import numpy, and the story stage datasketch and scipy (~1 s): `newsdigest run` imports
    # this module before its first poll, for LinkSummarizer
    from summarizer import Summarizer, Summary

log = logging.getLogger(__name__)

# Digest summaries: a few sentences, short enough for a chat message with several stories.
STORY_SENTENCES = 3
STORY_MAX_CHARS = 600
# Texts given to the summarizer per story: the first outlets' versions are enough to pick from.
MAX_DOCS_PER_STORY = 6


class StoreSummaryCache:
    """The summarizer's cache protocol over the `summaries` table, so a story is summarized once."""

    def __init__(self, store: SummaryStore) -> None:
        self.store = store

    def get(self, key: str) -> Summary | None:
        from summarizer import Summary

        entry = self.store.summary_get(key)
        return Summary.from_dict(entry.payload) if entry and entry.payload else None

    def put(self, key: str, summary: Summary) -> None:
        self.store.summary_put(key, summary.model, summary.to_dict())


def without_headlines(text: str, titles: Sequence[str]) -> str:
    """`text` without the lines that repeat one of these headlines, and without a headline glued to the start
    of a line: the digest shows the headline already."""
    kept = []
    for line in text.splitlines():
        for t in titles:
            line = strip_leading_headline(line, t)
        if not any(repeats_headline(line, t) for t in titles):
            kept.append(line)
    return "\n".join(kept)


def core_members(members: Sequence[StoryMember]) -> list[StoryMember]:
    """The members that surely belong to the story (`story.is_core_member`), in the given order."""
    from bot.pipeline.story import is_core_member

    return [m for m in members if is_core_member(m.story_reason, m.story_score)]


def story_documents(members: Sequence[StoryMember]) -> tuple[list[str], str]:
    """The texts to summarize (one per outlet, core members only, in order) and the headline (the lead's title).

    `members` come earliest published first (StoryStore.story_members); the lead is the first core member, the
    article the digest shows first. A weak member may be about another event: it feeds neither the summary nor
    the headline. Lines that repeat a core member's headline are dropped: the digest shows the headline already.
    """
    sources, title = story_sources(members)
    return [text for _, text in sources], title


def story_sources(members: Sequence[StoryMember]) -> tuple[list[tuple[StoryMember, str]], str]:
    """`story_documents` with the member each text comes from, so a summary sentence maps to its article."""
    core = core_members(members)
    titles = [m.title for m in core if (m.title or "").strip()]
    docs: list[tuple[StoryMember, str]] = []
    seen_feeds = set()
    for m in core:
        text = without_headlines(m.text or "", titles)
        if m.feed_id in seen_feeds or not text.strip():
            continue
        seen_feeds.add(m.feed_id)
        docs.append((m, text))
        if len(docs) >= MAX_DOCS_PER_STORY:
            break
    title = core[0].title if core else ""
    return docs, title


def sourced_sentences(summary: Summary, sources: Sequence[StoryMember], title: str) -> tuple[SourcedSentence, ...]:
    """The summary's sentences, each with the member article it came from (`Summary.sources` indexes the
    documents); a generated sentence (-1) has no source. Sentences that only repeat the headline are dropped,
    as in the stored summary."""
    out = []
    for text, doc in zip(summary.sentences, summary.sources, strict=False):
        m = sources[doc] if 0 <= doc < len(sources) else None
        out.append(SourcedSentence(text=text, outlet=m.outlet if m else "", url=(m.url or m.canonical_url or "")
                                   if m else "", article_id=m.id if m else None))
    return strip_headline_sentences(out, title)


def story_summary_text(summary: Summary, sources: Sequence[tuple[StoryMember, str]], title: str) -> str:
    """The summary a story stores: without what repeats the headline, but never empty while the story has text
    (a summary that only repeats the headline is kept whole; no sentence at all gives the lead's text, cut)."""
    text = strip_headline(summary.text, title).strip()
    if text:
        return text
    if summary.text.strip():
        return summary.text.strip()
    for _, doc in sources:
        lead = " ".join(doc.split())
        if lead:
            if len(lead) <= STORY_MAX_CHARS:
                return lead
            return lead[:STORY_MAX_CHARS - 1].rsplit(" ", 1)[0] + "…"
    return ""


def summarize_stories(store: StoryStore, summarizer: Summarizer, story_ids: Sequence[int]) -> int:
    """Summarize these stories (cached by content, model and settings); returns how many were written.

    Each summary is written only while its story still has the members it was made from: a summary task that
    read the story before another article joined (scale-out: a concurrent `process` task) writes nothing, and
    the summary of the newer version, queued when the article joined, stands."""
    batch = []
    for sid in story_ids:
        members = store.story_members(sid)
        sources, title = story_sources(members)
        if sources:
            batch.append((sid, [m.id for m in members], sources, title))
    if not batch:
        return 0
    results = summarizer.summarize_batch([[text for _, text in d] for _, _, d, _ in batch],
                                         titles=[t for _, _, _, t in batch],
                                         max_sentences=STORY_SENTENCES, max_chars=STORY_MAX_CHARS)
    written = 0
    for (sid, member_ids, sources, title), summary in zip(batch, results, strict=True):
        text = story_summary_text(summary, sources, title)
        sentences = sourced_sentences(summary, [m for m, _ in sources], title)
        if store.set_story_summary(sid, title=title, summary=text, method=summary.model, sentences=sentences,
                                   members=member_ids):
            written += 1
        else:
            log.info("story %s changed while it was summarized; the summary of its new version stands", sid,
                     extra={"story_id": sid})
    return written


class LinkSummarizer:
    """`/summary <link>`: fetch the page (same limits and SSRF rules as feeds), extract, summarize."""

    def __init__(self, summarizer: Callable[[], Summarizer], limits: FetchLimits,
                 read_page: Callable[[bytes, str | None], Awaitable[tuple[str, str]]] | None = None) -> None:
        # Looked up per request: the service loads its models in the background while it starts.
        self.summarizer = summarizer
        self.limits = limits
        # The service passes its runner's: the page is then read in a parse worker, as feed pages are.
        self.read_page = read_page or self._read_in_thread

    @staticmethod
    async def _read_in_thread(body: bytes, url: str | None) -> tuple[str, str]:
        return await asyncio.to_thread(article_stage.read_page, body, url)

    async def __call__(self, url: str) -> LinkSummary:
        async with Fetcher(self.limits) as fetcher:
            page = await fetcher.get(url, accept=PAGE_ACCEPT)
        text, title = await self.read_page(page.body, page.final_url)
        title = title or text.split("\n", 1)[0][:200]
        # The reply shows the headline above the summary: the summary must not say it again.
        body = without_headlines(text, [title]) or text
        summarizer = await asyncio.to_thread(self.summarizer)
        summary = await asyncio.to_thread(summarizer.summarize, body, title=title or None,
                                          max_sentences=STORY_SENTENCES, max_chars=STORY_MAX_CHARS)
        return LinkSummary(url=page.final_url or url, title=title, summary=strip_headline(summary.text, title))

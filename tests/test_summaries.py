"""Summaries at the core's edge: `/summary <link>` over a real socket, and the database-backed cache."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest

from bot.errors import BlockedURLError, FetchError
from bot.net import FetchLimits
from bot.storage.store import Store
from bot.summaries import LinkSummarizer, StoreSummaryCache
from summarizer import Summarizer, Summary

SEED = (Path(__file__).parent / "data" / "seed_article.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def summarizer() -> Summarizer:
    return Summarizer()


def page(title: str, body: str) -> bytes:
    paras = "".join(f"<p>{html.escape(p)}</p>" for p in body.split("\n\n") if p.strip())
    return (f"<html><head><title>{html.escape(title)}</title></head><body><nav>Home | World</nav>"
            f"<article><h1>{html.escape(title)}</h1>{paras}</article></body></html>").encode()


async def test_link_summary_is_verbatim_and_clean(feed_server, summarizer: Summarizer) -> None:  # noqa: ANN001
    feed_server.files["/news/lavrov.html"] = page("Russia warns NATO", SEED)
    result = await LinkSummarizer(summarizer, FetchLimits(allow_private=True))(
        feed_server.url("/news/lavrov.html"))
    assert result.title == "Russia warns NATO" and result.url.endswith("/news/lavrov.html")
    assert result.summary and "Lavrov" in result.summary
    flat = " ".join(SEED.split())
    for sentence in re.split(r"(?<=[.!?])\s+(?=[A-Z])", result.summary):
        assert " ".join(sentence.split()) in flat, sentence
    assert "YOU MAY ALSO LIKE" not in result.summary and "Leave a Reply" not in result.summary


async def test_link_summary_obeys_ssrf_rules_and_reports_errors(feed_server, summarizer: Summarizer) -> None:  # noqa: ANN001
    with pytest.raises(BlockedURLError):
        await LinkSummarizer(summarizer, FetchLimits())(feed_server.url("/news/x.html"))
    with pytest.raises(FetchError, match="404"):
        await LinkSummarizer(summarizer, FetchLimits(allow_private=True))(feed_server.url("/nothing"))
    assert sum(feed_server.hits.values()) == 1


def test_store_summary_cache_roundtrip(sqlite_store: Store) -> None:
    cache = StoreSummaryCache(sqlite_store)
    s = Summary(text="A. B.", sentences=("A.", "B."), sources=(0, 1), method="extractive", model="m")
    assert cache.get("k") is None
    cache.put("k", s)
    assert cache.get("k") == s

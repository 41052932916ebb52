"""Telegram HTML rendering: escaping, limits and splitting, with property tests against Telegram-style parsing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.chat.render_telegram import MESSAGE_LIMIT, TelegramRenderer, cut, safe_url, units
from bot.pipeline.digest import Digest, DigestStory, OutletLink, SourcedSentence
from bot.ports import Button, OutgoingFile, Reply, Span, bold, link, para
from tests.fakes.telegram_api import parse_html, utf16_len

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
R = TelegramRenderer()

# Lone surrogates too: a feed's broken UTF-16 decodes to them, and UTF-8 (what the Bot API gets) cannot carry them.
SURROGATES = st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff", "\ud83d"])
# (Lists of characters joined: st.text merges its alphabet into code point ranges and would drop the surrogates.)
any_text = st.lists(st.characters(codec=None) | SURROGATES, max_size=6000).map("".join)
urls = st.one_of(st.just("https://example.com/a?b=1&c=<d>\"'"), st.text(max_size=300), any_text.map(lambda t: t[:300]),
                 st.builds(lambda s: "https://x.example/" + s, st.text(max_size=2500)))


def story(i: int, title: str, summary: str, links: list[tuple[str, str]], updated: bool = False) -> DigestStory:
    return DigestStory(id=i, version=1, title=title, summary=summary,
                       links=tuple(OutletLink(o, u) for o, u in links), outlet_count=len(links) + 2, score=0.5,
                       updated=updated)


def check(messages) -> list[str]:  # noqa: ANN001
    plains = []
    for m in messages:
        assert m.parse_mode == "html" and not m.link_preview
        m.text.encode("utf-8")  # no lone surrogate reaches the API
        for row in m.buttons:
            for b in row:
                b.label.encode("utf-8")
        plain, _ = parse_html(m.text)  # raises on invalid HTML
        assert 0 < utf16_len(plain) <= MESSAGE_LIMIT
        assert plain.strip()
        plains.append(plain)
    return plains


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(any_text, any_text, st.lists(st.tuples(any_text, urls), max_size=8), st.booleans()),
                min_size=1, max_size=12))
def test_digest_messages_are_valid_html_within_the_limit(stories) -> None:  # noqa: ANN001
    digest = Digest(NOW - timedelta(hours=10), NOW,
                    tuple(story(i, t, s, lk, u) for i, (t, s, lk, u) in enumerate(stories)))
    plains = check(R.render_digest(digest))
    # Every story is there, and splitting happened only between stories.
    lines = [line for p in plains for line in p.split("\n")]
    assert all(any(line.startswith(f"{i}. ") for line in lines) for i in range(1, len(stories) + 1))
    assert plains[0].startswith("News digest")
    assert all(p[: p.index(".")].isdigit() for p in plains[1:])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(any_text, st.lists(st.tuples(any_text, any_text, urls), max_size=5),
                          st.lists(st.tuples(any_text, urls), max_size=8)), min_size=1, max_size=8))
def test_digest_with_sourced_sentences_is_valid_html_within_the_limit(stories) -> None:  # noqa: ANN001
    items = tuple(DigestStory(id=i + 1, version=1, title=t, summary=" ".join(x for x, _, _ in sents) or "s",
                              links=tuple(OutletLink(o, u) for o, u in lk), outlet_count=len(lk), score=0.5,
                              sentences=tuple(SourcedSentence(x, o, u) for x, o, u in sents))
                  for i, (t, sents, lk) in enumerate(stories))
    plains = check(R.render_digest(Digest(NOW - timedelta(hours=10), NOW, items)))
    lines = [line for p in plains for line in p.split("\n")]
    assert all(any(line.startswith(f"{i}. ") for line in lines) for i in range(1, len(items) + 1))


def test_each_sentence_carries_a_link_to_its_outlet() -> None:
    s = DigestStory(5, 1, "Floods in Kerala", "Rivers burst their banks. Forty died.",
                    (OutletLink("Reuters", "https://reuters.example/a"), OutletLink("BBC", "https://bbc.example/b")),
                    2, 0.5, sentences=(SourcedSentence("Rivers burst <their> banks.", "BBC", "https://bbc.example/b"),
                                       SourcedSentence("Forty died.", "Reuters", "https://reuters.example/a"),
                                       SourcedSentence("Generated.", "", "")))
    (m,) = R.render_digest(Digest(NOW - timedelta(hours=3), NOW, (s,)))
    assert ('Rivers burst &lt;their&gt; banks. [<a href="https://bbc.example/b">BBC</a>] Forty died. '
            '[<a href="https://reuters.example/a">Reuters</a>] Generated.\n') in m.text
    assert m.text.endswith(" · /story_5")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.tuples(any_text, st.booleans(), st.booleans(), st.booleans(), st.one_of(st.none(), urls)),
                         max_size=5), max_size=30))
def test_reply_messages_are_valid_html_within_the_limit(blocks) -> None:  # noqa: ANN001
    reply = Reply(blocks=tuple(tuple(Span(t, b, i, c, u) for t, b, i, c, u in blk) for blk in blocks),
                  buttons=((Button("ok", "st:m:5"),),))
    out = R.render_reply(reply)
    check(out)
    assert out[-1].buttons == ((Button("ok", "st:m:5"),),)


def test_escaping_and_links() -> None:
    reply = Reply(blocks=(para(bold("<b>&amp;</b>"), " x<y & ", link("site", 'https://e.com/?a=1&b="2"')),))
    (m,) = R.render_reply(reply)
    plain, entities = parse_html(m.text)
    assert plain == "<b>&amp;</b> x<y & site"
    assert {"type": "text_link", "offset": 19, "length": 4, "url": 'https://e.com/?a=1&b="2"'} in entities
    assert entities[0]["type"] == "bold"


def test_bad_urls_become_plain_text() -> None:
    for bad in ("javascript:alert(1)", "ftp://x/y", "https://", "https://a b", "x" * 10):
        assert safe_url(bad) is None
    (m,) = R.render_reply(Reply(blocks=(para(link("click", "javascript:alert(1)")),)))
    assert "<a" not in m.text and "click" in m.text


def test_long_digest_is_split_between_stories_and_long_story_shortened() -> None:
    stories = tuple(story(i, f"Title {i}", "word " * 400, [("Reuters", f"https://r.example/{i}")])
                    for i in range(1, 9))
    msgs = R.render_digest(Digest(NOW - timedelta(hours=3), NOW, stories))
    plains = check(msgs)
    assert len(msgs) > 1
    assert plains[0].startswith("News digest")
    assert all(p.split("\n", 1)[0][:2].rstrip(".").isdigit() for p in plains[1:])
    huge = story(1, "T", "é" * 10_000 + "😀" * 3000, [("A", "https://a.example")])
    (m,) = R.render_digest(Digest(NOW, NOW, (huge,)))[-1:]
    plain = check([m])[0]
    assert plain.endswith("\nA and 2 more · /story_1") and "…" in plain


def test_emoji_count_as_two_units() -> None:
    assert units("😀") == 2 and units("é") == 1
    assert units(cut("😀" * 10, 5)) <= 5


def test_reply_with_file_and_digest() -> None:
    d = Digest(NOW - timedelta(hours=1), NOW, (story(1, "A", "B", []),))
    out = R.render_reply(Reply(blocks=(para("x"),), digest=d, file=OutgoingFile("f.opml", b"<opml/>", caption="c")))
    assert [m.file is not None for m in out] == [False, False, True]
    assert R.render_digest(Digest(NOW, NOW, ())) == []


def test_headline_and_first_link_are_the_same_article() -> None:
    s = story(1, "Floods kill 40 in Kerala", "Rivers burst their banks.",
              [("Reuters", "https://reuters.example/a"), ("AP", "https://ap.example/b")])
    (m,) = R.render_digest(Digest(NOW - timedelta(hours=1), NOW, (s,)))
    plain, entities = parse_html(m.text)
    links = [e for e in entities if e["type"] == "text_link"]
    first = links[0]
    assert plain[first["offset"]:first["offset"] + first["length"]] == "Floods kill 40 in Kerala"
    assert [e["url"] for e in links] == ["https://reuters.example/a", "https://reuters.example/a",
                                        "https://ap.example/b"]
    assert "Reuters · also reported by AP and 2 more" in plain
    # A lead that cannot be linked is not replaced by another article's link: the headline stays unlinked.
    s = story(2, "Floods kill 40 in Kerala", "", [("Odd", "ftp://odd.example/a"), ("AP", "https://ap.example/b")])
    (m,) = R.render_digest(Digest(NOW - timedelta(hours=1), NOW, (s,)))
    plain, entities = parse_html(m.text)
    assert [e["url"] for e in entities if e["type"] == "text_link"] == ["https://ap.example/b"]
    assert "Reported by AP" in plain


def test_lone_surrogates_in_a_title_or_summary_are_dropped() -> None:
    digest = Digest(NOW - timedelta(hours=10), NOW,
                    (story(1, "Talks \ud800resume", "Both sides\udfff met.", [("Out\udc00let", "https://a.example/x")]),))
    (plain,) = check(R.render_digest(digest))
    assert "Talks resume" in plain and "Both sides met." in plain and "Outlet" in plain

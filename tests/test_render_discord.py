"""Discord rendering: every message keeps Discord's limits, validates against Discord's schema, escapes feed text."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import discord
import pytest
from discord.http import handle_message_parameters
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.chat.discord_chat import send_kwargs
from bot.chat.render_discord import (
    CONTENT_MAX,
    EMBED_TOTAL_MAX,
    DiscordRenderer,
    StoryView,
    clip,
    escape,
    safe_url,
    story_embed,
    units,
)
from bot.pipeline.digest import Digest, DigestStory, OutletLink, SourcedSentence
from bot.ports import Button, OutgoingFile, Reply, bold, code, italic, link, para
from tests.fakes.discord_api import embeds_total, payload_problems

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
R = DiscordRenderer()

# Text that stresses escaping and counting: markdown, mentions, astral characters, newlines, brackets, and
# lone surrogates (a feed's broken UTF-16 or a bad \\ud800 escape in JSON decodes to them; UTF-8 cannot carry them).
SURROGATES = st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff", "\ud83d"])
# (Lists of characters joined: st.text merges its alphabet into code point ranges and would drop the surrogates.)
nasty = st.lists(st.sampled_from(list("ab *_~`|>#-[]()\\@<&!:/\n😀é")) | SURROGATES | st.characters(
    blacklist_categories=("Cs",)), max_size=600).map("".join)
urls = st.one_of(st.just("https://example.com/a_(b)?q=[1] 2"), st.just("javascript:alert(1)"), st.just(""),
                 st.builds(lambda p: "https://news.example/" + p, st.text(max_size=300)),
                 st.builds(lambda p: "https://news.example/" + p, nasty),
                 st.just("https://" + "x" * 2100 + ".com/"))


@st.composite
def stories(draw: st.DrawFn) -> DigestStory:
    """A digest story with hostile text of any size."""
    links = draw(st.lists(st.builds(OutletLink, outlet=nasty, url=urls), max_size=8))
    # Sentences with their sources (hostile outlet names and URLs, some long enough to crowd the embed).
    sentences = draw(st.lists(st.builds(SourcedSentence, text=nasty | st.text(min_size=1500, max_size=3000),
                                        outlet=nasty, url=urls), max_size=5))
    return DigestStory(id=draw(st.integers(1, 10**6)), version=1, title=draw(nasty | st.text(min_size=250)),
                       summary=draw(nasty | st.text(min_size=3000, max_size=6000)), links=tuple(links),
                       outlet_count=draw(st.integers(0, 400)), score=0.5, updated=draw(st.booleans()),
                       sentences=tuple(sentences))


def digest_of(items: list[DigestStory], title: str = "News digest") -> Digest:
    return Digest(since=NOW - timedelta(hours=12), until=NOW, stories=tuple(items), title=title)


def wire(message) -> dict:  # noqa: ANN001
    """The JSON body discord.py builds for this message (the same helper its send methods use)."""
    params = handle_message_parameters(**send_kwargs(message))
    if params.payload is not None:
        return params.payload
    return json.loads(next(p["value"] for p in params.multipart if p["name"] == "payload_json"))


def assert_within_limits(body: dict) -> None:
    # What goes to Discord must be valid UTF-8 JSON: a lone surrogate would raise UnicodeEncodeError on send.
    json.dumps(body, ensure_ascii=False).encode("utf-8")
    assert payload_problems("MessageCreateRequest", body) == []
    assert units(body.get("content") or "") <= CONTENT_MAX
    embeds = body.get("embeds") or []
    assert len(embeds) <= 10
    assert embeds_total(embeds) <= EMBED_TOTAL_MAX
    # Discord may count UTF-16 units; stay within the limits that way too.
    assert sum(units(e.get("title") or "") + units(e.get("description") or "") for e in embeds) <= EMBED_TOTAL_MAX
    for e in embeds:
        assert units(e.get("title") or "") <= 256 and units(e.get("description") or "") <= 4096
        for f in e.get("fields") or []:
            assert 0 < units(f["name"]) <= 256 and 0 < units(f["value"]) <= 1024
    assert body["allowed_mentions"] == {"parse": []}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(stories(), max_size=14), nasty)
def test_every_digest_message_keeps_the_limits_and_the_schema(items: list[DigestStory], title: str) -> None:
    messages = R.render_digest(digest_of(items, title or "News digest"))
    assert (messages == []) == (items == [])
    embeds = []
    for m in messages:
        body = wire(m)
        assert_within_limits(body)
        embeds.extend(body.get("embeds") or [])
    # One embed per story, in order, never split across messages.
    assert len(embeds) == len(items)
    for e, s in zip(embeds, items, strict=True):
        assert e["title"] == (clip(s.title, 256) or "(untitled)")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(st.sampled_from([bold, italic, code]).flatmap(lambda f: st.builds(f, nasty)) | st.builds(
    link, nasty, urls), min_size=1, max_size=4).map(tuple), max_size=30),
    st.lists(st.lists(st.builds(Button, nasty.map(lambda t: t[:120]), st.text(min_size=1, max_size=150)),
                      max_size=7).map(tuple),
             max_size=7).map(tuple))
def test_every_reply_message_keeps_the_limits(blocks: list, buttons: tuple) -> None:  # noqa: ANN001
    messages = R.render_reply(Reply(blocks=tuple(blocks), buttons=buttons))
    assert messages
    for m in messages:
        assert_within_limits(wire(m))


def test_a_long_digest_is_split_between_stories() -> None:
    long = [DigestStory(i, 1, f"Story {i}", "word " * 700, (OutletLink("BBC", f"https://bbc.example/{i}"),), 3, 0.5)
            for i in range(12)]
    messages = R.render_digest(digest_of(long))
    assert len(messages) > 1
    assert messages[0].text.startswith("**News digest** · 12 stories")
    assert all(not m.text for m in messages[1:])
    titles = [e["title"] for m in messages for e in m.extra["embeds"]]
    assert titles == [f"Story {i}" for i in range(12)]
    for m in messages:
        assert_within_limits(wire(m))


def test_story_embed_shows_headline_link_summary_and_other_outlets() -> None:
    story = DigestStory(7, 2, "Ceasefire *talks* resume", "Delegations met in Doha.",
                        (OutletLink("Reuters", "https://reuters.example/a"), OutletLink("AP [wire]", "https://ap.example/b(1)"),
                         OutletLink("Bad", "ftp://x.example/")), outlet_count=5, score=0.9, updated=True)
    (message,) = R.render_digest(digest_of([story]))
    (embed,) = message.extra["embeds"]
    assert embed["title"] == "Ceasefire \\*talks\\* resume"
    assert embed["url"] == "https://reuters.example/a"
    assert embed["description"] == "Delegations met in Doha."
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields["Source"] == "[Reuters](https://reuters.example/a)"
    # Brackets in the label and parentheses in the URL cannot end the masked link early; 5 outlets, 2 linked.
    assert fields["Also reported by"] == "[AP (wire)](https://ap.example/b%281%29) · and 3 more"
    assert embed["footer"]["text"] == "5 outlets · updated story · /story 7"


def test_mentions_and_markdown_from_feeds_are_neutralized() -> None:
    hostile = "@everyone @here <@123456789012345678> <@&123456789012345678> **bold** [x](https://evil.example)"
    story = DigestStory(1, 1, hostile, hostile, (OutletLink(hostile, "https://ok.example/"),), 1, 0.5)
    (message,) = R.render_digest(digest_of([story], title="@everyone news"))
    body = wire(message)
    text = str(body)
    for ping in ("@everyone", "@here", "<@123456789012345678>", "<@&123456789012345678>"):
        assert ping not in text
    assert "**bold**" not in body["embeds"][0]["description"]
    # The masked link is escaped: no "[x](" without a backslash before it.
    assert re.search(r"(?<!\\)\[x\]\(", text) is None
    assert body["allowed_mentions"] == {"parse": []}


def test_clip_never_leaves_a_dangling_escape() -> None:
    text = "a" * 10 + "*" * 50
    out = clip(text, 30)
    assert units(out) <= 30 and out.endswith("…")
    assert not out[:-1].endswith("\\") or out[:-1].endswith("\\\\") or out[:-1].endswith("\\*")
    assert escape("a_b") == "a\\_b"
    assert escape(" - item", line_start=False) == " - item"
    assert escape("- item") == "\\- item"


@pytest.mark.parametrize(("url", "expected"), [
    ("https://example.com/a b(c)", "https://example.com/a%20b%28c%29"),
    ("HTTPS://user:pw@Example.com/x", "https://Example.com/x"),
    ("https://пример.рф/путь", "https://xn--e1afmkfd.xn--p1ai/%D0%BF%D1%83%D1%82%D1%8C"),
    ("javascript:alert(1)", None),
    ("https://[::1]/", None),
    ("https://" + "a" * 2100 + ".com", None),
])
def test_safe_url(url: str, expected: str | None) -> None:
    assert safe_url(url) == expected


def test_reply_renders_spans_buttons_and_files() -> None:
    reply = Reply(blocks=(para(bold("Digest settings")), para("Topics: ", code("world`x"), " ", italic("_all_")),
                          para(link("BBC [UK]", "https://bbc.example/(x)"))),
                  buttons=((Button("✓ 08:00", "st:t:08:00"),),), file=OutgoingFile("f.opml", b"<opml/>"))
    (message,) = R.render_reply(reply)
    assert message.text == ("**Digest settings**\n\nTopics: `worldˋx` *\\_all\\_*\n\n"
                            "[BBC (UK)](https://bbc.example/%28x%29)")
    body = wire(message)
    assert body["components"][0]["components"][0]["custom_id"] == "st:t:08:00"
    assert message.file is not None and message.file.filename == "f.opml"
    assert_within_limits(body)


def test_embed_round_trips_through_discord_py() -> None:
    story = DigestStory(1, 1, "T", "S", (OutletLink("A", "https://a.example/"),), 1, 0.5)
    (message,) = R.render_digest(digest_of([story]))
    embed = discord.Embed.from_dict(message.extra["embeds"][0])
    assert len(embed) == embeds_total([message.extra["embeds"][0]])


def test_a_very_long_source_url_still_fits_its_field() -> None:
    long_url = "https://news.example/" + "%C2%80" * 300
    story = StoryView(headline="h", links=(("Outlet", long_url),), outlet_count=1)
    embed = story_embed(story)
    assert all(len(f["value"]) <= 1024 for f in embed["fields"])
    assert embed["fields"][0]["value"] == "Outlet" and embed["url"].startswith("https://news.example/")


def test_embed_url_is_the_headlines_own_article() -> None:
    # The lead (links[0]) cannot be linked: the embed must not link the headline to another outlet's article.
    story = DigestStory(3, 1, "Floods kill 40 in Kerala", "Rivers burst their banks.",
                        (OutletLink("Odd", "ftp://odd.example/a"), OutletLink("AP", "https://ap.example/b")),
                        outlet_count=2, score=0.5)
    (message,) = R.render_digest(digest_of([story]))
    (embed,) = message.extra["embeds"]
    assert "url" not in embed
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert "Source" not in fields and fields["Also reported by"] == "[AP](https://ap.example/b) · and 1 more"


def test_lone_surrogates_in_a_title_or_summary_are_dropped() -> None:
    story = DigestStory(id=1, version=1, title="Talks \ud800resume", summary="Both sides\udfff met.",
                        links=(OutletLink("Out\udc00let", "https://news.example/a"),
                               OutletLink("Other", "https://news.example/b\ud800")), outlet_count=2,
                        score=0.5)
    for m in R.render_digest(digest_of([story], "News \ud83d digest")):
        body = wire(m)
        assert_within_limits(body)
        (e,) = body["embeds"]
        assert e["title"] == "Talks resume" and e["description"] == "Both sides met."
        assert e["fields"][0]["value"] == "[Outlet](https://news.example/a)"
        assert e["fields"][1]["value"] == "1 more outlet", "a broken URL is not linked"
    (m,) = R.render_reply(Reply(blocks=(para(bold("a\ud800b"), code("c\udfffd"), link("e\udc00f", "https://x.example/")),),
                                buttons=((Button("\ud800ok", "st:m:5"),),)))
    assert_within_limits(wire(m))
    assert "ab" in m.text and "cd" in m.text and "[ef]" in m.text and m.buttons[0][0].label == "ok"


def test_each_sentence_carries_a_link_to_its_outlet() -> None:
    story = DigestStory(9, 1, "Floods in Kerala", "Rivers burst their banks. Forty died.",
                        (OutletLink("Reuters", "https://reuters.example/a"), OutletLink("BBC", "https://bbc.example/b")),
                        2, 0.5, sentences=(SourcedSentence("Rivers *burst* their banks.", "BBC [World]",
                                                           "https://bbc.example/b"),
                                           SourcedSentence("Forty died.", "Reuters", "https://reuters.example/a"),
                                           SourcedSentence("Generated text.", "", "")))
    (message,) = R.render_digest(digest_of([story]))
    (embed,) = message.extra["embeds"]
    assert embed["description"] == ("Rivers \\*burst\\* their banks. \\[[BBC (World)](https://bbc.example/b)\\] "
                                    "Forty died. \\[[Reuters](https://reuters.example/a)\\] Generated text.")
    assert embed["footer"]["text"] == "2 outlets · /story 9"
    # No room for even the first sentence with its mark: the plain summary, cut.
    long = DigestStory(9, 1, "T", "x " * 5000, (), 1, 0.5, sentences=(SourcedSentence("x " * 5000, "A", "https://a.example/"),))
    (message,) = R.render_digest(digest_of([long]))
    assert message.extra["embeds"][0]["description"].endswith("…")

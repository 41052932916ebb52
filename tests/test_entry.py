"""Entry stage: real feeds from tests/data/feeds/ into entries, keys, canonical URLs and safety limits."""

from __future__ import annotations

import gzip
import io
from datetime import UTC, datetime
from pathlib import Path

import feedparser
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.errors import ParseError
from bot.pipeline.entry import canonical_url, entry_key, parse_feed

FEEDS = Path(__file__).parent / "data" / "feeds"


def load(name: str, url: str = "https://example.org/feed.xml", **kwargs: object):
    return parse_feed((FEEDS / name).read_bytes(), url=url, **kwargs)


def rss(items: str, *, head: str = "") -> bytes:
    return (f'<?xml version="1.0" encoding="utf-8"?>{head}<rss version="2.0"><channel><title>T</title>'
            f"<link>https://example.org/</link>{items}</channel></rss>").encode()


@pytest.mark.parametrize(("name", "version", "count"), [
    ("bbc_2020-04-27T2107Z.xml", "rss20", 81),
    ("nytimes_2020-04-27T2107Z.xml", "rss20", 25),
    ("smh_2020-04-27T2107Z.xml", "rss20", 50),
    ("fox_2020-04-27T2107Z.xml", "rss20", 10),
    ("wsj_2020-04-27T2107Z.xml", "rss20", 6),
    ("bbc_world_2025-06-23.xml", "rss20", 28),
    ("reuters_topnews_2012-10-25.xml", "rss20", 10),
    ("aljazeera_youtube_2020-04-27T2107Z.atom", "atom10", 15),
    ("dw_chinese_2015_rdf.xml", "rss10", 85),
    ("rss_0.91_spec.xml", "rss091u", 2),
    ("cp1251_russian.xml", "rss20", 10),
])
def test_real_feeds_parse_with_all_entries(name: str, version: str, count: int) -> None:
    feed = load(name)
    assert feed.version == version
    assert len(feed.entries) == count
    assert len({e.key for e in feed.entries}) == count
    for entry in feed.entries:
        assert entry.title
        assert entry.url is None or entry.url.startswith(("http://", "https://"))
        assert len(entry.key) <= 30 and entry.key.split(":")[0] in {"guid", "url", "hash"}


def test_published_is_utc_aware() -> None:
    entry = load("bbc_2020-04-27T2107Z.xml").entries[0]
    assert entry.published == datetime(2020, 4, 27, 20, 11, 52, tzinfo=UTC)
    gma = load("nzherald_2020-04-27T2107Z.xml").entries[0]
    assert gma.published is not None and gma.published.utcoffset().total_seconds() == 0


def test_snapshots_of_same_outlet_share_stable_keys() -> None:
    first = {e.key for e in load("bbc_2020-04-27T2107Z.xml").entries}
    second = {e.key for e in load("bbc_2020-04-28T0034Z.xml").entries}
    assert len(first & second) == 49
    assert len(second - first) == 19
    assert first == {e.key for e in load("bbc_2020-04-27T2107Z.xml").entries}


def test_tracking_parameters_leave_canonical_url_but_not_url() -> None:
    entry = load("smh_2020-04-27T2107Z.xml", url="https://www.smh.com.au/rss/world.xml").entries[0]
    assert "utm_source" in entry.url
    assert entry.canonical_url == ("https://www.smh.com.au/world/europe/"
                                   "dutch-students-complete-atlantic-crossing-forced-by-virus-20200428-p54nqw.html")


def test_feedburner_entries_use_the_original_link() -> None:
    entry = load("reuters_topnews_2012-10-25.xml").entries[0]
    assert entry.url.startswith("http://www.reuters.com/article/2012/10/25/")
    assert entry.canonical_url == "http://www.reuters.com/article/2012/10/25/us-usa-campaign-idUSBRE89M11220121025"


@pytest.mark.parametrize(("name", "needle"), [
    ("uol_wrong_encoding.rss", "simulações de 2º turno"),
    ("no_encoding_iso-8859-1.xml", "Perturbateurs endocriniens : quels effets sur le cerveau ?"),
    ("cp1251_russian.xml", "В Бузулуке главные стройплощадки"),
    ("dw_chinese_2015_rdf.xml", "格林沃尔德获德国新闻记者奖"),
])
def test_wrong_and_legacy_encodings_decode(name: str, needle: str) -> None:
    feed = load(name)
    assert needle in feed.entries[0].title


def test_bozo_feed_still_yields_entries() -> None:
    feed = load("nzherald_2020-04-28T0034Z_bozo.xml")
    assert feed.bozo and "SAXParseException" in feed.bozo_reason
    assert len(feed.entries) == 20


def test_valid_feed_without_items_is_empty_not_an_error() -> None:
    feed = load("straitstimes_2020-04-27T2107Z_empty.xml")
    assert feed.entries == () and not feed.bozo


@pytest.mark.parametrize(("name", "message"), [
    ("latimes_2021-09-20T0028Z_403.html",
     "HTML page, not a feed ('ERROR: The request could not be satisfied')"),
    ("straitstimes_2021-09-20T0028Z_xhtml403.xml", "HTML page, not a feed ('403 - Forbidden')"),
    ("notafeed.html", "HTML page, not a feed"),
    ("reuters_mostread_syntax_error.xml", "malformed feed XML"),
])
def test_pages_and_broken_xml_raise_clear_parse_errors(name: str, message: str) -> None:
    with pytest.raises(ParseError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load(name)


@pytest.mark.parametrize("body", [b"", b"   \n", b"just some text", b"{\"json\": true}"])
def test_empty_and_non_feed_bodies_raise(body: bytes) -> None:
    with pytest.raises(ParseError):
        parse_feed(body, url="https://example.org/feed")


def test_html_content_type_with_a_real_feed_still_parses() -> None:
    body = (FEEDS / "wsj_2020-04-27T2107Z.xml").read_bytes()
    feed = parse_feed(body, url="https://example.org/feed", content_type="text/html; charset=utf-8")
    assert len(feed.entries) == 6


def test_external_entity_is_never_resolved(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    body = rss("<item><title>a &xxe; b</title><link>https://example.org/1</link></item>",
               head=f'\n<!DOCTYPE rss [\n<!ENTITY xxe SYSTEM "file://{secret}">\n]>\n')
    with pytest.raises(ParseError, match="entities"):
        parse_feed(body, url="https://example.org/feed")


def test_feedparser_alone_keeps_external_entities_unresolved(tmp_path: Path) -> None:
    """Defence in depth: even without our guard, feedparser's SAX parser has external entities off."""
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    body = rss("<item><title>a &xxe; b</title><link>https://example.org/1</link></item>",
               head=f'\n<!DOCTYPE rss [\n<!ENTITY xxe SYSTEM "file://{secret}">\n]>\n')
    parsed = feedparser.parse(io.BytesIO(body))
    assert "TOPSECRET" not in repr(parsed)


def test_entity_expansion_bombs_are_refused() -> None:
    laughs = "\n".join([f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10)])
    billion = rss("<item><title>&l9;</title></item>",
                  head=f'\n<!DOCTYPE rss [\n<!ENTITY l0 "lol">\n{laughs}\n]>\n')
    # One long entity referenced many times: feedparser's loose fallback would expand this to ~1 GB.
    quadratic = rss(f"<item><title>x</title><description>{'&a;' * 20000}</description></item>",
                    head=f'\n<!DOCTYPE rss [\n<!ENTITY a "{"a" * 50000}">\n]>\n')
    utf16 = quadratic.decode().replace('encoding="utf-8"', 'encoding="utf-16"').encode("utf-16")
    for body in (billion, quadratic, utf16):
        with pytest.raises(ParseError, match="entities"):
            parse_feed(body, url="https://example.org/feed")


def test_size_cap() -> None:
    body = (FEEDS / "bbc_2020-04-27T2107Z.xml").read_bytes()
    with pytest.raises(ParseError, match="larger than 1000 bytes"):
        parse_feed(body, url="https://example.org/feed", max_bytes=1000)


def test_gzip_body_without_content_encoding_is_inflated() -> None:
    body = (FEEDS / "cp1251_russian.xml").read_bytes()
    assert parse_feed(gzip.compress(body), url="https://example.org/feed") == \
        parse_feed(body, url="https://example.org/feed")


def test_gzip_bomb_and_corrupt_gzip_are_refused() -> None:
    bomb = gzip.compress(b"<rss>" + b" " * 3_000_000)
    with pytest.raises(ParseError, match="once decompressed"):
        parse_feed(bomb, url="https://example.org/feed", max_bytes=1_000_000)
    with pytest.raises(ParseError, match="corrupt gzip"):
        parse_feed(b"\x1f\x8bnot gzip at all", url="https://example.org/feed")


def test_max_entries_keeps_the_first_ones() -> None:
    full = load("bbc_2020-04-27T2107Z.xml")
    capped = load("bbc_2020-04-27T2107Z.xml", max_entries=5)
    assert capped.entries == full.entries[:5]


DRUPAL_ITEM = ("<item><title>CrisisWatch</title><link>https://www.crisisgroup.org/crisiswatch/feb-2026</link>"
               "<pubDate>Wednesday, February 25, 2026 - 21:07</pubDate></item>")


def test_date_fallback_for_non_standard_dates() -> None:
    assert parse_feed(rss(DRUPAL_ITEM), url="https://www.crisisgroup.org/rss").entries[0].published is None
    fallback = parse_feed(rss(DRUPAL_ITEM), url="https://www.crisisgroup.org/rss", date_fallback=True)
    assert fallback.entries[0].published == datetime(2026, 2, 25, 21, 7, tzinfo=UTC)


def test_date_fallback_refuses_relative_and_partial_dates() -> None:
    items = "".join(f"<item><title>{i}</title><link>https://example.org/{i}</link><pubDate>{d}</pubDate></item>"
                    for i, d in enumerate(["2 hours ago", "March 2026", "soon"]))
    feed = parse_feed(rss(items), url="https://example.org/feed", date_fallback=True)
    assert [e.published for e in feed.entries] == [None, None, None]


def test_duplicate_items_in_one_document_are_kept_once() -> None:
    item = "<item><guid>https://example.org/a</guid><title>A</title><link>https://example.org/a</link></item>"
    same_url = "<item><guid>other-id</guid><title>A</title><link>https://example.org/a?utm_source=x</link></item>"
    feed = parse_feed(rss(item + item + same_url), url="https://example.org/feed")
    assert len(feed.entries) == 1


def test_links_are_resolved_and_unsafe_schemes_dropped() -> None:
    items = ("<item><title>rel</title><link>/news/1</link></item>"
             "<item><title>js</title><link>javascript:alert(1)</link></item>")
    feed = parse_feed(rss(items), url="https://example.org/feeds/all.xml")
    assert feed.entries[0].url == "https://example.org/news/1"
    assert feed.entries[1].url is None and feed.entries[1].key.startswith("hash:")


def test_titles_are_plain_text() -> None:
    item = "<item><title>&lt;b&gt;Bold&lt;/b&gt; &amp;amp; more</title><link>https://example.org/1</link></item>"
    assert parse_feed(rss(item), url="https://example.org/f").entries[0].title == "Bold & more"


def test_entry_key_prefers_guid_then_url_then_hash() -> None:
    common = {"title": "T", "content": "C", "feed_url": "https://a.example/feed"}
    by_guid = entry_key(guid="https://a.example/x", canonical="https://a.example/y", **common)
    assert by_guid == entry_key(guid=" https://a.example/x ", canonical=None, **common)
    assert by_guid == entry_key(guid="https://a.example/x", canonical=None, title="", content="",
                                feed_url="https://b.example/rss")
    assert by_guid.startswith("guid:")
    assert by_guid != entry_key(guid="https://a.example/x#update-2", canonical=None, **common)
    assert entry_key(guid=None, canonical="https://a.example/y", **common).startswith("url:")
    hashed = entry_key(guid=None, canonical=None, **common)
    assert hashed.startswith("hash:") and hashed == entry_key(guid=" ", canonical=None, **common)
    assert hashed != entry_key(guid=None, canonical=None, title="T", content="other",
                               feed_url=common["feed_url"])


def test_bare_guids_are_scoped_to_the_feed_host() -> None:
    a = entry_key(guid="12345", canonical=None, title="", content="", feed_url="https://a.example/rss")
    a2 = entry_key(guid="12345", canonical=None, title="", content="", feed_url="https://a.example/world/rss")
    b = entry_key(guid="12345", canonical=None, title="", content="", feed_url="https://b.example/rss")
    assert a == a2 and a != b
    urn = "urn:uuid:1225c695-cfb8-4ebb-aaaa-80da344efa6a"
    assert (entry_key(guid=urn, canonical=None, title="", content="", feed_url="https://a.example/")
            == entry_key(guid=urn, canonical=None, title="", content="", feed_url="https://b.example/"))


@pytest.mark.parametrize("param", [
    "utm_source=rss", "utm_medium=feed", "utm_campaign=x", "utm_content=y", "utm_term=z", "fbclid=abc",
    "gclid=abc", "mc_cid=1", "mc_eid=2", "ocid=rss", "cmpid=rss", "ns_mchannel=rss", "ns_campaign=1490",
    "ito=1490", "at_medium=RSS", "at_campaign=KARANGA", "smid=tw-share", "CMP=share_btn_tw",
])
def test_canonical_url_drops_tracking_parameters(param: str) -> None:
    assert canonical_url(f"https://News.Example.com:443/a/story-1?id=7&{param}#comments") == \
        "https://news.example.com/a/story-1?id=7"


@pytest.mark.parametrize(("url", "expected"), [
    ("http://example.com", "http://example.com/"),
    ("https://example.com/a?b=2&a=1", "https://example.com/a?a=1&b=2"),
    ("ftp://example.com/a", None),
    ("javascript:alert(1)", None),
    ("", None),
    (None, None),
    ("https://", None),
])
def test_canonical_url_normalizes(url: str | None, expected: str | None) -> None:
    assert canonical_url(url) == expected


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=80))
def test_canonical_url_is_idempotent(tail: str) -> None:
    first = canonical_url("https://example.org/" + tail)
    assert first is None or canonical_url(first) == first


MUTATION_SOURCES = [(FEEDS / n).read_bytes()[:6000] for n in (
    "bbc_2020-04-27T2107Z.xml", "aljazeera_youtube_2020-04-27T2107Z.atom", "dw_chinese_2015_rdf.xml")]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(MUTATION_SOURCES), st.integers(0, 5999), st.integers(0, 5999), st.binary(max_size=40))
def test_mangled_feeds_parse_or_raise_parse_error(source: bytes, cut: int, at: int, noise: bytes) -> None:
    body = source[:cut] if cut > 200 else source
    body = body[:at] + noise + body[at:]
    try:
        feed = parse_feed(body, url="https://example.org/feed")
    except ParseError:
        return
    assert all(e.key for e in feed.entries)

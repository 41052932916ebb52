"""Article stage: seed-article cleanup, page extraction, feed text, teaser detection, eval."""

from __future__ import annotations

import html
import json
from pathlib import Path

import pytest

from bot.errors import ExtractError
from bot.eval import extract as eval_extract
from bot.models import Entry
from bot.pipeline.article import (
    extract_article,
    html_to_text,
    needs_page,
    strip_boilerplate,
    text_from_entry,
    word_count,
)
from bot.pipeline.entry import parse_feed

DATA = Path(__file__).parent / "data"
SEED = (DATA / "seed_article.txt").read_text(encoding="utf-8")
PROMO = "YOU MAY ALSO LIKE TO WATCH THIS TRENDING STORY ON YOUTUBE"
COMMENT_FORM = ("Leave a Reply", "Your email address will not be published", "Required fields are marked")


def story_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines()
            if line.strip() and PROMO not in line and not line.startswith(COMMENT_FORM)]


def seed_as_page() -> str:
    """The seed text laid out the way a WordPress page carries it: article, promo list item, comment form."""
    body = []
    for line in SEED.splitlines():
        text = html.escape(line.strip())
        if not text or line.startswith(COMMENT_FORM):
            continue
        body.append(f"<ul><li>{text}</li></ul>" if PROMO in line else f"<p>{text}</p>")
    return (
        "<html><head><title>Russia warns NATO</title></head><body>"
        "<header><nav><a href='/'>Home</a> <a href='/world'>World</a></nav></header>"
        f"<article class='post'><h1>Breaking: Russia Warns NATO</h1>{''.join(body)}</article>"
        "<div id='respond' class='comment-respond'><h3 id='reply-title'>Leave a Reply</h3>"
        "<form id='commentform'><p class='comment-notes'>Your email address will not be published. "
        "Required fields are marked *</p><textarea name='comment'></textarea>"
        "<input type='submit' value='Post Comment'></form></div>"
        "<footer><p>Copyright 2025 Example News. All rights reserved.</p></footer></body></html>"
    )


def test_seed_plain_text_loses_promo_and_comment_form_only() -> None:
    cleaned = strip_boilerplate(SEED)
    assert PROMO not in cleaned
    for phrase in COMMENT_FORM:
        assert phrase not in cleaned
    assert [line.strip() for line in cleaned.splitlines() if line.strip()] == story_lines(SEED)


def test_seed_page_extraction_keeps_the_story_without_boilerplate() -> None:
    text = extract_article(seed_as_page(), "https://example.com/2025/03/russia-warns-nato")
    assert PROMO not in text and "Waverly Hills" not in text
    for phrase in (*COMMENT_FORM, "Post Comment", "All rights reserved"):
        assert phrase not in text
    assert "Russia will not tolerate any NATO military presence in Ukraine" in text
    assert "The world is watching closely" in text
    assert word_count(text) >= 0.9 * word_count("\n".join(story_lines(SEED)))


def test_extract_accepts_bytes() -> None:
    assert "Lavrov" in extract_article(seed_as_page().encode("utf-8"), None)


@pytest.mark.parametrize("line", [
    "You may also like...",
    "  • YOU MAY ALSO LIKE TO WATCH THIS TRENDING STORY ON YOUTUBE.  Some other story title",
    "Related: The 15 weirdest galaxies in our universe",
    "READ MORE: The facts behind claims in the debate",
    "Also read: Ten things to know",
    "DON'T MISS",
    "Most read in world news",
    "Advertisement",
    "Story continues below advertisement",
    "Share this article",
    "Facebook Twitter Email",
    "Follow us on Twitter @ExampleNews, on Instagram at examplenews",
    "Subscribe to the Morning Review newsletter",
    "Get the day's top headlines delivered to your inbox every morning.",
    "Sign up for our newsletter to get the best stories in your inbox.",
    "Leave a Reply",
    "Leave a comment",
    "Your email address will not be published. Required fields are marked *",
    "Save my name, email, and website in this browser for the next time I comment.",
    "12 comments",
    "Filed under: Politics |",
    "Copyright 2025 Example Media. All rights reserved.",
    "The post Russia warns NATO appeared first on Example News.",
])
def test_boilerplate_lines_are_dropped(line: str) -> None:
    text = f"The talks ended on Friday.\n{line}\nBoth sides will meet again in May."
    assert strip_boilerplate(text) == "The talks ended on Friday.\nBoth sides will meet again in May."


@pytest.mark.parametrize("line", [
    "Share prices fell 3% on Monday after the announcement.",
    "More than 200 people were killed in the attack, officials said.",
    "Comments by the minister drew sharp criticism from the opposition.",
    "Advertisement revenue at the broadcaster rose by a fifth.",
    "Related talks in Geneva ended without agreement.",
    "You may recall that the treaty was signed in 1997.",
    "Follow-up negotiations are planned for next week in Vienna.",
    "Subscribers to the service will pay more from January, the company said.",
    "The ministry said it would share intelligence with its allies on Twitter threats.",
    "Trending downward for a third month, inflation eased to 2.1%.",
])
def test_ordinary_sentences_are_kept(line: str) -> None:
    text = f"The talks ended on Friday.\n{line}\nBoth sides will meet again in May."
    assert strip_boilerplate(text) == text


def test_click_to_tweet_suffix_is_cut_not_the_quote() -> None:
    assert strip_boilerplate("Every business exists in the space-time continuum.Click To Tweet") == \
        "Every business exists in the space-time continuum."


def test_html_to_text_keeps_blocks_and_drops_scripts() -> None:
    fragment = ("<p>First <a href='x'>link</a>.</p><script>alert(1)</script><ul><li>one</li><li>two</li></ul>"
                "Tail<br>after &amp; more<figure><img src='a.jpg'><figcaption>Photo: AP</figcaption>"
                "</figure>")
    assert html_to_text(fragment).split("\n") == [
        "First link.", "", "one", "", "two", "", "Tail", "after & more"]
    assert html_to_text("<!-- only a comment -->") == ""
    assert html_to_text("plain text\x00 with a NUL") == "plain text with a NUL"
    assert html_to_text("<html><head><title>T</title></head><body><p>body</p></body></html>") == "body"


def test_text_from_real_feed_entry_is_plain() -> None:
    feed = parse_feed((DATA / "feeds" / "reuters_topnews_2012-10-25.xml").read_bytes(),
                      url="http://feeds.reuters.com/reuters/topNews")
    text = text_from_entry(feed.entries[0])
    assert text.startswith("DAVENPORT, Iowa (Reuters) - President Barack Obama predicted passage")
    assert "<" not in text and "feedflare" not in text


def entry(content: str = "", summary: str = "", url: str | None = "https://example.com/a") -> Entry:
    return Entry(key="url:x", url=url, canonical_url=url, title="T", summary=summary, content=content)


def test_teasers_need_the_page() -> None:
    feed = parse_feed((DATA / "feeds" / "bbc_2020-04-27T2107Z.xml").read_bytes(), url="https://feeds.bbci.co.uk/")
    assert all(needs_page(e) for e in feed.entries)
    long_text = " ".join(["word"] * 400)
    assert needs_page(entry(summary=long_text + " [&#8230;]"))
    assert needs_page(entry(content=f"<p>{long_text}</p><p><a href='/a'>Continue reading</a></p>"))
    assert needs_page(entry(summary=""))


def test_full_text_in_feed_needs_no_page() -> None:
    paragraphs = "".join(f"<p>{html.escape(line)}</p>" for line in story_lines(SEED))
    full = entry(content=paragraphs, summary="Short teaser")
    assert not needs_page(full)
    assert "Lavrov" in text_from_entry(full)
    assert not needs_page(entry(summary="short", url=None))


def test_cjk_text_is_counted_by_characters() -> None:
    assert word_count("发表斯诺登爆料的美国记者") == 12
    assert needs_page(entry(summary="发表斯诺登爆料的美国记者格林沃尔德"))


def test_extract_errors_are_clear() -> None:
    with pytest.raises(ExtractError, match="empty page"):
        extract_article(b"  ", "https://example.com/a")
    with pytest.raises(ExtractError, match="no article text"):
        extract_article((DATA / "feeds" / "notafeed.html").read_bytes(), "https://x.example/")
    with pytest.raises(ExtractError, match="larger than 100 bytes"):
        extract_article(seed_as_page(), "https://example.com/a", max_bytes=100)


def test_token_scores() -> None:
    assert eval_extract.token_prf("The cat sat", "the CAT sat") == (1.0, 1.0, 1.0)
    assert eval_extract.token_prf("a b c d", "") == (None, 0.0, 0.0)
    precision, recall, f1 = eval_extract.token_prf("a b c d", "a b x")
    assert (precision, recall) == (2 / 3, 0.5) and f1 == pytest.approx(4 / 7)


def test_eval_extract_on_benchmark_sample(capsys: pytest.CaptureFixture[str]) -> None:
    """Four pages of the Zyte benchmark that carry newsletter and related-link boilerplate."""
    assert eval_extract.main(["--data", str(DATA / "extraction")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"n", "default", "baseline"} and result["n"] == 4
    for name in ("default", "baseline"):
        assert set(result[name]) == {"precision", "recall", "f1"}
        assert all(0.0 <= v <= 1.0 for v in result[name].values())
    assert result["default"]["precision"] > result["baseline"]["precision"]
    assert result["default"]["f1"] > result["baseline"]["f1"]


def test_video_channel_prompts_are_dropped_on_their_own_line_and_at_a_line_end() -> None:
    # Al Jazeera's video items end their text with these (seen on the 2021-09-16 feed snapshot).
    own_lines = ("France says the leader of the ISIL group in the Sahel has been killed by French forces.\n"
                 "- Subscribe to our channel: http://aje.io/AJSubscribe\n"
                 "- Follow us on Twitter: https://twitter.com/AJEnglish\n"
                 "- Find us on Facebook: https://www.facebook.com/aljazeera\n"
                 "- Check our website: https://www.aljazeera.com/")
    same_line = ("France says the leader of the ISIL group in the Sahel has been killed by French forces. "
                 "- Subscribe to our channel: http://aje.io/AJSubscribe - Follow us on Twitter: https://x.com/AJ")
    want = "France says the leader of the ISIL group in the Sahel has been killed by French forces."
    assert strip_boilerplate(own_lines) == want
    assert strip_boilerplate(same_line) == want
    # the words inside a sentence are not a prompt
    kept = "Officials said they would follow us on this - but subscribe to our channel was not what they meant."
    assert strip_boilerplate(kept) == kept

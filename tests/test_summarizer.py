"""Sentence splitting, the extractive default (on the bundled MiniLM model), the cache and the public API."""

from __future__ import annotations

from pathlib import Path

import pytest

from summarizer import LRUCache, Summarizer, Summary, SummaryCache, cache_key
from summarizer.text import clean, normalize, sentences, split_sentences

DATA = Path(__file__).parent / "data" / "summarizer"


def _text(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def summarizer() -> Summarizer:
    return Summarizer()


# --- cleaning and splitting -------------------------------------------------------------------------------


@pytest.mark.parametrize("raw, start", [
    ("GENEVA (Reuters) - Talks resumed on Monday.", "Talks resumed"),
    ("(CNN)Talks resumed on Monday.", "Talks resumed"),
    ("LONDON, England (CNN) -- Talks resumed on Monday.", "Talks resumed"),
    ("WASHINGTON — Talks resumed on Monday.", "Talks resumed"),
    ("By . Daily Mail Reporter . Talks resumed on Monday.", "Talks resumed"),
    ("By John Smith, Diplomatic Editor | Talks resumed on Monday.", "Talks resumed"),
    ("By John Smith\nTalks resumed on Monday.", "Talks resumed"),
    ("(The Hollywood Reporter)Talks resumed on Monday.", "Talks resumed"),
    ("By Monday, talks had resumed.", "By Monday, talks"),
    ("A (CNN) reporter said talks resumed.", "A (CNN) reporter"),
])
def test_datelines_and_bylines_are_removed(raw, start):
    assert clean(raw).startswith(start)


def test_page_furniture_is_removed():
    text = clean(_text("dm_style.txt"))
    for junk in ("PUBLISHED", "UPDATED", "MailOnline", "Scroll down"):
        assert junk not in text
    assert "The mayor of a small river town" in text


def test_abbreviations_and_quotes_do_not_break_sentences():
    sents = sentences(_text("dm_style.txt"))
    assert "Mr. Hale, who has led the town since 2011, said the council would open two schools as shelters." in sents
    assert any(s.startswith("Dr. Ruth Ames of the U.S. Geological Survey") for s in sents)
    assert "'We have never seen anything like this,' he said." in sents


def test_glued_photo_caption_is_flagged_and_prose_recovered():
    split = split_sentences(_text("dm_style.txt"))
    captions = [s.text for s in split if s.fragment]
    assert any(c.startswith("Rising tide:") for c in captions)
    prose = [s.text for s in split if not s.fragment]
    assert "Officials said the water level was still rising and could peak on Tuesday." in prose
    assert not any("pictured" in s for s in prose)


def test_speech_colon_is_not_a_caption():
    split = split_sentences("The minister said: 'We will sign the treaty.' Talks end on Friday.")
    assert [s.fragment for s in split] == [False, False]


def test_paragraphs_split_and_whitespace_normalised():
    split = split_sentences("First  paragraph\u00a0here.\n\nSecond paragraph. Third sentence.")
    assert [s.text for s in split] == ["First paragraph here.", "Second paragraph.", "Third sentence."]
    assert [s.paragraph for s in split] == [0, 1, 1]
    assert normalize("a\r\nb") == "a\nb"


# --- extractive summaries ---------------------------------------------------------------------------------


def test_summary_is_verbatim_and_within_budget(summarizer):
    for name in ("dm_style.txt", "wire_style.txt"):
        source = normalize(clean(_text(name)))
        out = summarizer.summarize(_text(name), max_sentences=3)
        assert out.method == "extractive" and out.model == "all-MiniLM-L6-v2:w8"
        assert 1 <= len(out.sentences) <= 3 and out.text == " ".join(out.sentences)
        assert all(s in source for s in out.sentences)
        assert out.sources == (0,) * len(out.sentences)


def test_multi_sentence_summary_keeps_the_lede_and_reading_order(summarizer):
    out = summarizer.summarize(_text("wire_style.txt"), max_sentences=2)
    assert out.sentences[0].startswith("Two neighbouring countries signed a ceasefire")
    article = clean(_text("wire_style.txt"))
    assert article.index(out.sentences[0]) < article.index(out.sentences[1])


def test_captions_and_boilerplate_never_reach_a_summary(summarizer):
    out = summarizer.summarize(_text("dm_style.txt"), max_sentences=5)
    assert not any("Rising tide" in s or "Scroll down" in s or "PUBLISHED" in s for s in out.sentences)


def test_max_chars_is_respected(summarizer):
    full = summarizer.summarize(_text("wire_style.txt"), max_sentences=3)
    for limit in (60, 200, 10_000):
        out = summarizer.summarize(_text("wire_style.txt"), max_sentences=3, max_chars=limit)
        assert len(out.text) <= limit and out.text
    assert summarizer.summarize(_text("wire_style.txt"), max_sentences=3, max_chars=10_000).text == full.text


def test_title_steers_a_one_sentence_summary(summarizer):
    doc = ("The city council met on Tuesday evening to discuss the annual budget. "
           "Members approved new funding for three public libraries in the northern districts. "
           "A proposal to widen the ring road was postponed until the autumn session. "
           "The mayor thanked residents who had attended the public hearing last week.")
    roads = summarizer.summarize(doc, title="Ring road widening delayed", max_sentences=1)
    books = summarizer.summarize(doc, title="Libraries get new money", max_sentences=1)
    assert "ring road" in roads.text and "libraries" in books.text


def test_multi_outlet_story_does_not_repeat_a_fact(summarizer):
    outlet_a = ("Two neighbouring countries signed a ceasefire agreement in Geneva on Monday, ending three years "
                "of fighting along their shared border. The deal creates a demilitarised zone 20 km wide.")
    outlet_b = ("A ceasefire agreement ending three years of fighting along the border between the two "
                "neighbouring countries was signed in Geneva on Monday. Aid agencies said they hoped to reach "
                "thousands of displaced families before winter.")
    out = summarizer.summarize([outlet_a, outlet_b], max_sentences=3)
    ledes = [s for s in out.sentences if "ceasefire agreement" in s]
    assert len(ledes) == 1
    assert set(out.sources) == {0, 1}
    texts = (outlet_a, outlet_b)
    assert all(s in texts[d] for s, d in zip(out.sentences, out.sources, strict=True))


def test_batch_equals_single_calls(summarizer):
    stories = [_text("wire_style.txt"), [_text("dm_style.txt"), _text("wire_style.txt")], "One line only here."]
    batch = summarizer.summarize_batch(stories, titles=[None, "Flood", None], max_sentences=2)
    single = [summarizer.summarize(s, title=t, max_sentences=2) for s, t in zip(stories, [None, "Flood", None], strict=True)]
    assert batch == single


def test_empty_and_bad_input(summarizer):
    assert summarizer.summarize("   ").text == ""
    assert summarizer.summarize([]).sentences == ()
    with pytest.raises(TypeError):
        summarizer.summarize(42)
    with pytest.raises(TypeError):
        summarizer.summarize(["ok", None])
    with pytest.raises(ValueError):
        summarizer.summarize("Text.", max_sentences=0)
    with pytest.raises(ValueError):
        summarizer.summarize_batch(["a"], titles=["x", "y"])
    with pytest.raises(ValueError):
        Summarizer(precision="fp8")


# --- cache ------------------------------------------------------------------------------------------------


def test_lru_cache_evicts_least_recently_used():
    cache = LRUCache(maxsize=2)
    s = Summary("t", ("t",), (0,), "extractive", "m")
    cache.put("a", s)
    cache.put("b", s)
    assert cache.get("a") == s  # now "b" is the oldest
    cache.put("c", s)
    assert cache.get("b") is None and cache.get("a") == s and cache.get("c") == s
    assert isinstance(cache, SummaryCache)
    with pytest.raises(ValueError):
        LRUCache(0)


def test_cache_key_covers_content_model_and_settings():
    base = cache_key(["Some  text."], title=None, model="m", settings={"k": 3})
    assert base == cache_key(["Some text."], title=None, model="m", settings={"k": 3})
    assert base != cache_key(["Other text."], title=None, model="m", settings={"k": 3})
    assert base != cache_key(["Some text."], title=None, model="m2", settings={"k": 3})
    assert base != cache_key(["Some text."], title=None, model="m", settings={"k": 1})
    assert base != cache_key(["Some text."], title="T", model="m", settings={"k": 3})


def test_story_is_summarized_once(summarizer):
    cache = LRUCache()
    s = Summarizer(cache=cache, embedder=summarizer._extractive.embedder)
    first = s.summarize(_text("wire_style.txt"))
    second = s.summarize(_text("wire_style.txt").replace(" ", "  "))
    other = s.summarize(_text("wire_style.txt"), max_sentences=1)
    assert not first.cached and second.cached and not other.cached
    assert second.text == first.text and len(cache) == 2


def test_summary_round_trips_through_dict():
    s = Summary("a b", ("a", "b"), (0, 1), "extractive", "m", cached=True)
    assert Summary.from_dict(s.to_dict()) == s


def test_budget_is_filled_past_a_redundant_head(summarizer):
    repeated = "The ceasefire was signed in Geneva on Monday by both sides. " * 16
    doc = repeated + ("Aid agencies plan to reach displaced families before winter arrives. "
                      "Parliaments in both countries must still ratify the agreement next month.")
    out = summarizer.summarize(doc, max_sentences=3)
    assert len(out.sentences) == 3
    assert out.sentences[0].startswith("The ceasefire") and "Aid agencies" in out.sentences[1]


def test_scorer_settings_are_part_of_the_cache_key(summarizer):
    from summarizer import ExtractiveConfig

    cache = LRUCache()
    emb = summarizer._extractive.embedder
    Summarizer(cache=cache, embedder=emb).summarize(_text("wire_style.txt"))
    other = Summarizer(cache=cache, embedder=emb, extractive=ExtractiveConfig(redundancy=0.5))
    assert not other.summarize(_text("wire_style.txt")).cached


@pytest.mark.parametrize("k, max_chars", [(2, None), (3, None), (4, None), (3, 600), (3, 200), (3, 60)])
def test_ledes_probe_picks_what_the_whole_head_picks(summarizer, k, max_chars):
    """Multi-sentence summaries embed a few ledes first; the result must equal embedding the whole head."""
    from summarizer.extractive import _candidates

    ext = summarizer._extractive
    redundant = ("The ceasefire was signed in Geneva on Monday by both sides. " * 5 + _text("wire_style.txt"))
    stories = [[_text("wire_style.txt")], [_text("dm_style.txt")], [redundant],
               [_text("wire_style.txt"), _text("dm_style.txt")]]
    items = [(docs, None) for docs in stories]
    cands = [_candidates(docs, ext.config.min_words) for docs in stories]
    whole_head = ext._summarize_head(items, cands, ext.config.lede_window + 2 * k, k, max_chars)
    assert ext.summarize_batch(items, max_sentences=k, max_chars=max_chars) == whole_head


class _CountingEncoder:
    """The real embedder, recording how many texts each call embeds."""

    def __init__(self, embedder) -> None:  # noqa: ANN001
        self.embedder, self.calls, self.name = embedder, [], embedder.name

    def encode(self, texts):  # noqa: ANN001, ANN201
        self.calls.append(len(texts))
        return self.embedder.encode(texts)


@pytest.mark.parametrize("k, max_chars", [(2, None), (3, None), (4, None), (3, 600)])
def test_a_long_article_is_summarized_from_its_first_characters(summarizer, k, max_chars):
    """Splitting is half a summary's cost: a long article's first k ledes come from splitting its head only,
    and when they fill the summary nothing else is split or embedded; the whole head picks the same."""
    from summarizer.extractive import LEDE_CHARS, ExtractiveSummarizer, _candidates

    ext = summarizer._extractive
    counting = _CountingEncoder(ext.embedder)
    probe = ExtractiveSummarizer(counting, ext.config)  # type: ignore[arg-type]
    long = " ".join([_text("wire_style.txt"), _text("dm_style.txt")] * 3).replace("\n", " ")
    assert len(long) > 1.5 * LEDE_CHARS
    items = [([long], "Ceasefire signed")]
    whole_head = ext._summarize_head(items, [_candidates([long], ext.config.min_words)],
                                     ext.config.lede_window + 2 * k, k, max_chars)
    assert probe.summarize_batch(items, max_sentences=k, max_chars=max_chars) == whole_head
    assert counting.calls == [k], "only the first k ledes are embedded"


def test_a_long_article_whose_first_ledes_repeat_is_summarized_in_full(summarizer):
    from summarizer.extractive import ExtractiveSummarizer, _candidates

    ext = summarizer._extractive
    counting = _CountingEncoder(ext.embedder)
    probe = ExtractiveSummarizer(counting, ext.config)  # type: ignore[arg-type]
    repeat = "The ceasefire was signed in Geneva on Monday by both sides. " * 3
    long = (repeat + " ".join([_text("wire_style.txt"), _text("dm_style.txt")] * 3)).replace("\n", " ")
    items = [([long], None)]
    whole_head = ext._summarize_head(items, [_candidates([long], ext.config.min_words)],
                                     ext.config.lede_window + 6, 3, None)
    got = probe.summarize_batch(items, max_sentences=3)
    assert got == whole_head and len(got[0].sentences) == 3
    assert counting.calls[0] == 3 and len(counting.calls) > 1, "the probe failed and the head was embedded"

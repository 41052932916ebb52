"""Same-story detection: features, decisions, the index (numpy and HNSW), state round trips, evaluation."""

from __future__ import annotations

import gzip
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from bot.eval import dedup
from bot.pipeline import story, story_pairs
from bot.pipeline.story import StoryIndex, StoryParams

DATA = Path(__file__).parent / "data"
T0 = datetime(2025, 3, 6, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def embedder():  # noqa: ANN201
    from summarizer.embedding import Embedder

    return Embedder()


def seed_writeups() -> list[dict]:
    """The two write-ups of the seed page, split at the line starting 'JUST IN –'."""
    text = (DATA / "seed_article.txt").read_text(encoding="utf-8")
    at = text.index("\nJUST IN –") + 1
    out = []
    for i, part in enumerate((text[:at], text[at:])):
        lines = [ln for ln in part.splitlines() if ln.strip()]
        out.append({"key": f"seed-{i}", "title": lines[0].strip(), "text": "\n".join(lines[1:]),
                    "outlet": f"outlet{i}", "link": f"https://example.org/{i}",
                    "published": T0 + timedelta(hours=i)})
    return out


def stream(index: StoryIndex, feats: list[story.StoryFeatures]) -> list[tuple[int, story.Decision]]:
    """Place articles one at a time, the way the runner does; returns (story id, decision) per article."""
    out = []
    for f in feats:
        decision, state = story.place(index, f)
        sid = decision.story_id if decision.story_id is not None else len(index) + 1
        index.add_story(sid, state)
        out.append((sid, decision))
    return out


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, story.DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def synthetic(key: str, vec: np.ndarray, terms: dict[str, int] | None = None, published=None,  # noqa: ANN001
              text: str | None = None) -> story.StoryFeatures:
    terms = terms or {}
    body = text or " ".join(terms) or key
    minhash = story.minhash_of(text or key)
    signals = story_pairs.text_signals(key=key, title="", lead=body, body=body, names=terms, lead_names=terms,
                                       embedding=vec, title_embedding=vec, minhash=minhash, published=published)
    return story.StoryFeatures(key=key, embedding=vec, terms=terms, lead_terms=terms, minhash=minhash,
                               published=published, signals=signals)


# ---- features ----------------------------------------------------------------------------------------------

def test_salient_terms_keep_names_and_figures_not_stopwords():
    text = "BREAKING: The quake of magnitude 6.1 hit Qeshm Island on Sunday, killing 13. It was"
    terms = story.salient_terms(text)
    assert {"6.1", "qeshm", "island", "sunday", "13"} <= set(terms)
    assert not {"the", "it", "breaking"} & set(terms)


def test_lead_text_is_title_plus_first_sentences():
    lead = story.lead_text("Quake hits Iran", "First one. Second one.\n\nThird one. Fourth one.", 3)
    assert lead == "Quake hits Iran. First one. Second one. Third one."
    assert story.lead_text("", "Only text.", 3) == "Only text."


def test_minhash_similar_texts_share_more_slots():
    a = "Police said three people died when a fire broke out in the bank branch on the main street of Athens"
    b = a.replace("three", "four")
    c = "The central bank left interest rates unchanged on Thursday citing slowing inflation in the region"
    ja = np.mean(story.minhash_of(a) == story.minhash_of(b))
    jc = np.mean(story.minhash_of(a) == story.minhash_of(c))
    assert ja > 0.6 > 0.2 > jc
    assert len(story.minhash_of(" -- ")) == 0  # no words: no signature, so never a near-duplicate


# ---- decisions on real text --------------------------------------------------------------------------------

def test_seed_writeups_are_one_story(embedder):
    first, second = story.featurize(seed_writeups(), embedder.encode)
    index = StoryIndex()
    (sid1, d1), (sid2, d2) = stream(index, [first, second])
    assert d1.reason == "new"
    assert d2.reason == "same_story" and sid2 == sid1
    state = index.get(sid1)
    assert state.n_members == 2 and [m.outlet for m in state.members] == ["outlet0", "outlet1"]
    assert state.first_seen == T0 and state.last_updated == T0 + timedelta(hours=1)


def test_same_subject_stories_stay_apart_and_outlets_join(embedder):
    """Real AllSides stories that share a subject (two Texas abortion rulings a week apart, two Yellen debt-limit
    warnings, two vaccine-donation pledges), each told by a left, centre and right outlet."""
    docs = dedup.load_documents(DATA / "allsides_sample.jsonl")
    gold = [d["cluster_id"] for d in docs]
    timed = dedup.bcubed(dedup.cluster_online(docs, embedder.encode, protocol="timed"), gold)
    assert timed["precision"] == 1.0 and timed["recall"] >= 0.8  # never two events in one story
    # Without publication times the two Texas rulings (days apart, same court, same law) are hard to tell apart.
    dense = dedup.bcubed(dedup.cluster_online(docs, embedder.encode, protocol="dense"), gold)
    assert dense["precision"] >= 0.9 and dense["recall"] >= 0.7


@pytest.mark.xfail(strict=True, reason="known limitation: templated reports of the same kind of event that share "
                   "rare boilerplate names (U.S. Geological Survey, Magnitude) within hours still score as one "
                   "story; docs/story.md")
def test_same_kind_of_event_in_different_places_stays_apart(embedder):
    """Two small earthquakes on one day share their words but not their places and magnitudes."""
    arts = [{"key": "q1", "title": "Earthquake: Magnitude 3.8 quake hits near Coalinga",
             "text": "A magnitude 3.8 earthquake struck near Coalinga in Fresno County on Thursday morning, the "
                     "U.S. Geological Survey said. No damage was reported.", "published": T0},
            {"key": "q2", "title": "Earthquake: Magnitude 3.6 quake rattles Thousand Oaks",
             "text": "A magnitude 3.6 earthquake rattled Thousand Oaks in Ventura County on Thursday, the U.S. "
                     "Geological Survey said. Residents felt light shaking.", "published": T0 + timedelta(hours=2)}]
    index = StoryIndex()
    (s1, _), (s2, d2) = stream(index, story.featurize(arts, embedder.encode))
    assert s1 != s2 and d2.reason == "new"


def test_an_outlets_own_items_do_not_vouch_for_its_new_one(embedder):
    """One feed's consecutive items are nearly always different events: the seed's second write-up from the same
    outlet starts its own story (from another outlet it joins: test_seed_writeups_are_one_story)."""
    first, second = story.featurize([{**a, "outlet": "Same Outlet"} for a in seed_writeups()], embedder.encode)
    index = StoryIndex()
    (s1, _), (s2, d2) = stream(index, [first, second])
    assert s1 != s2 and d2.reason == "new" and d2.score == 0.0


def test_two_similar_events_stay_separate(embedder):
    """ECB+ topics 12 and 14: two pirate captures and two store fires; each event must be its own story."""
    docs = [json.loads(line) for line in (DATA / "ecbplus_sample.jsonl").read_text().splitlines()]
    pred = dedup.cluster_online(docs, embedder.encode)
    gold = [d["cluster_id"] for d in docs]
    assert dedup.bcubed(pred, gold)["f1"] == 1.0
    assert len(set(pred)) == 4


def test_placing_the_same_article_again_changes_nothing(embedder):
    f = story.featurize(seed_writeups()[:1], embedder.encode)[0]
    index = StoryIndex()
    [(sid, _)] = stream(index, [f])
    before = index.get(sid).to_bytes()
    decision, state = story.place(index, f)
    assert decision == story.Decision(sid, 1.0, "exact") and state.to_bytes() == before


def test_exact_and_near_duplicate_copies(embedder):
    base = seed_writeups()[0]
    wire_copy = {**base, "key": "copy", "link": "https://other.example/x",
                 "text": base["text"].replace("significant announcement", "major announcement")}
    same_url = {**base, "key": "again", "canonical_url": "https://example.org/canonical"}
    first = {**base, "canonical_url": "https://example.org/canonical"}
    f_first, f_copy, f_again = story.featurize([first, wire_copy, same_url], embedder.encode)
    index = StoryIndex()
    (sid, _), (sid_copy, d_copy), (sid_again, d_again) = stream(index, [f_first, f_copy, f_again])
    assert d_copy.reason == "near_duplicate" and sid_copy == sid and d_copy.score >= 0.8
    assert d_again.reason == "exact" and sid_again == sid


def test_substantial_update_needs_new_names_or_figures(embedder):
    first, second = story.featurize(seed_writeups(), embedder.encode)
    state = story.new_story(first)
    update = {"key": "u",
              "title": "Russia and NATO agree talks in Geneva; Stoltenberg and Rubio to meet Lavrov",
              "text": "Officials said 40 delegates will attend the talks on Friday."}
    rewrite = {"key": "r", "title": "Lavrov: Russia will not tolerate NATO troops in Ukraine",
               "text": "Russia will not tolerate any NATO troops in Ukraine, Lavrov said."}
    f_update, f_rewrite = story.featurize([update, rewrite], embedder.encode)
    check = story.is_substantial_update(state, f_update)
    assert check.substantial and {"geneva", "stoltenberg", "rubio"} <= set(check.new_terms)
    assert not story.is_substantial_update(state, f_rewrite).substantial
    near = story.Decision(1, 0.95, "near_duplicate")
    assert not story.is_substantial_update(state, f_update, near).substantial


# ---- index mechanics (synthetic vectors) -------------------------------------------------------------------

def test_decide_prefers_exact_then_near_duplicate_then_score():
    rng = np.random.default_rng(0)
    v = unit(rng, 3)
    f = synthetic("a", v[0], {"x": 1})
    st = story.new_story(synthetic("s", v[0], {"x": 1}))
    cands = [story.Candidate(1, st, 0.99), story.Candidate(2, st, 0.5, jaccard=0.9),
             story.Candidate(3, st, 0.1, exact=True)]
    assert story.decide(f, cands).reason == "exact"
    assert story.decide(f, cands[:2]) == story.Decision(2, 0.9, "near_duplicate")
    assert story.decide(f, cands[:1]).reason == "same_story"
    far = story.new_story(synthetic("t", v[1], {"y": 1}))
    low = story.decide(f, [story.Candidate(4, far, float(v[1] @ v[0]))])
    assert low.story_id is None and low.reason == "new"
    assert story.decide(f, []) == story.Decision(None, 0.0, "new")


class _Scores:
    """A pair scorer that answers fixed probabilities, one per pair row in order: tests the decision rule alone."""

    def __init__(self, probs: list[float]) -> None:
        self.probs = np.asarray(probs)

    def proba(self, X: np.ndarray) -> np.ndarray:
        assert len(X) == len(self.probs)
        return self.probs


def test_is_clear_best_needs_the_floor_and_the_margin():
    params = StoryParams()  # join 0.6; clear at 0.5 with a 0.4 margin
    assert story.is_clear_best([0.55], 0, params)  # the only candidate: nothing competes
    assert story.is_clear_best([0.1, 0.55], 1, params)
    assert not story.is_clear_best([0.55, 0.2], 0, params)  # another story comes within 0.4: which one is unsure
    assert not story.is_clear_best([0.45], 0, params)  # below the floor
    assert not story.is_clear_best([0.55], 0, StoryParams(clear_threshold=None))
    assert story.joins_story([0.55, 0.1], 0, params, dated=True)
    assert not story.joins_story([0.55, 0.1], 0, params, dated=False)  # undated: only the threshold joins
    assert story.joins_story([0.65, 0.6], 0, params, dated=False)
    assert not story.joins_story([0.59, 0.3], 0, params, dated=True)


def test_decide_joins_a_clear_best_story_below_the_threshold_with_times_only():
    rng = np.random.default_rng(0)
    v = unit(rng, 3)
    f = synthetic("a", v[0], published=T0)
    one, two = (story.new_story(synthetic(k, v[i + 1])) for i, k in enumerate(("s", "t")))
    cands = [story.Candidate(1, one, 0.5), story.Candidate(2, two, 0.4)]
    assert story.decide(f, cands, model=_Scores([0.55, 0.05])) == story.Decision(1, 0.55, "same_story")
    assert story.decide(f, cands, model=_Scores([0.55, 0.3])) == story.Decision(None, 0.55, "new")
    assert story.decide(f, cands, model=_Scores([0.65, 0.5])) == story.Decision(1, 0.65, "same_story")
    off = StoryParams(clear_threshold=None)
    assert story.decide(f, cands, off, model=_Scores([0.55, 0.05])) == story.Decision(None, 0.55, "new")
    # Without a publication time a lone candidate may be another stage of the same storyline: no clear-best join.
    undated = synthetic("b", v[0])
    assert story.decide(undated, cands, model=_Scores([0.55, 0.05])) == story.Decision(None, 0.55, "new")
    # A join on the clear-best rule is weak (below core_threshold): it can neither rank nor summarise the story.
    assert not story.is_core_member("same_story", 0.55)


def test_only_a_core_join_lifts_topics_or_makes_a_major_update():
    story_topics = {"geopolitics": 0.2, "world": 0.9}
    kw = dict(topics={"geopolitics": 0.95, "world": 0.5}, topic_score=0.95, story_topics=story_topics,
              story_topic_score=0.9, substantial=True)
    core = story.join_effect(story.Decision(1, 0.85, "same_story"), **kw)
    assert core == story.JoinEffect({"geopolitics": 0.95, "world": 0.9}, 0.95, True)
    assert not story.join_effect(story.Decision(1, 0.85, "same_story"), **{**kw, "substantial": False}).major
    # A weak join (a clear-best join at 0.55, or 0.6-0.7) may be another event: the story stays as it was.
    for weak in (story.Decision(1, 0.55, "same_story"), story.Decision(1, 0.65, "same_story")):
        assert story.join_effect(weak, **kw) == story.JoinEffect(story_topics, 0.9, False)
    assert story.join_effect(story.Decision(1, 0.9, "near_duplicate"), **kw).major


@pytest.mark.parametrize("ann_min_size", [10_000, 64])
def test_nearest_matches_brute_force(ann_min_size):
    rng = np.random.default_rng(1)
    vecs = unit(rng, 300)
    index = StoryIndex(StoryParams(ann_min_size=ann_min_size))
    for i, v in enumerate(vecs):
        index.add_story(i + 1, story.new_story(synthetic(f"k{i}", v)))
    assert index.uses_ann is (ann_min_size == 64)
    hits = 0
    for i in range(0, 300, 10):
        q = vecs[i] + 0.02 * rng.standard_normal(story.DIM).astype(np.float32)
        q /= np.linalg.norm(q)
        got = index.nearest(q, 5)
        assert all(abs(c - float(vecs[sid - 1] @ q)) < 1e-4 for sid, c in got)  # cosines are exact
        hits += got[0][0] == i + 1
    assert hits == 30


@pytest.mark.parametrize("ann_min_size", [10_000, 8])
def test_update_and_remove_keep_index_consistent(ann_min_size):
    rng = np.random.default_rng(2)
    vecs = unit(rng, 20)
    index = StoryIndex(StoryParams(ann_min_size=ann_min_size))
    for i in range(10):
        index.add_story(i, story.new_story(synthetic(f"k{i}", vecs[i], text=f"text number {i} " * 10)))
    moved = story.join_story(index.get(3), synthetic("k3b", vecs[15]))
    moved.centroid = vecs[15] * 2  # as if every member sat on vecs[15]
    index.update_story(3, moved)
    assert index.nearest(vecs[15], 1)[0][0] == 3
    index.remove_story(4)
    assert 4 not in index and len(index) == 9
    assert all(sid != 4 for sid, _ in index.nearest(vecs[4], 9))
    f = synthetic("k4", vecs[4], text="text number 4 " * 10)  # key and text of the removed story's article
    assert all(c.story_id != 4 for c in index.candidates(f))


def test_time_window_and_eviction():
    rng = np.random.default_rng(3)
    v = unit(rng, 1)[0]
    params = StoryParams(window=timedelta(days=2))
    index = StoryIndex(params)
    index.add_story(1, story.new_story(synthetic("old", v, {"x": 2}, published=T0)))
    later = synthetic("new", v, {"x": 2}, published=T0 + timedelta(days=3))
    assert index.candidates(later) == []
    soon = synthetic("n2", v, {"x": 2}, published=T0 + timedelta(days=1))
    assert [c.story_id for c in index.candidates(soon)] == [1]
    assert index.evict_before(T0 + timedelta(hours=1)) == [1] and len(index) == 0


def test_state_round_trip_and_rebuild():
    rng = np.random.default_rng(4)
    v = unit(rng, 2)
    f1 = story.StoryFeatures(key="a", embedding=v[0], terms={"kyiv": 2, "nato": 1}, lead_terms={"nato": 1},
                             minhash=story.minhash_of("some wire text about kyiv and nato"), published=T0,
                             canonical_url="https://x.example/a", content_hash="h1", outlet="X",
                             link="https://x/a")
    f2 = synthetic("b", v[1], {"kyiv": 1}, published=T0 + timedelta(hours=2))
    state = story.join_story(story.new_story(f1), f2)
    back = story.StoryState.from_bytes(state.to_bytes())
    assert np.array_equal(back.centroid, state.centroid) and back.terms == {"kyiv": 3, "nato": 1}
    assert back.n_members == 2 and back.first_seen == T0 and back.last_updated == T0 + timedelta(hours=2)
    assert [m.key for m in back.members] == ["a", "b"] and np.array_equal(back.members[0].minhash, f1.minhash)
    assert back.members[1].signals is not None and back.members[1].signals.names == {"kyiv": 1}
    assert np.allclose(back.members[1].signals.embedding, v[1], atol=1e-3)  # stored as float16
    index = StoryIndex()
    index.add_story(7, back)  # the runner rebuilds the index from stored states at start
    assert story.decide(f1, index.candidates(f1)) == story.Decision(7, 1.0, "exact")


@pytest.mark.parametrize("blob", [b"", b"not json", b"5", b'{"v": 99}',
                                  b'{"v": 1, "centroid": "AAAA", "n": 1, "terms": {}}'])
def test_bad_state_is_a_clear_error(blob):
    with pytest.raises(ValueError, match="story state"):
        story.StoryState.from_bytes(blob)


def test_old_states_load_and_only_copies_join_them():
    rng = np.random.default_rng(6)
    v = unit(rng, 1)[0]
    old = story.new_story(synthetic("a", v, {"kyiv": 1}))
    doc = json.loads(old.to_bytes())
    doc["v"] = 1
    for m in doc["members"]:
        m.pop("signals")
    back = story.StoryState.from_bytes(json.dumps(doc).encode())
    assert back.members[0].signals is None
    f = synthetic("b", v, {"kyiv": 1})
    assert story.decide(f, [story.Candidate(1, back, 1.0)]) == story.Decision(None, 0.0, "new")


def test_only_recent_members_keep_pair_signals():
    rng = np.random.default_rng(7)
    state = story.new_story(synthetic("m0", unit(rng, 1)[0]))
    for j in range(1, 12):
        state = story.join_story(state, synthetic(f"m{j}", unit(rng, 1)[0]))
    kept = [m.key for m in state.members if m.signals is not None]
    assert kept == [f"m{j}" for j in range(12 - story_pairs.MAX_SCORED_MEMBERS, 12)]


def test_join_story_caps_terms_and_members():
    rng = np.random.default_rng(5)
    params = StoryParams(max_terms=5, max_tracked_members=3)
    state = story.new_story(synthetic("m0", unit(rng, 1)[0], {f"t{i}": 1 for i in range(4)}))
    for j in range(1, 6):
        state = story.join_story(state, synthetic(f"m{j}", unit(rng, 1)[0], {f"u{j}": 3}), params=params)
    assert len(state.terms) == 5 and state.n_members == 6
    assert [m.key for m in state.members] == ["m3", "m4", "m5"]


# ---- evaluation --------------------------------------------------------------------------------------------

def test_bcubed_and_pairwise_on_a_hand_computed_case():
    pred, gold = [1, 1, 2, 2, 2], ["a", "a", "a", "b", "b"]
    # B-cubed precision: (1 + 1 + 1/3 + 2/3 + 2/3) / 5; recall: (2/3 + 2/3 + 1/3 + 1 + 1) / 5
    assert dedup.bcubed(pred, gold) == {"precision": 0.7333, "recall": 0.7333, "f1": 0.7333}
    # predicted pairs {01, 23, 24, 34}; gold pairs {01, 02, 12, 34}: tp = 2
    assert dedup.pairwise(pred, gold) == {"precision": 0.5, "recall": 0.5, "f1": 0.5}


def test_eval_dedup_contract(tmp_path, embedder):
    lines = (DATA / "ecbplus_sample.jsonl").read_text().splitlines()
    path = tmp_path / "docs.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write("\n".join(lines[:8]) + "\n")
    result = dedup.run(path, embedder=embedder)
    assert result["n"] == 8 and result["protocol"] == "dense"  # no `published`: dense by default
    assert set(result) == {"n", "protocol", "bcubed", "pairwise", "clusters", "baseline"}
    for block in (result, result["baseline"]):
        for name in ("bcubed", "pairwise"):
            assert set(block[name]) == {"precision", "recall", "f1"}
            assert all(0.0 <= x <= 1.0 for x in block[name].values())
        assert block["clusters"]["gold"] == len({json.loads(x)["cluster_id"] for x in lines[:8]})


def test_eval_dedup_protocols(embedder):
    docs = dedup.load_documents(DATA / "allsides_sample.jsonl")
    assert dedup.default_protocol(docs) == "timed"
    timed = dedup.run(DATA / "allsides_sample.jsonl", embedder=embedder)
    dense = dedup.run(DATA / "allsides_sample.jsonl", embedder=embedder, protocol="dense")
    assert timed["protocol"] == "timed" and dense["protocol"] == "dense"
    assert "bcubed" in timed["baseline"] and "bcubed" in dense["baseline"]
    # timed places in publication order: shuffling the file changes nothing
    shuffled = list(reversed(docs))
    assert dedup.bcubed(dedup.cluster_online(shuffled, embedder.encode, protocol="timed"),
                        [d["cluster_id"] for d in shuffled]) == timed["bcubed"]


def test_timed_baseline_respects_the_window():
    vec = np.ones((3, story.DIM), np.float32) / np.sqrt(story.DIM)
    docs = [{"doc_id": str(i), "cluster_id": "c", "text": "x", "published": T0 + timedelta(days=d)}
            for i, d in enumerate((0, 1, 9))]
    assert dedup.cluster_baseline(docs, lambda texts: vec[:len(texts)], protocol="timed") == [0, 0, 1]
    assert dedup.cluster_baseline(docs, lambda texts: vec[:len(texts)], protocol="dense") == [0, 0, 0]


@pytest.mark.parametrize(("content", "message"), [
    ('{"doc_id": "x", "text": "no cluster"}\n', "missing field(s) cluster_id"),
    ('{"doc_id": "x", "cluster_id": "c", "text": "t"}\n{broken\n', ":2: not a JSON object"),
    ('[1, 2]\n', ":1: not a JSON object"),
    ('{"doc_id": "x", "cluster_id": "c", "text": "t", "published": "yesterday"}\n', "not an ISO 8601 time"),
])
def test_eval_dedup_rejects_bad_files(tmp_path, capsys, content, message):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(content)
    assert dedup.main(["--data", str(bad)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_eval_dedup_timed_needs_times(tmp_path, capsys):
    path = tmp_path / "d.jsonl"
    path.write_text('{"doc_id": "x", "cluster_id": "c", "text": "t"}\n')
    assert dedup.main(["--data", str(path), "--protocol", "timed"]) == 2
    assert "needs `published`" in capsys.readouterr().err


def test_stream_rate_counts_articles_around_an_articles_time(embedder):
    t0 = datetime(2021, 9, 16, 12, tzinfo=UTC)
    arts = [{"key": f"a{i}", "title": f"Item {i}", "text": f"Text number {i} about something else entirely.",
             "published": t0 + timedelta(hours=h)} for i, h in enumerate((-30, -20, -1, 0, 5, 30))]
    feats = story.featurize(arts, embedder.encode)
    index = story.StoryIndex()
    for n, f in enumerate(feats[:3]):
        index.add_story(n + 1, story.new_story(f))
    me = feats[3]
    # Within a day either side: -20 h and -1 h (not -30 h); itself never counts.
    assert index.stream_rate(me) == 2.0
    index.add_story(4, story.new_story(me))
    assert index.stream_rate(me) == 2.0
    # The batch's other articles count before they are placed; ones already placed count once.
    pending = [(f.key, f.published) for f in feats]
    assert index.stream_rate(me, pending) == 3.0  # + the one at +5 h
    assert index.stream_rate(replace(me, published=None)) is None
    # Articles off every topic are never placed, but the stream is as busy with them: they count once noted.
    index.note_arrivals([("off-topic", t0 + timedelta(hours=3)), ("a4", t0 + timedelta(hours=5))])
    assert index.stream_rate(me) == 4.0 and index.stream_rate(me, pending) == 4.0
    index.evict_before(t0 - timedelta(hours=10))
    assert index.stream_rate(me) == 3.0  # the -20 h article is gone with its story's window

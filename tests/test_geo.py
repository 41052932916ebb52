"""The geopolitics topic: shipped head, cue lexicon, feed prior, training determinism and the CLI contract."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bot import cli
from bot.eval import classify
from bot.pipeline import topic
from bot.pipeline.topic import GEOPOLITICS, WORLD, GeoHead, TopicClassifier
from bot.train import geo_head as geo_training

DATA = Path(__file__).parent / "data"
GEO_SAMPLE = DATA / "geo_sample.jsonl"
AG_SAMPLE = DATA / "topic_sample.csv"
# Real sport and celebrity items of the BBC and CNN feeds (tests/data/geo_sample.README).
SPORT_CELEB_IDS = ("g0760", "h0529", "h1016", "h1052", "h2202", "h0321", "h2030", "h1888")
KEYS = {"n", "precision", "recall", "f1", "accuracy"}


@pytest.fixture(scope="session")
def embedder():  # noqa: ANN201
    from summarizer.embedding import Embedder

    return Embedder()


@pytest.fixture(scope="session")
def sample_geo_head(embedder) -> GeoHead:  # noqa: ANN001
    """A head trained on the 40-item fixture (no nested CV)."""
    return geo_training.train(GEO_SAMPLE, embedder, evaluate=False)


def _records() -> list[dict]:
    return [json.loads(line) for line in GEO_SAMPLE.read_text(encoding="utf-8").splitlines()]


def test_shipped_geo_head_loads_with_provenance():
    head = topic.load_geo_head()
    assert head.meta["data_file"] == "geo_dev.jsonl.gz" and len(head.meta["data_sha256"]) == 64
    assert head.embeddings.shape == (head.meta["n"], 768) and 0 < head.threshold < 1
    assert head.meta["encoder"] == "all-mpnet-base-v2:w8"
    assert set(head.meta["nested_cv"]) == KEYS and head.meta["nested_cv"]["f1"] > 0.8
    assert head.lexicon.categories[0] == "entity"


def test_cue_lexicon_matches_whole_terms_with_case_where_it_matters():
    lex = topic.load_lexicon()
    col = {c: i for i, c in enumerate(lex.categories)}
    f = lex.features(["U.S. and UK envoys meet Taliban in Doha", "let us go to the usual trusted place",
                      "Striker scores twice as Premier League leaders win"])
    assert f[0, col["entity"]] == pytest.approx(np.log1p(3))  # U.S., UK, Taliban
    assert f[1].sum() == 0, "'us' in lower case is not the US; no substring matches"
    assert f[2, col["sport"]] > 0 and f[2, col["entity"]] == 0


def test_geopolitics_head_on_unseen_headlines(embedder):
    clf = TopicClassifier(embedder)
    texts = [topic.article_text_for_topic(t, d) for t, d in [
        ("Kremlin recalls ambassador as sanctions row with Brussels deepens",
         "Moscow said the new EU measures were an act of economic war."),
        ("Junta leader sworn in as president after coup in West African state",
         "Regional bloc ECOWAS threatened further sanctions."),
        ("Local bakery wins award for best sourdough in the county",
         "Queues formed outside the shop on Saturday."),
        ("Pop star announces world tour dates", "Tickets go on sale on Friday for the 40-city tour."),
        ("Midfielder signs new five-year contract with club",
         "The 23-year-old has scored 12 goals this season."),
    ]]
    scores = clf.score_many(texts)
    assert all(set(s) == {GEOPOLITICS, WORLD} and all(0 <= v <= 1 for v in s.values()) for s in scores)
    geo = [s[GEOPOLITICS] for s in scores]
    assert min(geo[:2]) > 0.5 > max(geo[2:])


def test_world_feed_flag_does_not_let_sport_or_celebrities_through(embedder):
    recs = {r["id"]: r for r in _records()}
    # The real items are in the shipped head's training data; the written ones are not, and carry the
    # foreign names and "world" words that fooled the world head.
    texts = [topic.article_text_for_topic(recs[i]["title"], recs[i]["description"]) for i in SPORT_CELEB_IDS] + [
        "Brazil beat Argentina 2-0 in World Cup qualifier in Sao Paulo. Neymar scored the opener.",
        "Prince attends charity polo match in Dubai. The royal was joined by his wife and children.",
        "Russian figure skater wins gold at European championships. The 17-year-old set a personal best.",
        "Pop star cancels Moscow concert citing exhaustion. Fans were told refunds would be issued.",
        "Hollywood actor marries Italian model in Venice ceremony. Guests included several A-list stars.",
    ]
    scores = TopicClassifier(embedder).score_many(texts)
    flagged = [topic.with_feed_override(s, all_world=True) for s in scores]
    for text, plain, raised in zip(texts, scores, flagged, strict=True):
        assert raised[GEOPOLITICS] >= plain[GEOPOLITICS]
        assert raised[GEOPOLITICS] < 0.5, text


def test_geo_training_is_deterministic_and_round_trips(tmp_path, sample_geo_head, embedder):
    again = geo_training.train(GEO_SAMPLE, embedder, evaluate=False)
    assert again.threshold == sample_geo_head.threshold and again.meta == sample_geo_head.meta
    assert np.array_equal(again.support, sample_geo_head.support)
    assert np.array_equal(again.lr_coef, sample_geo_head.lr_coef)
    assert sample_geo_head.meta["data_sha256"] == geo_training.sha256_of(GEO_SAMPLE)
    sample_geo_head.save(tmp_path / "g.npz", tmp_path / "g.json")
    back = GeoHead.load(tmp_path / "g.npz", tmp_path / "g.json")
    texts = ["Rebels seize border town as talks stall", "Quarterly profit doubles at retailer"]
    X = embedder.encode(texts)
    assert np.allclose(back.score(X, texts), sample_geo_head.score(X, texts), atol=1e-3)


def test_svm_part_equals_sklearn_decision_function(sample_geo_head, embedder):
    from sklearn.svm import SVC

    data = geo_training.load_geo_jsonl(GEO_SAMPLE)
    X = embedder.encode(data.texts)
    F = sample_geo_head.features(X, data.texts).astype(np.float64)
    svm = SVC(C=sample_geo_head.meta["C"], gamma="scale").fit(F, data.labels)
    sq = ((F[:, None, :] - sample_geo_head.support[None]) ** 2).sum(-1)
    mine = np.exp(-sample_geo_head.gamma * sq) @ sample_geo_head.dual_coef + sample_geo_head.svm_intercept
    assert np.allclose(mine, svm.decision_function(F), atol=1e-6)


def test_eval_cli_prints_exactly_the_contract_keys(capsys):
    assert cli.main(["eval", "classify", "--data", str(GEO_SAMPLE)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    result = json.loads(out[0])
    assert set(result) == KEYS and result["n"] == 40
    assert cli.main(["eval", "classify", "--topic", "world", "--data", str(GEO_SAMPLE)]) == 0
    world = json.loads(capsys.readouterr().out)
    assert set(world) == KEYS and world["n"] == 40
    # The geopolitics head on AG News-format CSV (World vs the rest).
    assert cli.main(["eval", "classify", "--topic", "geopolitics", "--data", str(AG_SAMPLE)]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 25


def test_default_topic_follows_the_file_format():
    assert classify.detect_format(GEO_SAMPLE) == "geo" and classify.detect_format(AG_SAMPLE) == "csv"


@pytest.mark.parametrize("content", [
    "",
    "just some words\n",
    '{"title": "x", "description": "y"}\n',  # no label
    '{"title": "x", "geopolitical": 2}\n',
    '{"title": "x", "geopolitical": 1}\nnot json\n',
    "label,text\n1,hello\n",
])
def test_eval_cli_bad_files_exit_2_with_one_line(tmp_path, capsys, content):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(content, encoding="utf-8")
    assert cli.main(["eval", "classify", "--data", str(bad)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1
    assert "Traceback" not in captured.err


def test_eval_cli_missing_file_exits_2(tmp_path, capsys):
    assert cli.main(["eval", "classify", "--data", str(tmp_path / "nope.jsonl")]) == 2
    assert "nope.jsonl" in capsys.readouterr().err


def test_eval_cross_validates_the_geo_training_file(tmp_path, sample_geo_head, embedder, capsys):
    copy = tmp_path / "same.jsonl"
    shutil.copy(GEO_SAMPLE, copy)  # same bytes, same sha256
    result = classify.run(copy, geo_head=sample_geo_head, embedder=embedder)
    assert "nested cross-validation" in capsys.readouterr().err
    assert set(result) == KEYS and result["n"] == 40


def test_train_cli_writes_a_geo_head_the_service_can_load(tmp_path, capsys):
    argv = ["train", "classify", "--data", str(GEO_SAMPLE), "--out-dir", str(tmp_path), "--no-eval"]
    assert cli.main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["data_sha256"] == geo_training.sha256_of(GEO_SAMPLE)
    head = topic.load_geo_head(tmp_path)
    assert head.meta["n"] == 40 and head.meta["positives"] == 16
    assert topic.load_head(tmp_path).meta["data_file"] == "ag_news_dev.csv.gz", "world head: the shipped one"

"""Same-story pair scoring: background word rarity, signals, pair features, the model and its training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bot.pipeline import story, story_pairs
from bot.pipeline.story_pairs import FEATURE_NAMES, Idf, PairModel
from bot.train import story_pairs as training

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def embedder():  # noqa: ANN201
    from summarizer.embedding import Embedder

    return Embedder()


def test_rare_words_weigh_more_than_common_ones():
    idf = Idf.from_texts(["Covid cases rise in Texas", "Covid vaccines for Texas", "Covid rules end",
                          "Biden speaks on Covid"], min_df=1)
    assert idf("coalinga") > idf("biden") > idf("covid")
    vec = story_pairs.word_vector("Covid quake near Coalinga", idf)
    assert vec["coalinga"] > vec["covid"] and abs(sum(x * x for x in vec.values()) - 1) < 1e-3


def test_shipped_background_table_and_model_load():
    idf = story_pairs.default_idf()
    assert idf.n > 1000 and idf("zahawi") > idf("taliban") > idf("government")
    model = story_pairs.default_model()
    assert tuple(model.meta["features"]) == FEATURE_NAMES
    assert model.threshold == story.DEFAULT_PARAMS.join_threshold
    assert set(model.meta["story_files"]) and model.meta["files"]


def test_idf_round_trip(tmp_path):
    idf = Idf.from_texts(["a b c", "b c", "c"], min_df=1)
    idf.save(tmp_path / "idf.json.gz")
    idf.save(tmp_path / "again.json.gz")
    assert Idf.load(tmp_path / "idf.json.gz") == idf
    assert (tmp_path / "idf.json.gz").read_bytes() == (tmp_path / "again.json.gz").read_bytes()


def test_signals_round_trip_and_pair_features(embedder):
    docs = [json.loads(line) for line in (DATA / "allsides_sample.jsonl").read_text().splitlines()]
    arts = training.article_dicts(docs[:3])
    a, b, _ = story.featurize(arts, embedder.encode)
    back = story_pairs.Signals.from_doc(json.loads(json.dumps(a.signals.to_doc())))
    assert back.key == a.signals.key and back.names == a.signals.names and back.published == a.signals.published
    f = story_pairs.pair_features(a.signals, b.signals)
    g = story_pairs.pair_features(back, b.signals)
    assert len(f) == len(FEATURE_NAMES) and np.allclose(f, g, atol=2e-3)  # float16 embeddings
    timed = dict(zip(FEATURE_NAMES, f, strict=True))
    untimed = dict(zip(FEATURE_NAMES, story_pairs.pair_features(a.signals, b.signals, timed=False), strict=True))
    assert timed["has_time"] == 1.0 and 0 < timed["time_near"] <= 1
    assert untimed["has_time"] == untimed["time_near"] == 0.0


def test_same_story_pairs_score_higher_than_same_subject_pairs(embedder):
    docs = [json.loads(line) for line in (DATA / "allsides_sample.jsonl").read_text().splitlines()]
    feats = story.featurize(training.article_dicts(docs), embedder.encode)
    X = training.pair_matrix(feats, story_pairs.default_idf(), timed=False)
    y = training.pair_labels(docs)
    p = story_pairs.default_model().proba(X)
    assert p[y == 1].mean() > 0.7 > 0.2 > p[y == 0].mean()


def test_real_rates_are_what_the_timed_evaluation_sees():
    stamps = ["2021-01-01T00:00:00Z", "2021-01-01T10:00:00Z", "2021-01-01T20:00:00Z", "2021-01-03T00:00:00Z"]
    # File order differs from publication order: the rate is counted in publication order.
    records = [{"published": stamps[i]} for i in (2, 0, 3, 1)]
    X = np.zeros((6, len(FEATURE_NAMES)))
    rate = training.real_rates(X, records)[:, FEATURE_NAMES.index("stream_rate")]
    # Arrival ranks: file rows 1, 3, 0, 2 (00h, 10h, 20h, +2 days); the newer article of each pair sees the
    # articles published within a day before it: 0, 1, 2 and 0 of them.
    seen = {1: 0, 3: 1, 0: 2, 2: 0}
    newer = [max((i, j), key=lambda k: stamps[(2, 0, 3, 1)[k]]) for i in range(4) for j in range(i + 1, 4)]
    assert rate.tolist() == [float(seen[k]) for k in newer]


def test_busy_stream_copy_draws_rates_and_gaps_in_range():
    y = np.array([1, 0, 0, 1] * 50)
    X = training.stream_gaps(np.ones((200, len(FEATURE_NAMES))), y)
    rate = X[:, FEATURE_NAMES.index("stream_rate")]
    assert rate.min() >= training.STREAM_RATES[0] and rate.max() <= training.STREAM_RATES[1]
    near = X[:, FEATURE_NAMES.index("time_near")]
    assert (near[y == 1] == 1).all() and (near[y == 0] < 1).all()


def test_a_model_for_other_features_is_refused(tmp_path):
    with pytest.raises(ValueError, match="do not match"):
        PairModel(booster=None, meta={"features": ["lead_cos"], "threshold": 0.5})


def test_story_score_is_the_mean_of_the_best_members():
    assert story_pairs.story_score(np.array([])) == 0.0
    probs = np.array([0.9, 0.1, 0.8, 0.7, 0.95, 0.85, 0.0])
    assert story_pairs.story_score(probs) == pytest.approx(np.mean([0.95, 0.9, 0.85, 0.8, 0.7]))


def test_training_is_deterministic_and_writes_a_loadable_model(tmp_path, embedder, capsys):
    args = ["--ecb", str(DATA / "ecbplus_sample.jsonl"), "--allsides", str(DATA / "allsides_sample.jsonl"),
            "--background", str(DATA / "topic_sample.csv"), str(DATA / "geo_sample.jsonl")]
    assert training.main([*args, "--out-dir", str(tmp_path / "a")]) == 0
    assert training.main([*args, "--out-dir", str(tmp_path / "b")]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # ECB+ once; AllSides without times, as a busy live stream and at its real rate.
    assert summary["pairs"] == 66 + 3 * 153 and summary["positive_pairs"] == 12 + 3 * 18
    onnx_file = story_pairs.MODEL_FILE.replace(".txt", ".onnx")
    for name in (story_pairs.MODEL_FILE, story_pairs.MODEL_META, story_pairs.IDF_FILE, onnx_file):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    model = PairModel.load(tmp_path / "a" / story_pairs.MODEL_FILE, tmp_path / "a" / story_pairs.MODEL_META)
    assert isinstance(model.booster, story_pairs.OnnxTrees)
    booster = PairModel.load(tmp_path / "a" / story_pairs.MODEL_FILE, tmp_path / "a" / story_pairs.MODEL_META,
                             backend="lightgbm")
    X = np.random.default_rng(0).random((500, len(FEATURE_NAMES)))
    assert model.proba(X).shape == (500,)
    assert np.abs(model.proba(X) - booster.proba(X)).max() < 1e-5  # the ONNX form is the same trees


def test_shipped_onnx_model_is_the_shipped_booster():
    base = Path(story_pairs.__file__).resolve().parent.parent / "resources"
    onnx = PairModel.load(base / story_pairs.MODEL_FILE, base / story_pairs.MODEL_META)
    booster = PairModel.load(base / story_pairs.MODEL_FILE, base / story_pairs.MODEL_META, backend="lightgbm")
    assert isinstance(onnx.booster, story_pairs.OnnxTrees)
    X = np.random.default_rng(1).random((2000, len(FEATURE_NAMES)))
    X[:, FEATURE_NAMES.index("has_time")] = np.round(X[:, FEATURE_NAMES.index("has_time")])
    X[:, FEATURE_NAMES.index("stream_rate")] = np.random.default_rng(2).choice([-1.0, 3, 12, 40, 500], len(X))
    assert np.abs(onnx.proba(X) - booster.proba(X)).max() < 1e-5


def test_training_rejects_bad_files(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{broken\n")
    assert training.main(["--ecb", str(bad), "--allsides", str(bad), "--background", str(bad),
                          "--out-dir", str(tmp_path)]) == 2
    assert "not JSON" in capsys.readouterr().err


def test_merged_boosters_score_the_mean_of_their_log_odds(tmp_path):
    import lightgbm

    rng = np.random.default_rng(0)
    X = rng.random((2000, len(FEATURE_NAMES)))
    y = (X[:, 0] + 0.5 * X[:, 1] ** 2 + 0.3 * rng.normal(size=len(X)) > 0.8).astype(int)
    data = lightgbm.Dataset(X, label=y, feature_name=list(FEATURE_NAMES), free_raw_data=False)
    params = {**training.LGBM_PARAMS, "min_data_in_leaf": 20}
    parts = [lightgbm.train({**params, "seed": s}, data, num_boost_round=25) for s in (0, 1, 2)]
    merged = training.merge_boosters(parts)
    assert merged.num_trees() == 75
    X_new = rng.random((300, len(FEATURE_NAMES)))
    want = np.mean([b.predict(X_new, raw_score=True) for b in parts], axis=0)
    assert np.abs(merged.predict(X_new, raw_score=True) - want).max() < 1e-9
    # the seeds differ, so the mean is not any one booster
    assert min(np.abs(b.predict(X_new, raw_score=True) - want).max() for b in parts) > 1e-3
    model = PairModel(merged, {"features": list(FEATURE_NAMES), "threshold": 0.6})
    model.save(tmp_path / "m.txt", tmp_path / "m.json")
    onnx = PairModel.load(tmp_path / "m.txt", tmp_path / "m.json")
    text = PairModel.load(tmp_path / "m.txt", tmp_path / "m.json", backend="lightgbm")
    assert isinstance(onnx.booster, story_pairs.OnnxTrees)
    want_p = 1 / (1 + np.exp(-want))
    assert np.abs(text.proba(X_new) - want_p).max() < 1e-9
    assert np.abs(onnx.proba(X_new) - want_p).max() < 1e-5
    assert training.merge_boosters(parts[:1]) is parts[0]

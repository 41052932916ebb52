"""Topic classification: text cleaning, the shipped world head, operator topics, training and evaluation."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bot.eval import classify
from bot.pipeline import topic
from bot.pipeline.topic import TopicClassifier, TopicHead, TopicSpec
from bot.train import topic_head as training

DATA = Path(__file__).parent / "data"
SAMPLE = DATA / "topic_sample.csv"


@pytest.fixture(scope="session")
def embedder():  # noqa: ANN201
    from summarizer.embedding import Embedder

    return Embedder()


@pytest.fixture(scope="session")
def sample_head(embedder) -> TopicHead:  # noqa: ANN001
    """A head trained on the hand-written sample (no nested CV: it is only 25 rows)."""
    return training.train(SAMPLE, embedder, "1", evaluate=False)


def test_clean_text_undoes_corpus_artefacts():
    raw = r"Oil Tops \$50\\Prices rose past #36;50 as Dubai #39;s output fell &amp; stocks slipped"
    want = "Oil Tops $50 Prices rose past $50 as Dubai's output fell & stocks slipped"
    assert topic.undo_feed_escapes(raw) == want


def test_article_text_for_topic_is_title_and_a_short_lead():
    body = "Kyiv, Ukraine. " + "The talks went on for hours. " * 40
    text = topic.article_text_for_topic("Talks in Kyiv", "Talks in Kyiv\n" + body, max_chars=120)
    assert text.startswith("Talks in Kyiv. Kyiv, Ukraine.") and len(text) <= len("Talks in Kyiv. ") + 120
    assert text.endswith(".")
    assert topic.article_text_for_topic("", "Only a body.") == "Only a body."
    assert topic.article_text_for_topic("Only a title?", "") == "Only a title?"


def test_feed_flag_shifts_builtin_topics_without_forcing_them():
    raised = topic.with_feed_override({"geopolitics": 0.2, "world": 0.2, "energy": 0.7}, True)
    assert raised["energy"] == 0.7, "operator topics get no prior"
    assert 0.2 < raised["geopolitics"] == raised["world"] < 0.5, "a bounded shift, not a verdict"
    assert topic.with_feed_override({"geopolitics": 0.02}, True)["geopolitics"] < 0.1
    assert topic.with_feed_override({"geopolitics": 0.4}, True)["geopolitics"] > 0.5
    scores = {"world": 0.2}
    same = topic.with_feed_override(scores, False)
    assert same == scores and same is not scores


def test_shipped_head_loads_with_provenance():
    head = topic.load_default_head()
    assert head.positive == "1" and head.classes == ("1", "2", "3", "4")
    assert head.meta["data_file"] == "ag_news_dev.csv.gz" and len(head.meta["data_sha256"]) == 64
    assert head.embeddings.shape == (head.meta["n"], 384) and 0 < head.threshold < 1
    resources = Path(topic.__file__).parent.parent / "resources"
    assert "research and non-commercial" in (resources / "PROVENANCE.md").read_text(encoding="utf-8")


def test_world_head_separates_world_news_from_the_rest(embedder):
    clf = TopicClassifier(embedder)
    texts = [topic.article_text_for_topic(t, d) for t, d in [
        ("Russia warns NATO against sending troops to Ukraine",
         "Foreign Minister Lavrov said Moscow would not tolerate any NATO military presence in Ukraine."),
        ("UN envoy arrives in Khartoum for ceasefire talks",
         "The envoy will meet army and paramilitary leaders."),
        ("Striker's hat-trick sinks league leaders", "The visitors were beaten 3-1 in a rain-soaked match."),
        ("Chipmaker beats quarterly earnings forecasts", "Shares rose 8% after revenue topped expectations."),
    ]]
    scores = [s["world"] for s in clf.score_many(texts)]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert min(scores[:2]) > 0.5 > max(scores[2:])
    assert clf.score_many([]) == []


def test_both_heads_share_one_count_of_the_cue_words(embedder, monkeypatch):
    """The geopolitics and world heads read the same lexicon: score_many counts its cue words once a batch,
    and each head scores exactly as it does alone."""
    clf = TopicClassifier(embedder)
    assert clf.head.lexicon is clf.geo_head.lexicon is topic.load_lexicon()
    texts = [topic.article_text_for_topic("Iran and the US resume nuclear talks in Vienna", "Envoys met on Monday."),
             topic.article_text_for_topic("Striker's hat-trick sinks league leaders", "A 3-1 win away.")]
    X = embedder.encode(texts)
    alone = (clf.geo_head.score(clf.geo_embedder.encode(texts), texts), clf.head.score(X, texts))
    calls: list[int] = []
    counted = topic.CueLexicon.features

    def counting(self, batch):  # noqa: ANN001, ANN202
        calls.append(len(batch))
        return counted(self, batch)

    monkeypatch.setattr(topic.CueLexicon, "features", counting)
    scores = clf.score_many(texts)
    assert calls == [2], "one count of the cue words for both heads"
    assert np.allclose([s["geopolitics"] for s in scores], alone[0], atol=1e-4)
    assert np.allclose([s["world"] for s in scores], alone[1], atol=1e-4)


def test_operator_topic_is_zero_shot_with_keywords(embedder):
    energy = TopicSpec("energy", "Energy markets: oil, gas, electricity prices, OPEC output, power grids.",
                       examples=("OPEC+ agrees to cut oil output",), keywords=("OPEC", "LNG"))
    clf = TopicClassifier(embedder, topics=[energy, TopicSpec("world", "ignored: the head scores world"),
                                            TopicSpec("geopolitics", "ignored: the head scores it")])
    assert clf.names == ["geopolitics", "world", "energy"]
    oil, lng, sport = clf.score_many(["Oil prices jump as OPEC ministers agree deeper production cuts",
                                      "Qatar signs a long-term LNG supply deal",
                                      "Striker's hat-trick sinks league leaders"])
    assert oil["energy"] > 0.5 > sport["energy"]
    assert lng["energy"] >= topic.KEYWORD_BONUS
    assert topic.zero_shot_score(0.0, 0) == 0.0 and topic.zero_shot_score(0.9, 3) == 1.0


def test_head_save_load_round_trip(tmp_path, sample_head, embedder):
    sample_head.save(tmp_path / "h.npz", tmp_path / "h.json")
    back = TopicHead.load(tmp_path / "h.npz", tmp_path / "h.json")
    texts = ["Rebels seize border town", "Quarterly profit doubles"]
    X = embedder.encode(texts)
    assert back.meta == sample_head.meta and back.threshold == sample_head.threshold
    assert back.svm_gamma == sample_head.svm_gamma and back.lexicon is not None
    assert np.allclose(back.proba(X, texts), sample_head.proba(X, texts), atol=1e-3)  # embeddings as float16
    with pytest.raises(ValueError, match="texts for"):
        back.proba(X, texts[:1])


def test_head_without_svm_still_loads_and_scores_as_before(tmp_path, sample_head, embedder):
    """Heads saved before the SVM and cue words: the mean of the kNN and LR probabilities over embeddings."""
    rng = np.random.default_rng(0)
    coef, intercept = rng.normal(size=(4, 384)).astype(np.float32), np.zeros(4, np.float32)
    old = TopicHead(embeddings=sample_head.embeddings, labels=sample_head.labels, classes=sample_head.classes,
                    positive="1", coef=coef, intercept=intercept, k=3, threshold=0.4)
    old.save(tmp_path / "h.npz", tmp_path / "h.json")
    assert "svm_gamma" not in json.loads((tmp_path / "h.json").read_text())
    back = TopicHead.load(tmp_path / "h.npz", tmp_path / "h.json")
    assert back.svm_support is None and back.lexicon is None
    X = embedder.encode(["Rebels seize border town", "Quarterly profit doubles"])
    knn = topic.knn_vote(X, back._unit_embeddings(), back.labels, 3, 4)[:, 0]
    lr = topic.softmax(X @ coef.T + intercept, axis=1)[:, 0]
    assert np.allclose(back.proba(X), (knn + lr) / 2, atol=1e-5)


def test_svm_pair_decisions_match_scikit_learn(sample_head):
    """fit_svm checks itself against SVC.decision_function; here for every choice of the positive class."""
    from bot.pipeline.topic import load_lexicon

    F = training.model_input(sample_head.embeddings, ["a"] * len(sample_head.labels), load_lexicon())
    for pos in range(4):
        support, coef, intercept, gamma = training.fit_svm(F, sample_head.labels, pos, 4, 3.0, 1.0)
        assert coef.shape == (len(support), 3) and intercept.shape == (3,) and gamma > 0
    y2 = (sample_head.labels == 0).astype(int)
    for pos in (0, 1):
        training.fit_svm(F, y2, pos, 2, 3.0, 1.0)


def test_sample_head_generalises_to_unseen_headlines(sample_head, embedder):
    X = embedder.encode(["Peace talks between the two countries collapse over border dispute",
                         "Goalkeeper saves two penalties in cup final shootout"])
    world, sport = sample_head.score(X, ["Peace talks between the two countries collapse over border dispute",
                                         "Goalkeeper saves two penalties in cup final shootout"])
    assert world > 0.5 > sport


def test_training_rejects_bad_csv(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("label,text\n1,hello\n")
    with pytest.raises(ValueError, match="class,title,description"):
        training.load_labelled_csv(bad)
    one_class = tmp_path / "one.csv"
    one_class.write_text("class,title,description\n2,a,b\n2,c,d\n")
    with pytest.raises(ValueError, match="positive class"):
        training.fit_head(np.eye(2, 384, dtype=np.float32), np.array(["2", "2"]), "1", k=1, C=1.0)


def test_eval_classify_scores_unseen_file_with_the_head(tmp_path, sample_head, embedder):
    rows = SAMPLE.read_text().splitlines()
    unseen = tmp_path / "unseen.csv.gz"
    with gzip.open(unseen, "wt", encoding="utf-8") as fh:
        fh.write("\n".join([
            rows[0],
            "1,Troops fire on protesters in capital as crisis deepens,The army imposed a curfew.",
            "1,Prime minister survives no-confidence vote in parliament abroad,Coalition partners "
            "backed the foreign government.",
            "2,Champions crash out of the cup,The holders lost on penalties.",
            "3,Bank raises rates by half a point,Markets had expected a smaller move."]) + "\n")
    result = classify.run(unseen, head=sample_head, embedder=embedder)
    assert set(result) == {"n", "precision", "recall", "f1", "accuracy"} and result["n"] == 4
    assert all(0.0 <= result[k] <= 1.0 for k in ("precision", "recall", "f1", "accuracy"))


def test_eval_classify_cross_validates_the_training_file(tmp_path, sample_head, embedder, capsys):
    copy = tmp_path / "same.csv"
    shutil.copy(SAMPLE, copy)  # same bytes, same sha256, other name
    result = classify.run(copy, head=sample_head, embedder=embedder, folds=3)
    assert "cross-validation" in capsys.readouterr().err
    assert result["n"] == 25 and 0.0 <= result["f1"] <= 1.0


def test_eval_classify_main_reports_bad_input(tmp_path, capsys):
    missing = tmp_path / "nope.csv"
    assert classify.main(["--data", str(missing)]) == 2
    assert "newsdigest eval classify" in capsys.readouterr().err


def test_training_command_writes_a_loadable_head(tmp_path, capsys):
    assert training.main(["--data", str(SAMPLE), "--out-dir", str(tmp_path), "--no-eval"]) == 0
    printed = json.loads(capsys.readouterr().out)
    head = topic.load_head(tmp_path)
    assert printed["data_sha256"] == training.sha256_of(SAMPLE) == head.meta["data_sha256"]
    assert head.embeddings.shape == (25, 384)

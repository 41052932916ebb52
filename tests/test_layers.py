"""Layering rules (docs/architecture.md), checked in a fresh interpreter: what a module may pull in."""

from __future__ import annotations

import subprocess
import sys

import pytest

# module -> third-party packages it must not load, directly or through the modules it imports
RULES = {
    "bot.clock": ("httpx", "sqlalchemy", "telegram", "discord", "torch"),
    "bot.urls": ("httpx", "sqlalchemy", "telegram", "discord", "torch"),
    "bot.settings": ("httpx", "telegram", "discord", "torch"),
    # Alembic loads only when the schema is behind (bot/storage/db.upgrade).
    "bot.storage.store": ("httpx", "telegram", "discord", "torch", "alembic"),
    "bot.storage.chat_store": ("httpx", "telegram", "discord", "torch", "alembic"),
    "bot.pipeline.story": ("telegram", "discord", "sqlalchemy", "httpx"),
    # What a spawned parse worker imports (bot.runner.ParsePool): no HTTP client, storage or page extraction.
    "bot.pipeline.entry": ("telegram", "discord", "sqlalchemy", "httpx", "trafilatura", "numpy"),
    "bot.worker_init": ("telegram", "discord", "sqlalchemy", "httpx", "trafilatura", "numpy", "bot.pipeline"),
    "bot.pipeline.digest": ("telegram", "discord", "sqlalchemy", "httpx"),
    "bot.pipeline.delivery": ("telegram", "discord", "sqlalchemy", "httpx"),
    "bot.pipeline.followups": ("telegram", "discord", "sqlalchemy", "httpx", "numpy"),
    "bot.pipeline.alerts": ("telegram", "discord", "sqlalchemy", "httpx"),
    # Pages are extracted in the parse workers: trafilatura stays out of the service process.
    "bot.runner": ("telegram", "discord", "trafilatura", "numpy"),
    # What `newsdigest run` imports before its first poll: the models load in a thread once the poll is out, and
    # their libraries (numpy, scipy through datasketch, onnxruntime) would hold the interpreter ~1 s.
    "bot.app": ("telegram", "discord", "trafilatura", "numpy", "datasketch", "summarizer", "onnxruntime"),
    "bot.summaries": ("telegram", "discord", "trafilatura", "numpy", "datasketch", "summarizer", "onnxruntime"),
    "bot.processing": ("telegram", "discord"),
    "bot.chat.commands": ("telegram", "discord"),
    "bot.chat.runtime": ("telegram", "discord"),
    "summarizer": ("bot",),
}


@pytest.mark.parametrize("module", sorted(RULES))
def test_module_does_not_load_forbidden_packages(module: str) -> None:
    forbidden = RULES[module]
    code = (f"import sys, importlib; importlib.import_module({module!r}); "
            f"print(' '.join(sorted({{p for m in sys.modules for p in (m.split('.')[0], '.'.join(m.split('.')[:2]))}} & {set(forbidden)!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "", f"{module} loads {out.stdout.strip()}"


def test_the_default_service_path_runs_without_torch_lightgbm_or_scikit_learn() -> None:
    """Embedding, topic heads, the pair model and the extractive summarizer at work: the heavy training-time
    libraries stay out of the service process (issue 12: each costs 50-300 MB resident). scipy is not among
    them: datasketch (MinHash and LSH, the library made for the job) imports it."""
    code = """
import sys
import numpy as np
from summarizer import Summarizer
from summarizer.embedding import Embedder
from bot.pipeline import story, story_pairs, topic
emb = Embedder()
texts = ["Iran and the US resume talks in Vienna on the nuclear deal.", "The Premier League season starts."]
X = emb.encode(texts)
topic.TopicClassifier(emb).score_many(texts)
feats = story.featurize([{"key": str(i), "title": t, "text": t} for i, t in enumerate(texts)], emb.encode)
story_pairs.default_model().proba(np.asarray([story_pairs.pair_features(feats[0].signals, feats[1].signals)]))
Summarizer(embedder=emb).summarize(texts[0] + " " + texts[0].replace("Iran", "Tehran"))
print(" ".join(sorted({m.split(".")[0] for m in sys.modules} & {"torch", "lightgbm", "sklearn",
                                                             "sentence_transformers", "transformers"})))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=True)
    assert out.stdout.strip() == "", f"the service path loads {out.stdout.strip()}"

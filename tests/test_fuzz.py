"""Fuzzing in CI: every target of bench/fuzz.py for a fixed seed and a bounded budget (about a minute in all),
plus regression tests for what fuzzing found."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from bot.chat.commands import parse_command
from bot.chat.render_telegram import TelegramRenderer
from bot.errors import ConfigError
from bot.ports import Button, Reply, para
from bot.settings import load_feeds_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import fuzz  # noqa: E402

ENGINE = "atheris" if importlib.util.find_spec("atheris") else "random"
# Inputs per target, sized from measured rates so that each takes a few seconds; the time cap bounds slow machines.
RUNS = {"entry": 150, "article": 1500, "opml": 20000, "feeds_file": 3000, "commands": 3000,
        "render_telegram": 2000, "render_discord": 2000}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("target", fuzz.TARGETS)
def test_target_only_returns_or_raises_our_errors(target: str, tmp_path: Path) -> None:
    (result,) = fuzz.fuzz_all([target], runs=RUNS[target], seconds=7, seed=1, engine=ENGINE, artifacts=tmp_path,
                              timeout=120)
    assert not result["crashed"], result["output"][-4000:]
    assert result["executions"] > 0, result


def test_every_target_has_a_budget() -> None:
    assert set(RUNS) == set(fuzz.TARGETS)


def test_seeds_run_clean() -> None:
    """The seed corpora themselves (real fixtures) never crash a target."""
    for name in fuzz.TARGETS:
        target = fuzz.make_target(name)
        for data in fuzz.seeds(name):
            target(data)


# Regressions found by fuzzing -------------------------------------------------------------------------------


def test_feeds_file_url_with_an_escaped_lone_surrogate_is_a_config_error(tmp_path: Path) -> None:
    """YAML's "\\ud800" escape made a URL that passed validation and crashed the database insert."""
    path = tmp_path / "feeds.yaml"
    path.write_text('feeds:\n  - url: "https://example.org/\\ud800x"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"feeds\[0\]\.url: .*lone surrogates"):
        load_feeds_file(path)


def test_command_text_with_lone_surrogates_parses_to_storable_arguments() -> None:
    """'/removefeed \\udcff' reached the database and failed there ("Something went wrong")."""
    name, args = parse_command("/removefeed \udcff\ud800 6h")
    assert name == "removefeed"
    assert all(a.encode("utf-8") for a in args) and args[-1] == "6h"


def test_telegram_button_labels_lose_lone_surrogates() -> None:
    """A label with a lone surrogate (a topic name from an escaped YAML string) made an unsendable message."""
    (msg,) = TelegramRenderer().render_reply(Reply(blocks=(para("Topics"),),
                                                   buttons=((Button("world\ud800 😀", "t:world"),),)))
    assert msg.buttons[0][0].label == "world 😀"
    assert msg.to_payload()["buttons"][0][0][0].encode("utf-8")

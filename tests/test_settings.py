"""Settings and feeds-file validation: every problem names the source, the key and what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.errors import ConfigError
from bot.settings import load_feeds_file, load_settings, parse_admins, parse_duration

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_without_environment() -> None:
    s = load_settings({})
    assert s.database_url.startswith("sqlite:///") and s.feeds_file == Path("feeds.yaml")
    assert not s.allow_private_urls and s.request_timeout_s == 20 and s.max_response_bytes == 10 * 1024 * 1024
    assert s.telegram_bot_token is None and s.telegram_api_base_url == "https://api.telegram.org"


def test_empty_feeds_file_variable_means_no_file() -> None:
    assert load_settings({"NEWSDIGEST_FEEDS_FILE": ""}).feeds_file is None
    assert load_feeds_file(None).feeds == ()


@pytest.mark.parametrize("env,key", [
    ({"NEWSDIGEST_ALLOW_PRIVATE_URLS": "maybe"}, "NEWSDIGEST_ALLOW_PRIVATE_URLS"),
    ({"NEWSDIGEST_REQUEST_TIMEOUT": "-1"}, "NEWSDIGEST_REQUEST_TIMEOUT"),
    ({"NEWSDIGEST_MAX_RESPONSE_BYTES": "ten"}, "NEWSDIGEST_MAX_RESPONSE_BYTES"),
    ({"NEWSDIGEST_DATABASE_URL": "data.db"}, "NEWSDIGEST_DATABASE_URL"),
    ({"NEWSDIGEST_ADMINS": "telegram:abc"}, "NEWSDIGEST_ADMINS"),
    ({"NEWSDIGEST_ADMINS": "slack:1"}, "NEWSDIGEST_ADMINS"),
    ({"TELEGRAM_API_BASE_URL": "ftp://x"}, "TELEGRAM_API_BASE_URL"),
    ({"NEWSDIGEST_SUMMARIZER_PRECISION": "fp8"}, "NEWSDIGEST_SUMMARIZER_PRECISION"),
])
def test_bad_environment_names_the_variable(env: dict, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert info.value.key == key and key in str(info.value)


def test_admins_parse() -> None:
    assert parse_admins("telegram:123, discord:987") == {"telegram:123", "discord:987"}


@pytest.mark.parametrize("text,seconds", [("90", 90), ("15m", 900), ("6h", 21600), ("2d", 172800), (30, 30)])
def test_durations(text, seconds) -> None:  # noqa: ANN001
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["0", "-5m", "soon", "5y", True])
def test_bad_durations(bad) -> None:  # noqa: ANN001
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_shipped_feeds_file_is_valid() -> None:
    f = load_feeds_file(ROOT / "feeds.yaml")
    enabled = [x for x in f.feeds if x.enabled]
    assert 15 <= len(enabled) <= 25
    assert all(not x.enabled for x in f.feeds if x.state_media), "state media must be opt-in"
    assert any(x.date_fallback for x in f.feeds) and any((x.timeout_s or 0) > 20 for x in f.feeds)
    assert f.digest.topics == ("geopolitics",)
    assert not {"world", "geopolitics"} & {t.name for t in f.topics}, "built-in topics are not redefined there"


@pytest.mark.parametrize("content,key", [
    ("feeds: [{name: x}]", "feeds[0].url"),
    ("feeds: [{url: 'ftp://x/feed'}]", "feeds[0].url"),
    ("feeds: [{url: 'https://a/f', interval: soon}]", "feeds[0].interval"),
    ("feeds: [{url: 'https://a/f', timeout: 0}]", "feeds[0].timeout"),
    ("feeds: [{url: 'https://a/f', interval: 0.5s}]", "feeds[0].interval"),
    ("feeds: [{url: 'https://a/f', interval: 30s}]", "feeds[0].interval"),
    ("feeds: [{url: 'https://a/f', name: [a]}]", "feeds[0].name"),
    ("feeds: [{url: 'https://a/f', region: 5}]", "feeds[0].region"),
    ("defaults: 5", "defaults"),
    ("defaults: [interval]", "defaults"),
    ("defaults: {interval: 0.5s}", "defaults.interval"),
    ("defaults: {intervall: 5m}", "defaults.intervall"),
    ("digest: 5", "digest"),
    ("digest: {max_storys: 5}", "digest.max_storys"),
    ("digest: {summary_cooldown: 0}", "digest.summary_cooldown"),
    ("digest: {min_topic_score: true}", "digest.min_topic_score"),
    ("topics: [{name: x, keyword: [a]}]", "topics[0].keyword"),
    ("topics: [5]", "topics[0]"),
    ("feeds: [{url: 'https://a/f', colour: red}]", "feeds[0].colour"),
    ("feeds: [{url: 'https://a/f'}, {url: 'https://a/f'}]", "feeds[1].url"),
    ("feeds: [{url: 'https://a/f', enabled: 'yes'}]", "feeds[0].enabled"),
    ("digest: {times: ['25:00']}", "digest.times"),
    ("digest: {timezone: Mars/Olympus}", "digest.timezone"),
    ("digest: {max_stories: 0}", "digest.max_stories"),
    ("topics: [{description: x}]", "topics[0].name"),
    ("feeds: {url: x}", "feeds"),
    ("colour: red", "colour"),
    ("feeds: [url: x", "line 1"),
])
def test_bad_feeds_file_names_file_and_key(tmp_path: Path, content: str, key: str) -> None:
    p = tmp_path / "feeds.yaml"
    p.write_text(content)
    with pytest.raises(ConfigError) as info:
        load_feeds_file(p)
    assert info.value.source == str(p) and info.value.key == key, str(info.value)


def test_missing_feeds_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_feeds_file(tmp_path / "nope.yaml")


@pytest.mark.parametrize("content,key,suggestion", [
    ("digest: {max_storys: 5}", "digest.max_storys", "max_stories"),
    ("digest: {timezon: UTC}", "digest.timezon", "timezone"),
    ("feeds: [{url: 'https://a/f', intervall: 5m}]", "feeds[0].intervall", "interval"),
    ("defaults: {intervall: 5m}", "defaults.intervall", "interval"),
    ("topics: [{name: x, keyword: [a]}]", "topics[0].keyword", "keywords"),
    ("feed: []", "feed", "feeds"),
])
def test_misspelt_key_is_refused_with_a_suggestion(tmp_path: Path, content: str, key: str, suggestion: str) -> None:
    p = tmp_path / "feeds.yaml"
    p.write_text(content)
    with pytest.raises(ConfigError) as info:
        load_feeds_file(p)
    assert info.value.key == key and f"did you mean '{suggestion}'" in info.value.problem, str(info.value)


def test_fractional_intervals_round_to_whole_seconds(tmp_path: Path) -> None:
    p = tmp_path / "feeds.yaml"
    p.write_text("defaults: {interval: 1.5m}\nfeeds: [{url: 'https://a/f'}, {url: 'https://a/g', interval: 90.6}]")
    assert [f.interval_s for f in load_feeds_file(p).feeds] == [90, 91]


@pytest.mark.parametrize("content", ["defaults: 5", "digest: {max_storys: 5}",
                                     "feeds: [{url: 'https://a/f', interval: 0.5s}]"])
def test_bad_feeds_file_exits_2_with_one_line(tmp_path: Path, content: str) -> None:
    import os
    import subprocess
    import sys

    p = tmp_path / "feeds.yaml"
    p.write_text(content)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEWSDIGEST_", "TELEGRAM_", "DISCORD_"))}
    env.update(NEWSDIGEST_FEEDS_FILE=str(p), NEWSDIGEST_DATABASE_URL=f"sqlite:///{tmp_path / 'nd.db'}",
               PYTHONPATH=str(ROOT))
    run = subprocess.run([sys.executable, "-m", "bot", "feeds", "list"], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    assert run.stderr.startswith(f"newsdigest: configuration error: {p}: ") and run.stderr.count("\n") == 1
    assert "Traceback" not in run.stderr and not (tmp_path / "nd.db").exists(), "refused before the database"

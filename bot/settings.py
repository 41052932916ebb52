"""Settings from the environment and feeds.yaml, validated at start into frozen objects.

Every problem is a ConfigError naming the source (variable or file), the key and what is wrong.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import yaml

from bot.errors import BlockedURLError, ConfigError
from bot.models import FeedSpec
from bot.pipeline.entry import canonical_url
from bot.pipeline.feed import MIN_INTERVAL_S
from bot.urls import check_url

DEFAULT_DATABASE_URL = "sqlite:///data/newsdigest.db"
DEFAULT_FEEDS_FILE = "feeds.yaml"

# name -> (default, help); the single table of environment settings (README mirrors it).
ENV_SETTINGS: dict[str, tuple[str | None, str]] = {
    "NEWSDIGEST_DATABASE_URL": (DEFAULT_DATABASE_URL, "SQLAlchemy URL (SQLite file or postgresql+psycopg://...)"),
    "NEWSDIGEST_FEEDS_FILE": (DEFAULT_FEEDS_FILE, "feeds file; empty = no file, feeds only from the database"),
    "NEWSDIGEST_ALLOW_PRIVATE_URLS": ("0", "1 lets feed/article URLs reach loopback/private addresses"),
    "NEWSDIGEST_REQUEST_TIMEOUT": ("20", "total seconds per HTTP request"),
    "NEWSDIGEST_MAX_RESPONSE_BYTES": ("10485760", "response size cap in bytes"),
    "NEWSDIGEST_MAX_CONNECTIONS": ("32", "concurrent HTTP requests overall"),
    "NEWSDIGEST_PER_HOST_CONNECTIONS": ("2", "concurrent HTTP requests per host"),
    "NEWSDIGEST_PAUSE_AFTER_FAILURES": ("10", "consecutive failures after which a feed is paused"),
    "NEWSDIGEST_PARSE_WORKERS": ("", "feed parse processes; empty = one per core but one (1-4); 0 = parse in "
                                     "the service process (~45 MB less, no crash isolation)"),
    "NEWSDIGEST_ADMINS": ("", "bot owners, e.g. telegram:123456,discord:987654"),
    "NEWSDIGEST_SUMMARIZER_MODEL": ("", "HF seq2seq model id or path; empty = extractive default"),
    "NEWSDIGEST_SUMMARIZER_PRECISION": ("fp32", "fp32, bf16 or int8 (int8: seq2seq model on CPU)"),
    "NEWSDIGEST_MODELS_DIR": ("", "where `models download` puts models (default ~/.cache/newsdigest/models)"),
    "NEWSDIGEST_TOPIC_HEAD_DIR": ("", "a world-news head from `train classify --out-dir`; empty = the shipped one"),
    "NEWSDIGEST_GEO_ENCODER": ("mpnet", "encoder of the shipped geopolitics head: mpnet (all-mpnet-base-v2, "
                                        "F1 ~0.86) or minilm (~160 MB less resident, F1 ~0.85)"),
    "NEWSDIGEST_LOG_LEVEL": ("INFO", "DEBUG, INFO, WARNING or ERROR"),
    "NEWSDIGEST_LOG_FORMAT": ("text", "text, or json: one object per line with the feed/article/story/chat ids"),
    "NEWSDIGEST_METRICS_PORT": ("", "`run` serves /metrics, /healthz and /readyz on this port; empty = off"),
    "NEWSDIGEST_METRICS_HOST": ("127.0.0.1", "address the metrics port listens on (0.0.0.0: every interface)"),
    "TELEGRAM_BOT_TOKEN": ("", "starts the Telegram adapter when set"),
    "TELEGRAM_API_BASE_URL": ("https://api.telegram.org", "root of the Bot API server"),
    "DISCORD_BOT_TOKEN": ("", "starts the Discord adapter when set"),
}

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_TIME_OF_DAY = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def parse_duration(value: Any) -> float:
    """'90', '15m', '6h', '2d' -> seconds; raises ValueError."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 15m, 6h or 2d")
    if isinstance(value, int | float):
        if value <= 0:
            raise ValueError("must be positive")
        return float(value)
    m = _DURATION.match(str(value))
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"{value!r} is not a duration like 15m, 6h or 2d")
    return float(m.group(1)) * _UNITS[m.group(2)]


@functools.cache
def _zones_by_folded_name() -> dict[str, str]:
    return {name.casefold(): name for name in available_timezones()}


def canonical_timezone(name: str) -> str | None:
    """An IANA time zone name in its canonical spelling, whatever its case ('europe/berlin'); None if unknown."""
    name = name.strip()
    found = _zones_by_folded_name().get(name.casefold())
    if found is not None:
        return found
    try:
        ZoneInfo(name)  # a zone that is loadable but not listed
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None
    return name


@dataclass(frozen=True)
class TopicSpecConfig:
    """A topic as written in feeds.yaml."""

    name: str
    description: str
    examples: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()


@dataclass(frozen=True)
class DigestDefaults:
    """Defaults for a new subscription."""

    times: tuple[str, ...] = ("08:00", "18:00")
    every_hours: int | None = None
    timezone: str = "UTC"
    max_stories: int = 8
    min_topic_score: float = 0.5
    topics: tuple[str, ...] = ("geopolitics",)
    summary_cooldown_s: float = 60.0


@dataclass(frozen=True)
class FeedsFile:
    """The parsed feeds file."""

    path: Path | None
    feeds: tuple[FeedSpec, ...] = ()
    topics: tuple[TopicSpecConfig, ...] = ()
    digest: DigestDefaults = field(default_factory=DigestDefaults)


@dataclass(frozen=True)
class Settings:
    """Validated process settings."""

    database_url: str
    feeds_file: Path | None
    allow_private_urls: bool
    request_timeout_s: float
    max_response_bytes: int
    max_connections: int
    per_host_connections: int
    pause_after_failures: int
    admins: frozenset[str]
    summarizer_model: str | None
    summarizer_precision: str
    topic_head_dir: Path | None
    log_level: str
    telegram_bot_token: str | None
    telegram_api_base_url: str
    discord_bot_token: str | None
    log_format: str = "text"
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    parse_workers: int | None = None  # None: ParsePool's default for the machine
    geo_encoder: str = "mpnet"


def _bool(name: str, raw: str) -> bool:
    low = raw.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(name, name, f"expected 1 or 0, got {raw!r}")


def _int(name: str, raw: str, minimum: int = 1) -> int:
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(name, name, f"expected a whole number, got {raw!r}") from exc
    if value < minimum:
        raise ConfigError(name, name, f"must be at least {minimum}, got {value}")
    return value


def _float(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(name, name, f"expected a number of seconds, got {raw!r}") from exc
    if value <= 0:
        raise ConfigError(name, name, f"must be positive, got {raw!r}")
    return value


def _port(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(name, name, f"expected a TCP port number, got {raw!r}") from exc
    if not 1 <= value <= 65535:
        raise ConfigError(name, name, f"must be a TCP port from 1 to 65535, got {value}")
    return value


def parse_admins(raw: str, source: str = "NEWSDIGEST_ADMINS") -> frozenset[str]:
    """'telegram:1,discord:2' -> {'telegram:1', 'discord:2'}; validates platform and id."""
    out = set()
    for item in filter(None, (p.strip() for p in raw.split(","))):
        platform, _, ident = item.partition(":")
        if platform not in ("telegram", "discord") or not ident.lstrip("-").isdigit():
            raise ConfigError(source, source, f"{item!r} is not platform:id (platform telegram or discord)")
        out.add(f"{platform}:{ident}")
    return frozenset(out)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the environment."""
    env = os.environ if env is None else env

    def get(name: str) -> str:
        default = ENV_SETTINGS[name][0] or ""
        return env.get(name, default)

    db = get("NEWSDIGEST_DATABASE_URL").strip() or DEFAULT_DATABASE_URL
    if "://" not in db:
        raise ConfigError("NEWSDIGEST_DATABASE_URL", "NEWSDIGEST_DATABASE_URL",
                          f"{db!r} is not a SQLAlchemy URL (e.g. sqlite:///data/newsdigest.db)")
    feeds_raw = env.get("NEWSDIGEST_FEEDS_FILE", DEFAULT_FEEDS_FILE)
    level = get("NEWSDIGEST_LOG_LEVEL").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError("NEWSDIGEST_LOG_LEVEL", "NEWSDIGEST_LOG_LEVEL", f"unknown level {level!r}")
    precision = get("NEWSDIGEST_SUMMARIZER_PRECISION").strip().lower() or "fp32"
    if precision not in ("fp32", "bf16", "int8"):
        raise ConfigError("NEWSDIGEST_SUMMARIZER_PRECISION", "NEWSDIGEST_SUMMARIZER_PRECISION",
                          f"expected fp32, bf16 or int8, got {precision!r}")
    log_format = get("NEWSDIGEST_LOG_FORMAT").strip().lower() or "text"
    if log_format not in ("text", "json"):
        raise ConfigError("NEWSDIGEST_LOG_FORMAT", "NEWSDIGEST_LOG_FORMAT", f"expected text or json, got {log_format!r}")
    port_raw = get("NEWSDIGEST_METRICS_PORT").strip()
    metrics_port = _port("NEWSDIGEST_METRICS_PORT", port_raw) if port_raw else None
    metrics_host = get("NEWSDIGEST_METRICS_HOST").strip() or "127.0.0.1"
    workers_raw = get("NEWSDIGEST_PARSE_WORKERS").strip()
    parse_workers = _int("NEWSDIGEST_PARSE_WORKERS", workers_raw, 0) if workers_raw else None
    geo_encoder = get("NEWSDIGEST_GEO_ENCODER").strip().lower() or "mpnet"
    if geo_encoder not in ("mpnet", "minilm"):
        raise ConfigError("NEWSDIGEST_GEO_ENCODER", "NEWSDIGEST_GEO_ENCODER",
                          f"expected mpnet or minilm, got {geo_encoder!r}")
    base = get("TELEGRAM_API_BASE_URL").strip().rstrip("/") or "https://api.telegram.org"
    if not base.startswith(("http://", "https://")):
        raise ConfigError("TELEGRAM_API_BASE_URL", "TELEGRAM_API_BASE_URL", f"{base!r} is not an http(s) URL")
    return Settings(
        database_url=db,
        feeds_file=Path(feeds_raw) if feeds_raw.strip() else None,
        allow_private_urls=_bool("NEWSDIGEST_ALLOW_PRIVATE_URLS", get("NEWSDIGEST_ALLOW_PRIVATE_URLS")),
        request_timeout_s=_float("NEWSDIGEST_REQUEST_TIMEOUT", get("NEWSDIGEST_REQUEST_TIMEOUT")),
        max_response_bytes=_int("NEWSDIGEST_MAX_RESPONSE_BYTES", get("NEWSDIGEST_MAX_RESPONSE_BYTES"), 1024),
        max_connections=_int("NEWSDIGEST_MAX_CONNECTIONS", get("NEWSDIGEST_MAX_CONNECTIONS")),
        per_host_connections=_int("NEWSDIGEST_PER_HOST_CONNECTIONS", get("NEWSDIGEST_PER_HOST_CONNECTIONS")),
        pause_after_failures=_int("NEWSDIGEST_PAUSE_AFTER_FAILURES", get("NEWSDIGEST_PAUSE_AFTER_FAILURES")),
        admins=parse_admins(get("NEWSDIGEST_ADMINS")),
        summarizer_model=get("NEWSDIGEST_SUMMARIZER_MODEL").strip() or None,
        summarizer_precision=precision,
        topic_head_dir=Path(get("NEWSDIGEST_TOPIC_HEAD_DIR").strip()) if get("NEWSDIGEST_TOPIC_HEAD_DIR").strip() else None,
        log_level=level,
        telegram_bot_token=get("TELEGRAM_BOT_TOKEN").strip() or None,
        telegram_api_base_url=base,
        discord_bot_token=get("DISCORD_BOT_TOKEN").strip() or None,
        log_format=log_format,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
        parse_workers=parse_workers,
        geo_encoder=geo_encoder,
    )


_TOP_KEYS = {"defaults", "feeds", "topics", "digest"}
_DEFAULTS_KEYS = {"interval"}
_FEED_KEYS = {"url", "name", "tags", "region", "language", "interval", "timeout", "enabled", "all_world",
              "date_fallback", "state_media"}
_TOPIC_KEYS = {"name", "description", "examples", "keywords"}
_DIGEST_KEYS = {"times", "every_hours", "timezone", "max_stories", "min_topic_score", "topics", "summary_cooldown"}


def _mapping(raw: Any, allowed: Collection[str], src: str, where: str, problem: str = "must be a mapping") -> dict[str, Any]:
    """`raw` when it is a mapping of known keys; else a ConfigError naming the key path and the likely key."""
    if not isinstance(raw, dict):
        raise ConfigError(src, where or "(top level)", problem)
    for key in raw:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), sorted(allowed), n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ConfigError(src, f"{where}.{key}" if where else str(key),
                              f"unknown key; {hint}(allowed: {', '.join(sorted(allowed))})")
    return raw


def _interval(value: Any, src: str, where: str) -> int:
    """A poll interval in whole seconds, at least MIN_INTERVAL_S (a shorter one would be silently raised)."""
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise ConfigError(src, where, str(exc)) from exc
    if seconds < MIN_INTERVAL_S:
        raise ConfigError(src, where, f"must be at least {MIN_INTERVAL_S:g} s (1m), got {value!r}")
    return round(seconds)


def _feed_spec(raw: Any, where: str, src: str, default_interval: int) -> FeedSpec:
    _mapping(raw, _FEED_KEYS, src, where, "each feed must be a mapping with at least 'url'")
    url = raw.get("url")
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(src, f"{where}.url", "missing or not a string")
    try:
        check_url(url.strip())
    except BlockedURLError as exc:
        raise ConfigError(src, f"{where}.url", exc.reason) from exc
    url = canonical_url(url) or url  # as the database stores it: a tracking parameter makes no second feed
    interval = _interval(raw["interval"], src, f"{where}.interval") if "interval" in raw else default_interval
    try:
        timeout = parse_duration(raw["timeout"]) if raw.get("timeout") is not None else None
    except ValueError as exc:
        raise ConfigError(src, f"{where}.timeout", str(exc)) from exc
    for key in ("name", "region", "language"):
        if raw.get(key) is not None and not isinstance(raw[key], str):
            raise ConfigError(src, f"{where}.{key}", "must be a string (quote it)")
    tags = raw.get("tags", [])
    if isinstance(tags, str):
        tags = [tags]
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise ConfigError(src, f"{where}.tags", "must be a list of strings")
    for flag in ("enabled", "all_world", "date_fallback", "state_media"):
        if flag in raw and not isinstance(raw[flag], bool):
            raise ConfigError(src, f"{where}.{flag}", "must be true or false")
    return FeedSpec(url=url.strip(), name=str(raw.get("name") or ""), tags=tuple(tags),
                    region=raw.get("region"), language=raw.get("language"), interval_s=interval,
                    timeout_s=timeout, enabled=raw.get("enabled", True), all_world=raw.get("all_world", False),
                    date_fallback=raw.get("date_fallback", False), state_media=raw.get("state_media", False))


def _digest(raw: Any, src: str) -> DigestDefaults:
    if raw is None:
        return DigestDefaults()
    _mapping(raw, _DIGEST_KEYS, src, "digest")
    d = DigestDefaults()
    times = raw.get("times", list(d.times))
    if not isinstance(times, list) or not all(isinstance(t, str) and _TIME_OF_DAY.match(t) for t in times):
        raise ConfigError(src, "digest.times", "must be a list of HH:MM times")
    tz = canonical_timezone(str(raw.get("timezone", d.timezone)))
    if tz is None:
        raise ConfigError(src, "digest.timezone", f"unknown time zone {raw.get('timezone')!r}")
    every = raw.get("every_hours")
    if every is not None and (not isinstance(every, int) or isinstance(every, bool) or not 1 <= every <= 168):
        raise ConfigError(src, "digest.every_hours", "must be a whole number of hours from 1 to 168")
    max_stories = raw.get("max_stories", d.max_stories)
    if not isinstance(max_stories, int) or isinstance(max_stories, bool) or not 1 <= max_stories <= 30:
        raise ConfigError(src, "digest.max_stories", "must be a whole number from 1 to 30")
    score = raw.get("min_topic_score", d.min_topic_score)
    if not isinstance(score, int | float) or isinstance(score, bool) or not 0 <= score <= 1:
        raise ConfigError(src, "digest.min_topic_score", "must be a number from 0 to 1")
    topics = raw.get("topics", list(d.topics))
    if not isinstance(topics, list) or not all(isinstance(t, str) for t in topics):
        raise ConfigError(src, "digest.topics", "must be a list of topic names")
    try:
        cooldown = parse_duration(raw.get("summary_cooldown", d.summary_cooldown_s))
    except ValueError as exc:
        raise ConfigError(src, "digest.summary_cooldown", str(exc)) from exc
    return DigestDefaults(times=tuple(times), every_hours=every, timezone=tz, max_stories=max_stories,
                          min_topic_score=float(score), topics=tuple(topics), summary_cooldown_s=cooldown)


def _topics(raw: Any, src: str) -> tuple[TopicSpecConfig, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(src, "topics", "must be a list")
    out = []
    for i, t in enumerate(raw):
        where = f"topics[{i}]"
        _mapping(t, _TOPIC_KEYS, src, where, "each topic must be a mapping with a name")
        if not isinstance(t, dict) or not isinstance(t.get("name"), str) or not t["name"].strip():
            raise ConfigError(src, f"{where}.name", "each topic needs a name")
        if not isinstance(t.get("description", ""), str):
            raise ConfigError(src, f"{where}.description", "must be a string")
        for key in ("examples", "keywords"):
            v = t.get(key, [])
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise ConfigError(src, f"{where}.{key}", "must be a list of strings")
        out.append(TopicSpecConfig(name=t["name"].strip(), description=t.get("description", ""),
                                   examples=tuple(t.get("examples", [])), keywords=tuple(t.get("keywords", []))))
    names = [t.name for t in out]
    if len(names) != len(set(names)):
        raise ConfigError(src, "topics", "topic names must be unique")
    return tuple(out)


def load_feeds_file(path: Path | None) -> FeedsFile:
    """Parse and validate the feeds file; `None` means no file."""
    if path is None:
        return FeedsFile(path=None)
    src = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(src, "(file)", "not found (set NEWSDIGEST_FEEDS_FILE, or empty for none)") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(src, "(file)", f"cannot read: {exc}") from exc
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "(file)"
        raise ConfigError(src, where, f"invalid YAML: {getattr(exc, 'problem', exc)}") from exc
    _mapping(data, _TOP_KEYS, src, "", "must be a mapping with 'feeds', 'topics', 'digest'")
    defaults = _mapping(data["defaults"] if data.get("defaults") is not None else {}, _DEFAULTS_KEYS, src,
                        "defaults")
    default_interval = _interval(defaults.get("interval", 900), src, "defaults.interval")
    raw_feeds = data.get("feeds") or []
    if not isinstance(raw_feeds, list):
        raise ConfigError(src, "feeds", "must be a list")
    feeds = [_feed_spec(f, f"feeds[{i}]", src, default_interval) for i, f in enumerate(raw_feeds)]
    seen: dict[str, int] = {}
    for i, f in enumerate(feeds):
        if f.url in seen:
            raise ConfigError(src, f"feeds[{i}].url", f"duplicate of feeds[{seen[f.url]}]")
        seen[f.url] = i
    return FeedsFile(path=path, feeds=tuple(feeds), topics=_topics(data.get("topics"), src),
                     digest=_digest(data.get("digest"), src))

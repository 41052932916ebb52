"""The error hierarchy crosses process boundaries (parsing runs in a process pool) and keeps its causes."""

from __future__ import annotations

import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor

import pytest

from bot.errors import (
    BlockedURLError,
    ChatForbiddenError,
    CommandError,
    ConfigError,
    DeliveryError,
    FetchError,
    ParseError,
    RateLimitedError,
    StorageError,
    TooLargeError,
)
from bot.urls import check_url

ERRORS = [
    ConfigError("feeds.yaml", "digest.times", "expected a list"),
    FetchError("https://a.example/feed", "HTTP 503", transient=True, retry_after=30.0, status=503),
    BlockedURLError("http://10.0.0.1/", "private address"),
    TooLargeError("https://a.example/big", 1024),
    ParseError("not a feed"),
    DeliveryError("Bad Gateway", retry_after=2.0, permanent=False, migrate_to="-100123"),
    ChatForbiddenError("bot was kicked"),
    RateLimitedError("Too Many Requests", 17.0),
    CommandError("Usage: /addfeed URL"),
    StorageError("database is locked", unavailable=True),
]


@pytest.mark.parametrize("err", ERRORS, ids=lambda e: type(e).__name__)
def test_error_survives_pickle(err: Exception) -> None:
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is type(err)
    assert str(back) == str(err)
    assert back.__dict__ == err.__dict__


def _raise(kind: str) -> None:
    if kind == "fetch":
        raise FetchError("https://a.example/feed", "timed out after 5 s", transient=True, status=None)
    raise ConfigError("feeds.yaml", "feeds[2].url", "not a URL")


@pytest.mark.parametrize("kind, cls", [("fetch", FetchError), ("config", ConfigError)])
def test_error_raised_in_a_worker_process_arrives_whole(kind: str, cls: type[Exception]) -> None:
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        with pytest.raises(cls) as info:
            pool.submit(_raise, kind).result(timeout=60)
    assert "feed" in str(info.value)


def test_translated_errors_keep_their_cause() -> None:
    with pytest.raises(BlockedURLError) as info:
        check_url("http://[::1")
    assert info.value.__cause__ is not None

"""Shared fixtures: a Store on SQLite (always) and PostgreSQL (when NEWSDIGEST_TEST_DATABASE_URL is set),
and a local feed server on 127.0.0.1."""

from __future__ import annotations

import multiprocessing
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, settings
from sqlalchemy import create_engine, text

from bot.storage.store import Store
from tests.fakes.feed_server import FeedServer

# CI runs the same examples every time (a failure there is reproducible); local runs keep exploring.
settings.register_profile("ci", derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

PG_URL = os.environ.get("NEWSDIGEST_TEST_DATABASE_URL", "")
PG_SKIP = "NEWSDIGEST_TEST_DATABASE_URL is not set (set it to a PostgreSQL URL to run the PostgreSQL variant)"


@contextmanager
def pg_schema(prefix: str = "t_") -> Iterator[str]:
    """The URL of an empty PostgreSQL schema of its own (parallel-safe), dropped afterwards."""
    schema = prefix + uuid.uuid4().hex[:12]
    admin = create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://", 1)
                          if PG_URL.startswith("postgresql://") else PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _pg_store() -> Iterator[Store]:
    """A Store in a fresh PostgreSQL schema, dropped afterwards (parallel-safe)."""
    with pg_schema() as url:
        store = Store.open(url)
        try:
            yield store
        finally:
            store.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path) -> Iterator[Store]:  # noqa: ANN001
    """A migrated Store on each supported database."""
    if request.param == "sqlite":
        s = Store.open(f"sqlite:///{tmp_path / 'test.db'}")
        yield s
        s.close()
    else:
        if not PG_URL:
            pytest.skip(PG_SKIP)
        yield from _pg_store()


@pytest.fixture
def sqlite_store(tmp_path) -> Iterator[Store]:  # noqa: ANN001
    """A migrated Store on SQLite only (for tests that are not about the database)."""
    s = Store.open(f"sqlite:///{tmp_path / 'test.db'}")
    yield s
    s.close()


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    """A running local feed server."""
    server = FeedServer().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def no_leftover_processes() -> Iterator[None]:
    """Every process pool a test starts is shut down by the test (none is left to outlive pytest)."""
    before = {p.pid for p in multiprocessing.active_children()}
    yield
    left = [p for p in multiprocessing.active_children() if p.pid not in before]
    for p in left:
        p.kill()
        p.join(5)
    assert not left, f"the test left {len(left)} child process(es) running: {left}"

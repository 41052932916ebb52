"""The service's memory levers: glibc malloc settings, and migrations that load Alembic only when needed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bot import memory
from bot.storage.db import at_head, head_revisions, upgrade
from bot.storage.store import Store


def test_tune_malloc_sets_glibc_parameters_unless_the_environment_does() -> None:
    if memory._libc() is None:
        pytest.skip("not glibc: tune_malloc leaves the C library alone")
    env = {"MALLOC_ARENA_MAX": "4"}
    applied = memory.tune_malloc(env)
    assert applied == {"MALLOC_MMAP_THRESHOLD_": memory.MMAP_THRESHOLD,
                       "MALLOC_TRIM_THRESHOLD_": memory.TRIM_THRESHOLD}
    memory.release_free_memory()


def test_heads_are_the_newest_migrations() -> None:
    versions = Path(__file__).resolve().parent.parent / "bot" / "storage" / "migrations" / "versions"
    newest = max(p.name.split("_")[0] for p in versions.glob("0*.py"))
    assert head_revisions() == frozenset({newest})


def test_a_schema_at_head_opens_without_loading_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nd.db'}"
    s = Store.open(url, migrate=False)
    try:
        assert not at_head(s.engine), "no alembic_version table yet"
        upgrade(s.engine, "0001")
        assert not at_head(s.engine)
        upgrade(s.engine)
        assert at_head(s.engine)
    finally:
        s.close()
    code = ("import sys; from bot.storage.store import Store; s = Store.open(sys.argv[1]); s.close(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('alembic', 'mako')))")
    out = subprocess.run([sys.executable, "-c", code, url], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"
    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    out = subprocess.run([sys.executable, "-c", code, fresh], capture_output=True, text=True, timeout=120,
                         check=True)
    assert "alembic" in out.stdout, "a new database is migrated by Alembic"


def test_parse_workers_are_replaced_after_recycle_after_calls() -> None:
    import asyncio
    import os

    from bot.runner import ParsePool

    pool = ParsePool(1, recycle_after=2)

    async def pids() -> list[int]:
        return [await pool.run(os.getpid) for _ in range(5)]

    try:
        got = asyncio.run(pids())
    finally:
        pool.shutdown()
    assert got[0] == got[1] != got[2] == got[3] != got[4], got
    assert os.getpid() not in got and pool.recycles == 2 and pool.rebuilds == 0


def test_released_parse_workers_exit_and_the_next_call_starts_fresh_ones() -> None:
    import asyncio
    import os
    import time

    from bot.runner import ParsePool

    pool = ParsePool(1)
    assert not pool.release(), "no worker has started yet"

    async def calls() -> tuple[int, int]:
        first = await pool.run(os.getpid)
        assert pool.release() and not pool.release()
        return first, await pool.run(os.getpid)

    try:
        first, second = asyncio.run(calls())
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(first, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"the released worker {first} is still running")
    finally:
        pool.shutdown()
    assert first != second and os.getpid() not in (first, second) and pool.releases == 1 and pool.rebuilds == 0


def test_zero_parse_workers_parse_in_the_service_process(tmp_path: Path) -> None:
    from bot.app import App
    from bot.net import Fetcher
    from bot.settings import load_feeds_file, load_settings

    settings = load_settings({"NEWSDIGEST_DATABASE_URL": f"sqlite:///{tmp_path / 'nd.db'}",
                              "NEWSDIGEST_FEEDS_FILE": "", "NEWSDIGEST_PARSE_WORKERS": "0"})
    app = App(settings, load_feeds_file(None), Store.open(settings.database_url))
    try:
        assert app.runner(Fetcher(app.fetch_limits()), process=False).parse_pool is None
    finally:
        app.close()

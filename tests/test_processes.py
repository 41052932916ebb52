"""No process outlives its owner: the parse pool's workers end with the app, and with a parent killed by SIGKILL."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.app import App
from bot.models import FeedSpec
from bot.settings import load_feeds_file, load_settings
from bot.storage.store import Store

ROOT = Path(__file__).resolve().parent.parent
PROC = Path("/proc")
needs_proc = pytest.mark.skipif(not (PROC / "self" / "stat").exists(), reason="needs Linux /proc")


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, None once it is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1])


def _children(pid: int) -> list[int]:
    out = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            st = _stat(int(entry.name))
            if st and st[1] == pid and st[0] != "Z":
                out.append(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    st = _stat(pid)
    return st is not None and st[0] != "Z"  # a zombie has exited; only its parent has not reaped it yet


def test_app_close_stops_every_parse_worker(tmp_path: Path, feed_server) -> None:  # noqa: ANN001
    settings = load_settings({"NEWSDIGEST_DATABASE_URL": f"sqlite:///{tmp_path / 'nd.db'}",
                              "NEWSDIGEST_FEEDS_FILE": "", "NEWSDIGEST_ALLOW_PRIVATE_URLS": "1"})
    app = App(settings, load_feeds_file(None), Store.open(settings.database_url))
    try:
        app.store.add_feed(FeedSpec(url=feed_server.url("/feeds/wsj_2020-04-27T2107Z.xml")), "cli")
        before = set(multiprocessing.active_children())
        report = asyncio.run(app.poll_once(process=False))
        assert report.new_articles > 0
        pool = app._parse_pool
        # The poll ran in the parse pool, whose worker was then stopped: the feed is not due for 15 minutes.
        assert pool is not None and pool.releases == 1
    finally:
        app.close()
    assert set(multiprocessing.active_children()) <= before == set()


@needs_proc
def test_parse_workers_exit_when_their_poll_process_is_killed(tmp_path: Path, feed_server) -> None:  # noqa: ANN001
    names = ["bbc_2020-04-27T2107Z.xml", "nytimes_2020-04-27T2107Z.xml", "wsj_2020-04-27T2107Z.xml"]
    feeds = tmp_path / "feeds.yaml"
    feeds.write_text("feeds:\n" + "".join(f"  - {{url: '{feed_server.url('/feeds/' + n)}'}}\n" for n in names)
                     + f"  - {{url: '{feed_server.url('/slow?s=60')}'}}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEWSDIGEST_", "TELEGRAM_", "DISCORD_"))}
    env.update(NEWSDIGEST_DATABASE_URL=f"sqlite:///{tmp_path / 'nd.db'}", NEWSDIGEST_FEEDS_FILE=str(feeds),
               NEWSDIGEST_ALLOW_PRIVATE_URLS="1", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "bot", "poll", "--once", "--no-process"], env=env,
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 90
        stored = 0
        while time.monotonic() < deadline and not (stored and workers):
            time.sleep(0.2)
            assert proc.poll() is None, "the slow feed keeps the poll running"
            try:
                with sqlite3.connect(tmp_path / "nd.db") as conn:
                    stored = conn.execute("SELECT count(*) FROM articles").fetchone()[0]
            except sqlite3.OperationalError:
                pass  # not created yet
            workers = _children(proc.pid)
        assert stored and workers, "feeds were parsed in the pool before the kill"
        proc.kill()  # SIGKILL: no shutdown code runs in the parent
        proc.wait()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(_alive(w) for w in workers):
            time.sleep(0.2)
        assert not [w for w in workers if _alive(w)], "orphaned parse workers"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for w in workers:
            if _alive(w):
                os.kill(w, signal.SIGKILL)

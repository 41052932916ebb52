"""`newsdigest run` without chat tokens: polls, processes and prints a digest to the terminal; SIGTERM stops it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.test_processing import FIRST, SECOND, SPORT, rss

ROOT = Path(__file__).resolve().parent.parent


def two_outlets(feed_server, tmp_path: Path, extra: str = "") -> Path:  # noqa: ANN001
    """A feeds file of two outlets reporting one story (plus a sport item), and `extra` feed lines."""
    feed_server.files["/a.xml"] = rss([("Breaking: Russia Warns NATO – No Troops in Ukraine Allowed!",
                                        "https://a.example/lavrov", FIRST),
                                       ("City beat Arsenal to go top", "https://a.example/football", SPORT)])
    feed_server.files["/b.xml"] = rss([("JUST IN – Russia will not tolerate any NATO troops in Ukraine — Lavrov",
                                        "https://b.example/lavrov-nato", SECOND)])
    feeds = tmp_path / "feeds.yaml"
    feeds.write_text(f"feeds:\n  - {{url: '{feed_server.url('/a.xml')}', name: Outlet A}}\n"
                     f"  - {{url: '{feed_server.url('/b.xml')}', name: Outlet B}}\n" + extra)
    return feeds


def test_run_prints_digest_to_terminal_and_stops_cleanly(tmp_path: Path, feed_server) -> None:  # noqa: ANN001
    feeds = two_outlets(feed_server, tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEWSDIGEST_", "TELEGRAM_", "DISCORD_"))}
    env.update(NEWSDIGEST_DATABASE_URL=f"sqlite:///{tmp_path / 'nd.db'}", NEWSDIGEST_FEEDS_FILE=str(feeds),
               NEWSDIGEST_ALLOW_PRIVATE_URLS="1", PYTHONPATH=str(ROOT))
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with out.open("w") as o, err.open("w") as e:
        proc = subprocess.Popen([sys.executable, "-m", "bot", "run"], env=env, cwd=tmp_path, stdout=o, stderr=e)
        try:
            deadline = time.monotonic() + 150
            while time.monotonic() < deadline and "Outlet B" not in out.read_text():
                assert proc.poll() is None, err.read_text()
                time.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0, err.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
    text = out.read_text()
    assert "1 top story of the last" in text, text
    assert "Outlet A: https://a.example/lavrov" in text and "Outlet B: https://b.example/lavrov-nato" in text
    assert "Arsenal" not in text, "sport is not geopolitics"
    assert "stopped cleanly" in err.read_text()
    # `newsdigest digest --json` shows what /summary would send now, from the same database.
    digest = subprocess.run([sys.executable, "-m", "bot", "digest", "--since", "24h", "--json"], env=env,
                            cwd=tmp_path, capture_output=True, timeout=120)
    assert digest.returncode == 0, digest.stderr.decode()
    (story,) = json.loads(digest.stdout)["stories"]
    assert story["title"].startswith("Breaking: Russia Warns NATO") and story["outlet_count"] == 2
    assert {lk["outlet"] for lk in story["links"]} == {"Outlet A", "Outlet B"}
    assert story["links"][0]["title"] == story["title"], "the headline is the first link's article"


def test_run_stops_with_a_clear_error_when_the_models_cannot_load(tmp_path: Path, feed_server) -> None:  # noqa: ANN001
    """The models load in the background while the first poll runs; a bad topic head still stops the service."""
    feeds = two_outlets(feed_server, tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEWSDIGEST_", "TELEGRAM_", "DISCORD_"))}
    env.update(NEWSDIGEST_DATABASE_URL=f"sqlite:///{tmp_path / 'nd.db'}", NEWSDIGEST_FEEDS_FILE=str(feeds),
               NEWSDIGEST_ALLOW_PRIVATE_URLS="1", NEWSDIGEST_TOPIC_HEAD_DIR=str(tmp_path / "no-such-heads"),
               PYTHONPATH=str(ROOT))
    run = subprocess.run([sys.executable, "-m", "bot", "run"], env=env, cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode != 0
    assert "NEWSDIGEST_TOPIC_HEAD_DIR" in run.stderr and "cannot load a topic head" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr, run.stderr


def test_models_load_only_once_started_and_a_waiting_caller_starts_them() -> None:
    """`newsdigest run` starts the build when its first poll is out (Runner.run_forever's on_polling)."""
    import threading

    from bot.app import ModelsLoading

    built: list[str] = []
    loading = ModelsLoading(lambda: built.append(threading.current_thread().name) or "processor")  # type: ignore[arg-type, func-returns-value]
    time.sleep(0.2)
    assert built == [], "nothing is built before start()"
    loading.start()
    loading.start()
    assert loading.get() == "processor" and built == ["newsdigest-models"]

    lazy = ModelsLoading(lambda: "other")  # type: ignore[arg-type, return-value]
    assert lazy.get() == "other", "get() starts a build nobody started"

    def broken() -> None:
        raise ValueError("bad head")

    failing = ModelsLoading(broken)  # type: ignore[arg-type]
    try:
        failing.summarizer()
    except ValueError as exc:
        assert str(exc) == "bad head"
    else:
        raise AssertionError("the build's error is raised to whoever waits")


async def test_run_forever_calls_on_polling_once_while_the_first_poll_runs(sqlite_store, feed_server) -> None:  # noqa: ANN001
    import asyncio

    from bot.models import FeedSpec
    from bot.net import Fetcher, FetchLimits
    from bot.runner import Runner

    sqlite_store.add_feed(FeedSpec(url=feed_server.url("/slow?s=1")), "cli")
    events: list[tuple[str, float]] = []
    stop = asyncio.Event()

    def on_cycle(report) -> None:  # noqa: ANN001
        events.append(("cycle", time.monotonic()))
        if len(events) == 3:
            stop.set()

    async with Fetcher(FetchLimits(allow_private=True)) as fetcher:
        runner = Runner(sqlite_store, fetcher)
        await asyncio.wait_for(runner.run_forever(
            stop, tick_s=0.05, on_cycle=on_cycle, on_polling=lambda: events.append(("polling", time.monotonic()))),
            30)
    assert [e for e, _ in events] == ["polling", "cycle", "cycle"], "called once, in the first cycle"
    assert events[1][1] - events[0][1] >= 0.8, "called while the first cycle's one-second poll was running"

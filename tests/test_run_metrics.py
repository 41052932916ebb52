"""`newsdigest run` with NEWSDIGEST_METRICS_PORT and NEWSDIGEST_LOG_FORMAT=json: the endpoints answer during the
run, the counters follow it, and every stderr line is one JSON object."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.test_run import two_outlets

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_run_serves_metrics_and_json_logs(tmp_path: Path, feed_server) -> None:  # noqa: ANN001
    feeds = two_outlets(feed_server, tmp_path, f"  - {{url: '{feed_server.url('/status/500')}', name: Broken}}\n")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEWSDIGEST_", "TELEGRAM_", "DISCORD_"))}
    env.update(NEWSDIGEST_DATABASE_URL=f"sqlite:///{tmp_path / 'nd.db'}", NEWSDIGEST_FEEDS_FILE=str(feeds),
               NEWSDIGEST_ALLOW_PRIVATE_URLS="1", PYTHONPATH=str(ROOT), NEWSDIGEST_METRICS_PORT=str(port),
               NEWSDIGEST_LOG_FORMAT="json")
    base = f"http://127.0.0.1:{port}"
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with out.open("w") as o, err.open("w") as e:
        proc = subprocess.Popen([sys.executable, "-m", "bot", "run"], env=env, cwd=tmp_path, stdout=o, stderr=e)
        try:
            deadline = time.monotonic() + 150
            samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
            while time.monotonic() < deadline:
                assert proc.poll() is None, err.read_text()
                try:
                    samples = scrape(base)
                except httpx.TransportError:
                    samples = {}  # not listening yet
                if samples.get(("newsdigest_digests_total", (("platform", "console"),))):
                    break
                time.sleep(0.3)
            assert httpx.get(f"{base}/healthz", timeout=10).status_code == 200
            ready = httpx.get(f"{base}/readyz", timeout=10)
            assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok"}
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0, err.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()

    def val(name: str, **labels: str) -> float:
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    # One cycle's worth, as the terminal digest shows it.
    assert val("newsdigest_feed_polls_total", outcome="fetched") == 2
    assert val("newsdigest_feed_polls_total", outcome="failed") == 1
    assert val("newsdigest_articles_total") == 3 and val("newsdigest_articles_processed_total") == 3
    assert val("newsdigest_stories_total", event="created") == 1
    assert val("newsdigest_stories_total", event="updated") == 1
    assert val("newsdigest_summaries_total") >= 1
    assert val("newsdigest_feeds", state="failing") == 1 and val("newsdigest_feeds", state="active") == 2
    assert val("newsdigest_database_up") == 1
    assert "Outlet B" in out.read_text()

    lines = [json.loads(line) for line in err.read_text().splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    assert any(line.get("feed_url", "").endswith("/status/500") and "feed_id" in line for line in lines)
    assert any("metrics and health checks on" in line["message"] for line in lines)
    assert lines[-1]["message"] == "stopped cleanly"


def test_run_refuses_a_metrics_port_it_cannot_listen_on(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NEWSDIGEST_", "TELEGRAM_", "DISCORD_"))}
        env.update(NEWSDIGEST_DATABASE_URL=f"sqlite:///{tmp_path / 'nd.db'}", NEWSDIGEST_FEEDS_FILE="",
                   PYTHONPATH=str(ROOT), NEWSDIGEST_METRICS_PORT=str(taken.getsockname()[1]))
        run = subprocess.run([sys.executable, "-m", "bot", "run"], env=env, cwd=tmp_path, capture_output=True,
                             text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    assert "configuration error" in run.stderr and "NEWSDIGEST_METRICS_PORT" in run.stderr
    bad = subprocess.run([sys.executable, "-m", "bot", "run"], env={**env, "NEWSDIGEST_METRICS_PORT": "http"},
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "TCP port number" in bad.stderr, bad.stderr

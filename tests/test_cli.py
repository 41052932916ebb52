"""The `newsdigest` command as operators and scripts run it (a real subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_cli(args: list[str], env: dict[str, str], cwd: Path, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("NEWSDIGEST_", "TELEGRAM_", "DISCORD_"))}
    full.update(env)
    full["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "bot", *args], env=full, cwd=cwd, capture_output=True,
                          timeout=180, input=stdin)


@pytest.fixture
def env(tmp_path: Path, feed_server) -> dict[str, str]:  # noqa: ANN001
    feeds = tmp_path / "feeds.yaml"
    feeds.write_text(
        "feeds:\n"
        f"  - {{url: '{feed_server.url('/feeds/wsj_2020-04-27T2107Z.xml')}', name: WSJ}}\n"
        f"  - {{url: '{feed_server.url('/feeds/fox_2020-04-27T2107Z.xml')}', name: Fox}}\n"
        f"  - {{url: '{feed_server.url('/status/500')}', name: Broken}}\n")
    return {"NEWSDIGEST_DATABASE_URL": f"sqlite:///{tmp_path / 'nd.db'}", "NEWSDIGEST_FEEDS_FILE": str(feeds),
            "NEWSDIGEST_ALLOW_PRIVATE_URLS": "1"}


def test_poll_once_json_contract(env: dict, tmp_path: Path) -> None:
    p = run_cli(["poll", "--once", "--json", "--no-process"], env, tmp_path)
    assert p.returncode == 0, p.stderr.decode()
    out = json.loads(p.stdout)
    assert set(out) == {"feeds", "fetched", "not_modified", "new_articles", "failed"}
    assert (out["feeds"], out["fetched"], out["not_modified"], out["new_articles"]) == (3, 2, 0, 16)
    assert out["failed"] == [{"url": out["failed"][0]["url"], "error": "HTTP 500"}]
    again = json.loads(run_cli(["poll", "--once", "--force", "--json", "--no-process"], env, tmp_path).stdout)
    assert (again["not_modified"], again["new_articles"]) == (2, 0)
    arts = json.loads(run_cli(["articles", "--since", "24h", "--json"], env, tmp_path).stdout)
    assert len(arts) == 16 and {a["outlet"] for a in arts} == {"WSJ", "Fox"}


def test_feeds_commands_and_opml_roundtrip(env: dict, tmp_path: Path) -> None:
    listed = json.loads(run_cli(["feeds", "list", "--json"], env, tmp_path).stdout)
    assert [f["name"] for f in listed] == ["WSJ", "Fox", "Broken"]
    added = run_cli(["feeds", "add", "https://example.org/feed.xml", "--name", "Example"], env, tmp_path)
    assert added.returncode == 0 and b"added" in added.stdout
    blocked = run_cli(["feeds", "add", "file:///etc/passwd"], {**env, "NEWSDIGEST_ALLOW_PRIVATE_URLS": "0"},
                      tmp_path)
    assert blocked.returncode == 1 and b"http" in blocked.stderr
    private = run_cli(["feeds", "add", "http://127.0.0.1:9/x"], {**env, "NEWSDIGEST_ALLOW_PRIVATE_URLS": "0"},
                      tmp_path)
    assert private.returncode == 1 and b"not a public address" in private.stderr
    exported = run_cli(["feeds", "export"], env, tmp_path)
    assert exported.returncode == 0 and b'xmlUrl="https://example.org/feed.xml"' in exported.stdout
    opml = tmp_path / "in.opml"
    opml.write_bytes(b'<?xml version="1.0"?><opml version="2.0"><head/><body>'
                     b'<outline text="Example" xmlUrl="https://example.org/feed.xml"/>'
                     b'<outline text="New one" xmlUrl="https://new.example.org/rss"/>'
                     b'<outline text="Bad" xmlUrl="ftp://bad.example.org/rss"/></body></opml>')
    rep = json.loads(run_cli(["feeds", "import", str(opml), "--json"], env, tmp_path).stdout)
    assert rep["added"] == [{"url": "https://new.example.org/rss", "title": "New one"}]
    assert rep["skipped_duplicates"] == ["https://example.org/feed.xml"]
    assert rep["rejected"][0]["url"] == "ftp://bad.example.org/rss"
    removed = run_cli(["feeds", "remove", "https://new.example.org/rss"], env, tmp_path)
    assert removed.returncode == 0
    assert "https://new.example.org/rss" not in run_cli(["feeds", "export"], env, tmp_path).stdout.decode()
    missing = run_cli(["feeds", "remove", "999"], env, tmp_path)
    assert missing.returncode == 1 and b"no feed" in missing.stderr


def test_bad_config_exits_nonzero_without_touching_database(tmp_path: Path) -> None:
    bad = tmp_path / "feeds.yaml"
    bad.write_text("feeds:\n  - {url: 'https://ok.example/rss'}\n  - {name: 'no url'}\n")
    db = tmp_path / "nd.db"
    p = run_cli(["poll", "--once"], {"NEWSDIGEST_DATABASE_URL": f"sqlite:///{db}",
                                     "NEWSDIGEST_FEEDS_FILE": str(bad)}, tmp_path)
    assert p.returncode == 2
    assert str(bad).encode() in p.stderr and b"feeds[1].url" in p.stderr
    assert not db.exists()
    p = run_cli(["feeds", "list"], {"NEWSDIGEST_DATABASE_URL": f"sqlite:///{db}",
                                    "NEWSDIGEST_REQUEST_TIMEOUT": "soon"}, tmp_path)
    assert p.returncode == 2 and b"NEWSDIGEST_REQUEST_TIMEOUT" in p.stderr and not db.exists()


def test_bad_command_line_is_a_usage_error(tmp_path: Path) -> None:
    p = run_cli(["feeds", "frobnicate"], {}, tmp_path)
    assert p.returncode == 2 and b"invalid choice" in p.stderr


def test_train_classify_writes_a_head_the_service_can_use(tmp_path: Path) -> None:
    data = ROOT / "tests" / "data" / "topic" / "ag_news_sample.csv"
    out = tmp_path / "head"
    p = run_cli(["train", "classify", "--data", str(data), "--out-dir", str(out), "--no-eval"], {}, tmp_path)
    assert p.returncode == 0, p.stderr.decode()
    meta = json.loads(p.stdout)
    assert meta["n"] == 60 and (out / "topic_head.npz").exists()
    from bot.pipeline.topic import load_head

    assert load_head(out).proba(np.zeros((1, 384), "float32")).shape == (1,)
    bad = run_cli(["train", "classify", "--data", str(tmp_path / "missing.csv")], {}, tmp_path)
    assert bad.returncode != 0 and b"missing.csv" in bad.stderr


def test_poll_killed_midway_loses_and_duplicates_nothing(tmp_path: Path, feed_server) -> None:  # noqa: ANN001
    names = ["bbc_2020-04-27T2107Z.xml", "nytimes_2020-04-27T2107Z.xml", "smh_2020-04-27T2107Z.xml",
             "fox_2020-04-27T2107Z.xml", "wsj_2020-04-27T2107Z.xml"]
    feeds = tmp_path / "feeds.yaml"
    feeds.write_text("feeds:\n" + "".join(f"  - {{url: '{feed_server.url('/feeds/' + n)}'}}\n" for n in names)
                     + f"  - {{url: '{feed_server.url('/slow?s=30')}'}}\n")
    env = {"NEWSDIGEST_DATABASE_URL": f"sqlite:///{tmp_path / 'nd.db'}", "NEWSDIGEST_FEEDS_FILE": str(feeds),
           "NEWSDIGEST_ALLOW_PRIVATE_URLS": "1"}
    full = {k: v for k, v in os.environ.items() if not k.startswith(("NEWSDIGEST_", "TELEGRAM_", "DISCORD_"))}
    proc = subprocess.Popen([sys.executable, "-m", "bot", "poll", "--once", "--no-process"],
                            env={**full, **env, "PYTHONPATH": str(ROOT)}, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import sqlite3
    import time

    deadline = time.monotonic() + 60
    stored = 0
    while time.monotonic() < deadline and stored == 0:
        time.sleep(0.2)
        if (tmp_path / "nd.db").exists():
            try:
                with sqlite3.connect(tmp_path / "nd.db") as conn:
                    stored = conn.execute("SELECT count(*) FROM articles").fetchone()[0]
            except sqlite3.OperationalError:
                pass  # the schema is still being created
    proc.kill()  # in the middle of the poll: the slow feed is still being fetched
    proc.wait()
    assert stored > 0
    again = json.loads(run_cli(["poll", "--once", "--force", "--json", "--no-process"],
                               {**env, "NEWSDIGEST_REQUEST_TIMEOUT": "2"},
                               tmp_path).stdout)
    arts = json.loads(run_cli(["articles", "--limit", "10000", "--json"], env, tmp_path).stdout)
    from bot.pipeline.entry import parse_feed

    expected = {e.key for n in names for e in parse_feed((ROOT / "tests" / "data" / "feeds" / n).read_bytes(),
                                                         url=feed_server.url("/feeds/" + n)).entries}
    assert len(arts) == len(expected) and {a["key"] for a in arts} == expected, "nothing lost, nothing twice"
    assert again["new_articles"] == len(expected) - stored

"""An unreachable database at start: `newsdigest run` waits for it (backing off, one line per try) and starts
when it answers; any other command fails at once with one line and exit 2, no traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from bot.app import open_store
from bot.errors import StorageError
from tests.conftest import PG_SKIP, PG_URL
from tests.fakes.tcp_proxy import TcpProxy

ROOT = Path(__file__).resolve().parent.parent


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_command_reports_an_unreachable_database_in_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "NEWSDIGEST_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:{_closed_port()}/x",
           "NEWSDIGEST_FEEDS_FILE": ""}
    out = subprocess.run([sys.executable, "-m", "bot", "feeds", "list"], capture_output=True, text=True,
                         timeout=120, env=env, cwd=ROOT)
    assert out.returncode == 2
    assert out.stderr.startswith("newsdigest: database unreachable:") and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_open_store_without_waiting_raises_at_once() -> None:
    slept: list[float] = []
    with pytest.raises(StorageError) as info:
        open_store(f"postgresql+psycopg://postgres@127.0.0.1:{_closed_port()}/x", wait=False, sleep=slept.append)
    assert info.value.unavailable and slept == []


@pytest.mark.skipif(not PG_URL, reason=PG_SKIP)
def test_the_service_waits_for_its_database_with_backoff(caplog: pytest.LogCaptureFixture) -> None:
    from sqlalchemy.engine import make_url

    url = make_url(PG_URL)
    # A schema of its own: migrating the database's public schema would clash with other checkouts' migrations.
    schema = "t_" + uuid.uuid4().hex[:12]
    admin = create_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = url.update_query_dict({"options": f"-csearch_path={schema}"})
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432).start()
    proxy.cut("refuse")
    slept: list[float] = []
    now = [0.0]

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds
        if len(slept) == 4:
            proxy.restore()  # the database comes up while the service waits

    try:
        store = open_store(url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False),
                           wait=True, sleep=sleep, clock=lambda: now[0])
        store.close()
    finally:
        proxy.stop()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
    assert len(slept) == 4
    assert slept[0] >= 1.0 and slept[-1] > slept[0], "backs off"
    assert all(s <= 30.0 for s in slept)
    lines = [r.getMessage() for r in caplog.records if "database" in r.getMessage()]
    assert "unavailable" in lines[0] and "is back" in lines[-1]


def test_an_sqlite_file_that_cannot_be_opened_is_not_waited_for(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    slept: list[float] = []
    with pytest.raises(StorageError):
        open_store(f"sqlite:///{tmp_path}/a-file/x.db", wait=True, sleep=slept.append)
    assert slept == []

"""Workers and schedulers starting at once on one PostgreSQL schema: the migrations run once, every start
succeeds (bot/storage/db.upgrade serializes them with an advisory lock). Processes, as in production:
Alembic's migration context is one per process, so threads would not show it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text

from bot.storage.db import alembic_config
from bot.storage.store import Store
from tests.conftest import PG_SKIP, PG_URL, pg_schema

STARTS = 5
ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.postgres, pytest.mark.skipif(not PG_URL, reason=PG_SKIP)]


@pytest.fixture
def fresh_schema_url() -> Iterator[str]:
    """The URL of an empty PostgreSQL schema of its own, dropped afterwards."""
    with pg_schema("mig_") as url:
        yield url


# One start: import, say "ready", wait for "go" (all start together), open the store (migrating it), then print
# the migrations this process ran (Alembic logs "Running upgrade 0001 -> 0002, ...") or the error.
CHILD = """
import json, logging, sys
from bot.storage.store import Store
ran = []
class Ran(logging.Handler):
    def emit(self, record):
        m = record.getMessage()
        if m.startswith("Running upgrade"):
            ran.append(m.split("->", 1)[1].split(",", 1)[0].strip())
log = logging.getLogger("alembic.runtime.migration")
log.addHandler(Ran())
log.setLevel(logging.INFO)
print("ready", flush=True)
sys.stdin.readline()
try:
    Store.open(sys.argv[1]).close()
except Exception as exc:
    print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
else:
    print(json.dumps({"ran": ran}), flush=True)
"""


def test_many_starts_at_once_migrate_a_fresh_schema_once(fresh_schema_url: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, fresh_schema_url], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
             for _ in range(STARTS)]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready", p.stderr
        for p in procs:  # every process is past its imports: start them together
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        results = [json.loads(p.communicate(timeout=120)[0].strip().splitlines()[-1]) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [r.get("error") for r in results] == [None] * STARTS
    ran = Counter(rev for r in results for rev in r["ran"])
    script = ScriptDirectory.from_config(alembic_config())
    assert ran == Counter(r.revision for r in script.walk_revisions())  # each migration ran once, in one start
    assert sum(1 for r in results if r["ran"]) == 1
    store = Store.open(fresh_schema_url, migrate=False)
    try:
        with store.engine.connect() as conn:
            assert [r[0] for r in conn.execute(text("SELECT version_num FROM alembic_version"))] == \
                [script.get_current_head()]
    finally:
        store.close()

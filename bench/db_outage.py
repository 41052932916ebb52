"""Bench: the database-outage scenarios of the fault campaign (issue 10) at full length, 20-30 s.

Runs the scenarios of tests/test_fault_pg_proxy.py and tests/test_fault_db_outage.py with a long outage:

- PostgreSQL (when NEWSDIGEST_TEST_DATABASE_URL is set): the service reaches the server through a TCP proxy,
  cut mid-poll (at the poll's first article insert) and mid-delivery (after the first outbox parts went out):
  every open connection reset, every new one reset ("reset") or refused ("refuse") for --outage-s, then restored.
- SQLite: every statement on the service's engine fails with OperationalError for --outage-s (injected through
  SQLAlchemy's before_cursor_execute), mid-poll and mid-delivery alike.

The backoff runs at its production settings (chat loops from 1 s doubling to 30 s; the poll loop from its tick,
--poll-tick-s, doubling to 300 s); the chat loops' own intervals and the 2 s claim lease are the tests' scaled
ones, and the feed lease is skipped by shifting the runner's clock once the outage ends.

Prints one JSON object: per backend and scenario, the failed database operations during the outage (every
attempt then fails, so these are the attempts), the log lines (tracebacks among them), seconds from the end of
the outage to the first new database connection (PostgreSQL) and to full recovery (every item stored / every
part delivered), and each invariant as "ok" or the failed assertion.

    NEWSDIGEST_TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        python bench/db_outage.py --outage-s 25 [--mode reset|refuse] [--backend both|postgresql|sqlite]

Measured (--outage-s 25, reset, poll tick 5 s, 2 cores; 2 min 9 s in all), PostgreSQL / SQLite: mid-poll 11 / 11
failed operations in 25 s (8 of them the four feeds' insert and failure record at the cut, then the poll loop's
5, 10, 20 s waits), one traceback, the poll loop back 8.1 / 4.7 s after the outage and every item stored once;
mid-delivery 10 / 10 failed operations (scheduler and sender, 1-2-4-8-16 s), two tracebacks, loops back 3.5-4.3
/ 0.5-3.2 s after, all 12 parts delivered in order 7.3 / 3.5 s after the outage with no repeat.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pytest  # noqa: E402

from bot.storage.store import Store  # noqa: E402
from tests.conftest import PG_URL  # noqa: E402
from tests.fakes.feed_server import FeedServer  # noqa: E402
from tests.test_fault_db_outage import (  # noqa: E402
    FEEDS,
    DatabaseOutage,
    check_delivery,
    check_poll,
    control_keys,
    deliver_through_outage,
    poll_through_outage,
)
from tests.test_fault_pg_proxy import LoopbackFetcher, ProxiedDatabase, ProxyCut  # noqa: E402


class Records(logging.Handler):
    """Keeps the WARNING-and-above records of the run."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Keep it."""
        self.records.append(record)


@contextmanager
def captured() -> Iterator[Records]:
    """Collect the records logged inside the block."""
    h = Records()
    root = logging.getLogger()
    root.addHandler(h)
    try:
        yield h
    finally:
        root.removeHandler(h)


def log_summary(records: list[logging.LogRecord], restored_at: float | None) -> dict[str, Any]:
    """Counts of what the service logged, and when each loop found the database back (seconds after the
    outage ended, from its "the database is back" line)."""
    msgs = [r.getMessage() for r in records]
    back = {m.split(":", 1)[0]: round(r.created - restored_at, 2) for r, m in zip(records, msgs, strict=True)
            if "the database is back" in m and restored_at is not None}
    return {"warnings_or_errors": len(records), "tracebacks": sum(1 for r in records if r.exc_info),
            "outage_lines": sum("the database is unavailable" in m for m in msgs),
            "retry_lines": sum("still unavailable" in m for m in msgs),
            "s_to_loop_back_after_restore": back}


class Stamped:
    """A fault whose end() is timestamped (wall time, as log records are)."""

    def __init__(self, fault: Any) -> None:
        self.fault = fault
        self.restored_at: float | None = None

    @property
    def down(self) -> bool:
        """The fault's state."""
        return self.fault.down

    def end(self) -> None:
        """End the fault, noting when."""
        self.fault.end()
        self.restored_at = time.time()


def invariant(check: Callable[[], None]) -> str:
    """'ok', or the failed assertion's message."""
    try:
        check()
    except AssertionError as exc:
        return f"FAILED: {exc}"
    return "ok"


class SqliteFaults:
    """Counts the injected failures inside the outage (DatabaseOutage counts all)."""

    def __init__(self, outage: DatabaseOutage) -> None:
        self.outage = outage
        self.start_failed = 0
        self.during = 0
        self.cut_at = self.restored_at = 0.0

    def mark_down(self) -> None:
        """The outage began."""
        self.start_failed, self.cut_at = self.outage.failed, time.monotonic()

    def mark_up(self) -> None:
        """The outage ended."""
        self.during, self.restored_at = self.outage.failed - self.start_failed, time.monotonic()


async def poll_scenario(backend: str, mode: str, outage_s: float, tick_s: float, feed_server: FeedServer,
                        tmp: Path) -> dict[str, Any]:
    """Mid-poll: the outage starts at the poll's first article insert."""
    urls = [feed_server.url(f"/feeds/{n}") for n in FEEDS]
    expected = await control_keys(urls, tmp, LoopbackFetcher)
    mp = pytest.MonkeyPatch()
    db = store = None
    try:
        if backend == "postgresql":
            db = ProxiedDatabase(PG_URL)
            store, fault = db.store, ProxyCut(db, mode)
        else:
            store = Store.open(f"sqlite:///{tmp / 'poll.db'}")
            fault = DatabaseOutage(store.engine, arm_on="INSERT INTO articles")
        with captured() as logs:
            stamped = Stamped(fault)
            out = await poll_through_outage(store, urls, expected, stamped, outage_s, mp,
                                            fetcher_type=LoopbackFetcher, tick_s=tick_s,
                                            catch_up_s=max(60.0, 2 * outage_s))
        fault.remove()
        result: dict[str, Any] = {"feeds": len(urls), "items_expected": len(expected), "items_stored": len(out.keys),
                                  "poll_tick_s": tick_s}
        if db is not None:
            result["failed_db_operations_during_outage"] = db.failures_while_cut()
            result["connections_dropped_at_cut"] = db.proxy.dropped
        else:
            result["failed_db_operations_during_outage"] = fault.failed
        result["s_to_recovered"] = None if out.recovered_s is None else round(out.recovered_s, 2)
        result["log"] = log_summary(logs.records, stamped.restored_at)
        result["invariants"] = {
            "stored_once_nothing_lost_loop_alive": invariant(lambda: check_poll(out, expected)),
            "no_feed_in_error_after_recovery": "ok" if out.recovered_s is not None else "FAILED: not recovered",
        }
        return result
    finally:
        mp.undo()
        if db is not None:
            db.close()
        elif store is not None:
            store.close()


async def delivery_scenario(backend: str, mode: str, outage_s: float, tmp: Path) -> dict[str, Any]:
    """Mid-delivery: the outage starts once the first outbox parts went out."""
    db = store = None
    restored: list[float] = []
    try:
        if backend == "postgresql":
            db = ProxiedDatabase(PG_URL)
            store = db.store
            faults = None

            def down() -> None:
                db.proxy.cut(mode)

            def up() -> None:
                db.proxy.restore()
                restored.append(time.time())
        else:
            store = Store.open(f"sqlite:///{tmp / 'delivery.db'}")
            outage = DatabaseOutage(store.engine)
            faults = SqliteFaults(outage)

            def down() -> None:
                faults.mark_down()
                outage.down = True

            def up() -> None:
                outage.end()
                faults.mark_up()
                restored.append(time.time())

        with captured() as logs:
            out = await deliver_through_outage(store, down, up, outage_s)
        result: dict[str, Any] = {"chats": len(out.expected), "parts": sum(len(v) for v in out.expected.values())}
        if db is not None:
            result["failed_db_operations_during_outage"] = db.failures_while_cut()
            result["connections_dropped_at_cut"] = db.proxy.dropped
        else:
            assert faults is not None
            faults.outage.remove()
            result["failed_db_operations_during_outage"] = faults.during
        result["s_to_drained_after_restore"] = round(out.recovered_s, 2)
        result["telegram_repeats"] = sum(out.repeats.values())
        result["log"] = log_summary(logs.records, restored[0] if restored else None)
        result["invariants"] = {"delivered_in_order_at_most_one_repeat_nothing_pending_alive":
                                invariant(lambda: check_delivery(out))}
        return result
    finally:
        if db is not None:
            db.close()
        elif store is not None:
            store.close()


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--outage-s", type=float, default=25.0)
    ap.add_argument("--mode", choices=("reset", "refuse"), default="reset", help="how the proxy refuses (PostgreSQL)")
    ap.add_argument("--backend", choices=("both", "postgresql", "sqlite"), default="both")
    ap.add_argument("--poll-tick-s", type=float, default=5.0,
                    help="the poll loop's tick and first backoff step (production: 30)")
    args = ap.parse_args()
    # The service's warnings are collected and counted, not printed.
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger().addHandler(logging.NullHandler())
    backends = ["postgresql", "sqlite"] if args.backend == "both" else [args.backend]
    if "postgresql" in backends and not PG_URL:
        if args.backend == "postgresql":
            print("NEWSDIGEST_TEST_DATABASE_URL is not set", file=sys.stderr)
            return 2
        backends.remove("postgresql")
    summary: dict[str, Any] = {"outage_s": args.outage_s, "mode": args.mode, "backends": {}}
    server = FeedServer().start()
    try:
        for backend in backends:
            with tempfile.TemporaryDirectory() as d:
                t0 = time.monotonic()
                poll = await poll_scenario(backend, args.mode, args.outage_s, args.poll_tick_s, server, Path(d))
                delivery = await delivery_scenario(backend, args.mode, args.outage_s, Path(d))
                summary["backends"][backend] = {"mid_poll": poll, "mid_delivery": delivery,
                                                "wall_s": round(time.monotonic() - t0, 1)}
    finally:
        server.stop()
    print(json.dumps(summary, indent=2))
    ok = all(v == "ok" for b in summary["backends"].values() for s in ("mid_poll", "mid_delivery")
             for v in b[s]["invariants"].values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

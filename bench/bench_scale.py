"""Scale-out throughput: feeds polled and articles processed per minute with 1, 2 and 3 `newsdigest worker`
processes (and one scheduler) on N local feeds, against the single process (`newsdigest poll --once`, which
polls, fetches pages and processes in one go) on the same world and the same PostgreSQL.

Each run gets a fresh database and empty queues; the clock starts at the first feed request the feed server sees
(so process start is not counted; loading the models is, in every run) and stops when every article is stored,
has its text and is processed. Workers embed articles in parallel (queue "embed") and place them one at a time
(queue "process", the advisory lock "processing"). Prints a table, then one JSON object: per run the seconds,
feeds/min and articles/min, the ratios to 1 worker and to the single process (the broker's overhead is
1 - workers_1 / single), and the machine's load average before and after (other people's work included).

    NEWSDIGEST_TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
    NEWSDIGEST_TEST_BROKER_URL=amqp://guest:guest@127.0.0.1:5672// NEWSDIGEST_TEST_REDIS_URL=redis://127.0.0.1:6379/0 \\
    .venv/bin/python bench/bench_scale.py --feeds 1000 --events 300

`--quick` is a short check (60 feeds, 20 events) for a shared development machine.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.storage.store import Store  # noqa: E402
from tests.fakes.crash_rig import World  # noqa: E402
from tests.fakes.feed_server import FeedServer  # noqa: E402

PG_URL = os.environ.get("NEWSDIGEST_TEST_DATABASE_URL", "")
BROKER_URL = os.environ.get("NEWSDIGEST_TEST_BROKER_URL", "")
REDIS_URL = os.environ.get("NEWSDIGEST_TEST_REDIS_URL", "")


def _admin_url() -> str:
    return PG_URL.replace("postgresql://", "postgresql+psycopg://", 1) if PG_URL.startswith("postgresql://") \
        else PG_URL


def _fresh_database() -> tuple[str, str]:
    name = "bench_scale_" + uuid.uuid4().hex[:8]
    admin = create_engine(_admin_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    base, _, query = _admin_url().partition("?")
    return name, base.rsplit("/", 1)[0] + "/" + name + (f"?{query}" if query else "")


def _drop_database(name: str) -> None:
    admin = create_engine(_admin_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _flush() -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from tests.test_scale_out import flush_broker_and_limits

    flush_broker_and_limits(BROKER_URL, REDIS_URL)


def _state(url: str) -> tuple[int, int, int]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            row = conn.execute(text("SELECT count(*), count(*) FILTER (WHERE processed_at IS NULL), "
                                    "count(*) FILTER (WHERE text_source = 'pending') FROM articles")).one()
        return int(row[0]), int(row[1]), int(row[2])
    finally:
        engine.dispose()


def run_once(workers: int, feeds: int, events: int, seed: int, tmp: Path, log_level: str = "WARNING"
             ) -> dict[str, float]:
    """One measured run: `workers` = 0 means the single process."""
    server = FeedServer().start()
    name, url = _fresh_database()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        world = World(server, random.Random(seed), feeds=feeds)
        world.publish(events)
        paths = [world.feed_path(f) for f in range(feeds)]
        feeds_yaml = tmp / f"feeds-{workers}.yaml"
        feeds_yaml.write_text("feeds:\n" + "".join(f"  - {{url: '{server.url(p)}', interval: 30m}}\n" for p in paths))
        Store.open(url).close()
        if workers:
            _flush()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NEWSDIGEST_", "TELEGRAM_", "DISCORD_"))}
        env.update(NEWSDIGEST_DATABASE_URL=url, NEWSDIGEST_FEEDS_FILE=str(feeds_yaml), NEWSDIGEST_ALLOW_PRIVATE_URLS="1",
                   NEWSDIGEST_BROKER_URL=BROKER_URL, NEWSDIGEST_REDIS_URL=REDIS_URL, NEWSDIGEST_SCHEDULER_TICK_S="0.5",
                   NEWSDIGEST_HOST_REQUESTS_PER_S="1000", NEWSDIGEST_LOG_LEVEL=log_level,
                   PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""))
        log = (tmp / f"run-{workers}.log").open("w")
        if workers:
            for _ in range(workers):
                procs.append(subprocess.Popen([sys.executable, "-m", "bot", "worker", "--threads", "8"], env=env,
                                              stdout=log, stderr=subprocess.STDOUT))
            time.sleep(3.0)  # workers up (models load on their first processing task, counted)
            procs.append(subprocess.Popen([sys.executable, "-m", "bot", "scheduler"], env=env, stdout=log,
                                          stderr=subprocess.STDOUT))
        else:
            procs.append(subprocess.Popen([sys.executable, "-m", "bot", "poll", "--once"], env=env, stdout=log,
                                          stderr=subprocess.STDOUT))
        items = len({i.link for i in world.items})
        while not any(server.hits[p] for p in paths):
            time.sleep(0.02)
        started = time.monotonic()
        polled_at = None
        while True:
            if polled_at is None and all(server.hits[p] for p in paths):
                polled_at = time.monotonic()
            total, waiting, pending = _state(url)
            if polled_at is not None and total >= items and not waiting and not pending:
                break
            if time.monotonic() - started > 1800:
                raise TimeoutError(f"run with {workers} workers did not finish")
            time.sleep(0.2)
        done = time.monotonic() - started
        assert polled_at is not None
        return {"seconds": round(done, 2), "poll_seconds": round(polled_at - started, 2),
                "feeds_per_min": round(feeds / done * 60, 1), "articles_per_min": round(items / done * 60, 1),
                "articles": items}
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(60)
                except subprocess.TimeoutExpired:
                    p.kill()
        server.stop()
        _drop_database(name)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--feeds", type=int, default=None, help="local feeds (1000; 60 with --quick)")
    ap.add_argument("--events", type=int, default=None, help="events published, each on 1-3 feeds (300; 20 with --quick)")
    ap.add_argument("--workers", default="1,2,3", help="worker counts to run, comma-separated")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="a short run: 60 feeds, 20 events")
    ap.add_argument("--logs", type=Path, default=None,
                    help="keep each run's log (INFO) in this folder (default: WARNING, in a temporary folder)")
    args = ap.parse_args()
    args.feeds = args.feeds if args.feeds is not None else 60 if args.quick else 1000
    args.events = args.events if args.events is not None else 20 if args.quick else 300
    if args.feeds < 1 or args.events < 1:
        print("bench_scale: --feeds and --events must be at least 1", file=sys.stderr)
        return 2
    try:
        counts = [int(x) for x in args.workers.split(",")]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        print(f"bench_scale: --workers takes worker counts like 1,2,3 (got {args.workers!r})", file=sys.stderr)
        return 2
    if not (PG_URL and BROKER_URL and (REDIS_URL or BROKER_URL.startswith("redis"))):
        print("bench_scale: set NEWSDIGEST_TEST_DATABASE_URL, NEWSDIGEST_TEST_BROKER_URL and "
              "NEWSDIGEST_TEST_REDIS_URL", file=sys.stderr)
        return 2
    results: dict[str, dict[str, float]] = {}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        where, level = (args.logs, "INFO") if args.logs else (Path(tmp), "WARNING")
        where.mkdir(parents=True, exist_ok=True)
        results["single_process"] = run_once(0, args.feeds, args.events, args.seed, where, level)
        for n in counts:
            results[f"workers_{n}"] = run_once(n, args.feeds, args.events, args.seed, where, level)
    load_after = os.getloadavg()
    base = results.get("workers_1")
    single = results["single_process"]
    ratios = {k: round(v["feeds_per_min"] / base["feeds_per_min"], 2) for k, v in results.items()} if base else {}
    to_single = {k: round(v["feeds_per_min"] / single["feeds_per_min"], 2) for k, v in results.items()}
    overhead = round(1 - base["feeds_per_min"] / single["feeds_per_min"], 3) if base else None
    print(f"{args.feeds} feeds, {int(single['articles'])} articles, {os.cpu_count()} CPUs, "
          f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after")
    print(f"{'run':<16}{'seconds':>9}{'feeds/min':>11}{'articles/min':>14}{'vs 1 worker':>13}{'vs single':>11}")
    for k, v in results.items():
        print(f"{k:<16}{v['seconds']:>9.1f}{v['feeds_per_min']:>11.1f}{v['articles_per_min']:>14.1f}"
              f"{ratios.get(k, float('nan')):>13.2f}{to_single[k]:>11.2f}")
    if overhead is not None:
        print(f"broker overhead (1 worker against the single process): {overhead:.1%}")
    print(json.dumps({"feeds": args.feeds, "events": args.events, "cpus": os.cpu_count(),
                      "load_average_before": [round(x, 2) for x in load_before],
                      "load_average_after": [round(x, 2) for x in load_after], "runs": results,
                      "ratio_to_1_worker": ratios, "ratio_to_single_process": to_single,
                      "broker_overhead": overhead}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Resident memory of `newsdigest run`'s whole process tree, before and after the lean runtime, in one run.

The real service (`newsdigest run` through tests/fakes/scaled_service.py: the same code path, its waits divided
by --scale) runs against a SQLite file, N local feeds with article pages (tests/fakes/crash_rig.World), the
fake Telegram Bot API (one subscribed chat) and the fake Discord API and gateway (one server; --no-discord
leaves the Discord adapter off): both chat adapters on, and the extractive default summarizer. For each
variant it measures:
  first_poll_s     start to the first feed request the feed server sees
  cycle_s          start to "every item stored and processed, the chat's digest delivered"
  after_cycle_mb   RSS and PSS (proportional set size: shared pages split between processes) of the process
                   tree then, with the process count
  growth           after --cycles more poll cycles (a new event published every cycle): RSS/PSS at the end,
                   and the least-squares slope of PSS per cycle over the second half of the samples
  peak             the largest RSS and PSS sums sampled (every 0.2 s in the first cycle, once per cycle after):
                   embedding batches and page extraction hold memory for moments, so a single sample right
                   after the cycle lands between ~settled and ~peak
  settled          the median RSS/PSS sums over the cycles' samples
Variants: `before` = the torch embedder (sentence-transformers, NEWSDIGEST_EMBEDDER_BACKEND=torch); `after` =
the default (onnx); `inprocess` = the default with NEWSDIGEST_PARSE_WORKERS=0 (no parse worker, no
multiprocessing resource tracker); `geo-minilm` = the default with NEWSDIGEST_GEO_ENCODER=minilm (the
geopolitics head on MiniLM vectors: no all-mpnet-base-v2 session). RSS sums count pages shared between the processes (libpython, the
libraries' code) once per process; PSS splits them, so the PSS sum is what the tree costs the machine. Each
process is listed with both. Prints one JSON object with the variants and the after/before ratio.
Usage:  python bench/bench_footprint.py [--feeds 7] [--events 100] [--cycles 200] [--scale 60]
                                        [--interval 15m] [--only VARIANT[,VARIANT...]]
A "cycle" is one tick of the poll loop (30 s / --scale); the feeds are polled every --interval (15m, the
default feeds.yaml's, is 30 ticks; 1m polls every other tick, the most a feed may be polled).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fakes.crash_rig import World  # noqa: E402
from tests.fakes.discord_api import TOKEN as DISCORD_TOKEN  # noqa: E402
from tests.fakes.discord_api import FakeDiscord  # noqa: E402
from tests.fakes.feed_server import FeedServer  # noqa: E402
from tests.fakes.telegram_api import TOKEN, FakeTelegramAPI  # noqa: E402

CHAT = 7001
VARIANTS = {"before": {"NEWSDIGEST_EMBEDDER_BACKEND": "torch"},
            "after": {"NEWSDIGEST_EMBEDDER_BACKEND": "onnx"},
            "inprocess": {"NEWSDIGEST_EMBEDDER_BACKEND": "onnx", "NEWSDIGEST_PARSE_WORKERS": "0"},
            "geo-minilm": {"NEWSDIGEST_EMBEDDER_BACKEND": "onnx", "NEWSDIGEST_GEO_ENCODER": "minilm"}}


def tree(pid: int) -> list[int]:
    """pid and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def memory_mb(pid: int) -> dict[str, float]:
    """RSS and PSS of the process tree in MB, and how many processes it has."""
    rss = pss = 0
    each = []
    for p in tree(pid):
        try:
            r = q = 0
            with open(f"/proc/{p}/smaps_rollup") as fh:
                for line in fh:
                    if line.startswith("Rss:"):
                        r = int(line.split()[1])
                    elif line.startswith("Pss:"):
                        q = int(line.split()[1])
            with open(f"/proc/{p}/cmdline", "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        rss, pss = rss + r, pss + q
        each.append({"pid": p, "rss_mb": round(r / 1024, 1), "pss_mb": round(q / 1024, 1), "cmd": cmd[-60:]})
    return {"rss_mb": round(rss / 1024, 1), "pss_mb": round(pss / 1024, 1), "processes": len(each),
            "each": each}


def db_count(db: Path, sql: str) -> int:
    try:
        conn = sqlite3.connect(db, timeout=10)
        try:
            return int(conn.execute(sql).fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def _peak(peak: dict[str, float], now: dict[str, Any]) -> dict[str, float]:
    return {k: max(peak[k], float(now[k])) for k in ("rss_mb", "pss_mb")}


def slope(ys: list[float]) -> float:
    """Least-squares slope of ys against their index."""
    n = len(ys)
    if n < 2:
        return 0.0
    mx, my = (n - 1) / 2, sum(ys) / n
    return sum((i - mx) * (y - my) for i, y in enumerate(ys)) / sum((i - mx) ** 2 for i in range(n))


async def run_variant(name: str, extra_env: dict[str, str], args: argparse.Namespace) -> dict[str, Any]:
    """One service run: first cycle, then `cycles` more."""
    workdir = Path(tempfile.mkdtemp(prefix=f"footprint-{name}-"))
    db = workdir / "footprint.db"
    server = FeedServer().start()
    rng = random.Random(args.seed)
    try:
        async with FakeTelegramAPI() as api, FakeDiscord() as discord_api:
            api.add_chat(CHAT)
            discord_api.add_guild("World desk", channels=("news",))
            world = World(server, rng, feeds=args.feeds)
            world.publish(args.events)
            feeds = "feeds:\n" + "".join(f"  - {{url: '{server.url(world.feed_path(f))}', name: Outlet {f}, "
                                         f"interval: {args.interval}}}\n" for f in range(args.feeds))
            (workdir / "feeds.yaml").write_text(feeds)
            env = {k: v for k, v in os.environ.items() if not k.startswith(("NEWSDIGEST_", "TELEGRAM_", "DISCORD_", "MALLOC_"))}
            env.update(NEWSDIGEST_DATABASE_URL=f"sqlite:///{db}", NEWSDIGEST_FEEDS_FILE=str(workdir / "feeds.yaml"),
                       NEWSDIGEST_ALLOW_PRIVATE_URLS="1", TELEGRAM_BOT_TOKEN=TOKEN, TELEGRAM_API_BASE_URL=api.root,
                       **({"DISCORD_BOT_TOKEN": DISCORD_TOKEN,
                           "NEWSDIGEST_TEST_FAKE_DISCORD_PORT": str(discord_api.port)} if args.discord else {}),
                       **extra_env,
                       PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""))
            log = (workdir / "service.log").open("w")
            started = time.monotonic()
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tests.fakes.scaled_service", "--scale", str(args.scale), env=env,
                cwd=workdir, stdout=log, stderr=log)
            try:
                first_poll = None
                peak = {"rss_mb": 0.0, "pss_mb": 0.0}
                api.user_message(CHAT, CHAT, "/subscribe")
                subscribed = False
                items = len(world.items)
                while time.monotonic() - started < args.timeout_s:
                    if proc.returncode is not None:
                        raise RuntimeError(f"{name}: the service exited; see {workdir / 'service.log'}")
                    if first_poll is None and any(k.startswith("/crash/feed") for k in server.hits):
                        first_poll = time.monotonic() - started
                    processed = db_count(db, "SELECT count(*) FROM articles WHERE processed_at IS NOT NULL")
                    if not subscribed and api.sent_to(CHAT) and processed >= items:
                        subscribed = True  # everything is in: the chat's digest is due now (as /digest_now does)
                        conn = sqlite3.connect(db, timeout=10)
                        with conn:
                            conn.execute("UPDATE subscriptions SET next_due_at = '2000-01-01 00:00:00.000000'")
                        conn.close()
                    if subscribed and len(api.sent_to(CHAT)) >= 2:
                        break
                    peak = _peak(peak, memory_mb(proc.pid))
                    await asyncio.sleep(0.2)
                else:
                    raise RuntimeError(f"{name}: no full cycle in {args.timeout_s} s; see {workdir / 'service.log'}")
                cycle_s = time.monotonic() - started
                await asyncio.sleep(1.0)  # let the cycle's last work finish
                after_cycle = memory_mb(proc.pid)
                tick = 30.0 / args.scale
                samples, rss_samples = [], []
                for _ in range(args.cycles):
                    world.publish(1)
                    await asyncio.sleep(tick)
                    now = memory_mb(proc.pid)
                    peak = _peak(peak, now)
                    samples.append(now["pss_mb"])
                    rss_samples.append(now["rss_mb"])
                end = memory_mb(proc.pid)
                half = samples[len(samples) // 2:]
                return {"env": extra_env, "first_poll_s": round(first_poll or -1, 2), "cycle_s": round(cycle_s, 1),
                        "items": items, "after_cycle": after_cycle, "cycles": args.cycles, "after_cycles": end,
                        "pss_growth_mb_per_cycle": round(slope(half), 4), "peak": peak,
                        "settled": {"rss_mb": statistics.median(rss_samples or [0.0]),
                                    "pss_mb": statistics.median(samples or [0.0])},
                        "articles_after_cycles": db_count(db, "SELECT count(*) FROM articles")}
            finally:
                if proc.returncode is None:
                    proc.terminate()
                    try:
                        await asyncio.wait_for(proc.wait(), 60)
                    except TimeoutError:
                        proc.kill()
                log.close()
    finally:
        server.stop()


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"feeds": args.feeds, "events": args.events, "scale": args.scale,
                           "interval": args.interval, "discord": args.discord}
    for name, env in VARIANTS.items():
        if args.only is None or name in args.only.split(","):
            out[name] = await run_variant(name, env, args)
            print(json.dumps({name: out[name]}), file=sys.stderr)
    if "before" in out and "after" in out:
        out["ratio_pss_after_cycle"] = round(out["after"]["after_cycle"]["pss_mb"]
                                             / out["before"]["after_cycle"]["pss_mb"], 3)
    if "geo-minilm" in out and "after" in out:  # what the all-mpnet-base-v2 geopolitics encoder costs
        out["ratio_pss_after_cycle_mpnet_vs_minilm"] = round(out["after"]["after_cycle"]["pss_mb"]
                                                             / out["geo-minilm"]["after_cycle"]["pss_mb"], 3)
    return out


def main() -> None:
    """Run the variants and print the JSON summary."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--feeds", type=int, default=7)
    p.add_argument("--events", type=int, default=100, help="events published before the first cycle")
    p.add_argument("--cycles", type=int, default=200)
    p.add_argument("--no-discord", dest="discord", action="store_false",
                   help="Telegram alone (by default both chat adapters run, Discord against a local fake)")
    p.add_argument("--interval", default="15m",
                   help="the feeds' poll interval (default 15m, as in the default feeds.yaml; 1m polls every "
                        "other tick)")
    p.add_argument("--scale", type=float, default=60.0, help="divide the service's waits (tick 30 s) by this")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--timeout-s", type=float, default=600.0)
    p.add_argument("--only", default=None, help=f"comma-separated variants of {', '.join(VARIANTS)}")
    print(json.dumps(asyncio.run(main_async(p.parse_args())), indent=2))


if __name__ == "__main__":
    main()

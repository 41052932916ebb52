"""Poll 1,000 realistic feeds from a local server: one all-new cycle and one all-304 cycle.

Compares newsdigest's poller (concurrent, conditional GET, parse + store in SQLite) with a naive baseline run in
the same invocation (sequential httpx GET + feedparser, no conditional GET, nothing stored). Each phase runs in a
fresh child process so its peak RSS is its own. Usage:  python bench/bench_poll.py [--feeds 1000] [--latency-ms 50]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import multiprocessing as mp
import os
import re
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
FIXTURES = ROOT / "tests" / "data" / "feeds"
SOURCES = ["bbc_2020-04-27T2107Z.xml", "nytimes_2020-04-27T2107Z.xml", "smh_2020-04-27T2107Z.xml",
           "fox_2020-04-27T2107Z.xml", "nzherald_2020-04-27T2107Z.xml", "bbc_world_2025-06-23.xml"]


def make_feeds(n: int) -> list[bytes]:
    """n distinct feeds of realistic size: real outlet feeds with links and GUIDs made unique per feed."""
    bodies = [(FIXTURES / s).read_bytes() for s in SOURCES]
    out = []
    for i in range(n):
        body = bodies[i % len(bodies)]
        out.append(re.sub(rb"(<(?:link|guid)[^>]*>)(https?://[^<]+)", lambda m, i=i: m.group(1) + m.group(2)
                          + f"{'&' if b'?' in m.group(2) else '?'}f={i}".encode(), body))
    return out


def serve(feeds: list[bytes], port_q: mp.Queue, latency_s: float) -> None:
    """aiohttp server with ETag support, in its own process so it does not share our GIL."""
    from aiohttp import web

    etags = [f'"{hashlib.sha1(b).hexdigest()}"' for b in feeds]

    async def handle(request: web.Request) -> web.Response:
        i = int(request.match_info["i"])
        if latency_s:
            await asyncio.sleep(latency_s)  # a real host's response time, without using CPU here
        if request.headers.get("If-None-Match") == etags[i]:
            return web.Response(status=304, headers={"ETag": etags[i]})
        return web.Response(body=feeds[i], content_type="application/xml", headers={"ETag": etags[i]})

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/feed/{i}.xml", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=2048)
        await site.start()
        port_q.put(site._server.sockets[0].getsockname()[1])
        await asyncio.Event().wait()

    asyncio.run(main())


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_ours(base: str, n: int, db: str, out: mp.Queue) -> None:
    """Two cycles of our poller: all new, then all 304."""
    os.environ["NEWSDIGEST_ALLOW_PRIVATE_URLS"] = "1"
    from bot.models import FeedSpec
    from bot.net import Fetcher, FetchLimits
    from bot.runner import Runner, parse_pool
    from bot.storage.store import Store

    store = Store.open(f"sqlite:///{db}")
    for i in range(n):
        store.add_feed(FeedSpec(url=f"{base}/feed/{i}.xml"), "cli")

    pool = parse_pool()

    async def cycle(force: bool):  # noqa: ANN202
        async with Fetcher(FetchLimits(allow_private=True, max_connections=32, per_host=32)) as f:
            t = time.perf_counter()
            rep = await Runner(store, f, progress_every_s=3600, parse_pool=pool).poll_once(force=force)
            return time.perf_counter() - t, rep

    base_rss = _rss_mb()
    t1, r1 = asyncio.run(cycle(False))
    t2, r2 = asyncio.run(cycle(True))
    pool.shutdown()  # reaped workers count in RUSAGE_CHILDREN: the parse pool's memory is reported too
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    out.put({"new_s": t1, "new_articles": r1.new_articles, "failed": len(r1.failed), "304_s": t2,
             "not_modified": r2.not_modified, "peak_rss_mb": _rss_mb(), "rss_before_mb": base_rss,
             "parse_worker_peak_rss_mb": workers})


def run_naive(base: str, n: int, out: mp.Queue) -> None:
    """Sequential GET + feedparser for every feed, twice (no conditional GET, so the second is a full fetch)."""
    import feedparser
    import httpx

    base_rss = _rss_mb()
    times, entries = [], 0
    with httpx.Client() as client:
        for _ in range(2):
            t = time.perf_counter()
            for i in range(n):
                entries += len(feedparser.parse(client.get(f"{base}/feed/{i}.xml").content).entries)
            times.append(time.perf_counter() - t)
    out.put({"new_s": times[0], "304_s": times[1], "entries": entries // 2, "peak_rss_mb": _rss_mb(),
             "rss_before_mb": base_rss})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--feeds", type=int, default=1000)
    ap.add_argument("--latency-ms", type=float, default=50.0, help="server response delay per request")
    args = ap.parse_args()
    ctx = mp.get_context("spawn")
    feeds = make_feeds(args.feeds)
    print(f"{args.feeds} feeds, {args.latency_ms:g} ms server latency, {sum(map(len, feeds)) / 1e6:.1f} MB in all, "
          f"{sum(map(len, feeds)) / len(feeds) / 1e3:.0f} kB on average", flush=True)
    q: mp.Queue = ctx.Queue()
    server = ctx.Process(target=serve, args=(feeds, q, args.latency_ms / 1000), daemon=True)
    server.start()
    base = f"http://127.0.0.1:{q.get(timeout=30)}"
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, target, extra in (("naive", run_naive, ()), ("newsdigest", run_ours, (str(Path(tmp) / "b.db"),))):
            p = ctx.Process(target=target, args=(base, args.feeds, *extra, q))
            p.start()
            results[name] = q.get(timeout=3600)
            p.join()
            print(name, results[name], flush=True)
    server.terminate()
    ours, naive = results["newsdigest"], results["naive"]
    print(f"all-new cycle: newsdigest {ours['new_s']:.1f} s vs naive {naive['new_s']:.1f} s "
          f"-> {naive['new_s'] / ours['new_s']:.2f}x faster (ours also parses + stores {ours['new_articles']} articles)")
    print(f"unchanged cycle: newsdigest {ours['304_s']:.2f} s ({ours['not_modified']} x 304) vs naive "
          f"{naive['304_s']:.1f} s (full refetch) -> {naive['304_s'] / ours['304_s']:.1f}x faster")
    print(f"peak RSS: newsdigest {ours['peak_rss_mb']:.0f} MB (+ {ours['parse_worker_peak_rss_mb']:.0f} MB per parse "
          f"worker) vs naive {naive['peak_rss_mb']:.0f} MB -> ratio {ours['peak_rss_mb'] / naive['peak_rss_mb']:.2f}")


if __name__ == "__main__":
    main()

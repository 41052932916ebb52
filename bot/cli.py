"""The `newsdigest` command line. Logs go to stderr; machine-readable output (--json) to stdout."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import sys
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.errors import BlockedURLError, CommandError, ConfigError, StorageError
from bot.settings import parse_duration

if TYPE_CHECKING:  # the app pulls in storage and the pipeline: imported only when a command needs it
    from bot.app import App
    from bot.storage.feeds import FeedRow

log = logging.getLogger("newsdigest")


def _setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    from bot.logfmt import TEXT_DATEFMT, TEXT_FORMAT, formatter

    logging.basicConfig(level=getattr(logging, level), stream=sys.stderr, format=TEXT_FORMAT, datefmt=TEXT_DATEFMT)
    # basicConfig leaves an already configured root alone: the settings' level and format are applied here.
    root = logging.getLogger()
    root.setLevel(getattr(logging, level))
    for handler in root.handlers:
        if getattr(handler, "stream", None) is sys.stderr:  # ours, not a test's capture handler
            handler.setFormatter(formatter(fmt))
    for noisy in ("httpx", "httpcore", "telegram", "discord", "sentence_transformers", "transformers", "alembic",
                  "trafilatura", "htmldate", "courlan", "filelock", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, getattr(logging, level)))


def _since(value: str) -> timedelta:
    try:
        return timedelta(seconds=parse_duration(value))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (every subcommand and flag is a contract)."""
    p = argparse.ArgumentParser(prog="newsdigest", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    poll = sub.add_parser("poll", help="poll feeds")
    poll.add_argument("--once", action="store_true", required=True, help="poll every due feed once and exit")
    poll.add_argument("--force", action="store_true", help="poll every feed, due or not (paused ones too)")
    poll.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    poll.add_argument("--no-process", action="store_true", help="skip topic/story/summary processing")

    _add_feeds(sub)

    arts = sub.add_parser("articles", help="list stored articles")
    arts.add_argument("--since", type=_since, default=None, help="e.g. 24h, 2d")
    arts.add_argument("--limit", type=int, default=200)
    arts.add_argument("--json", action="store_true")

    dig = sub.add_parser("digest", help="print the digest /summary would send now")
    dig.add_argument("--since", type=_since, default=timedelta(hours=24))
    dig.add_argument("--json", action="store_true")

    _add_eval(sub)

    _add_train(sub)

    models = sub.add_parser("models", help="manage summarization models")
    msub = models.add_subparsers(dest="models_cmd", required=True, metavar="ACTION")
    md = msub.add_parser("download", help="fetch a Hugging Face seq2seq model ahead of time (needs internet)")
    md.add_argument("model_id")
    md.add_argument("--dest", type=Path, default=None)

    sub.add_parser("run", help="run the service: poll, process, schedule and deliver digests")
    # Scale-out (docs/scaling.md): the same stages as tasks on a broker (NEWSDIGEST_BROKER_URL).
    wk = sub.add_parser("worker", help="run pipeline tasks from the broker (scale-out; needs NEWSDIGEST_BROKER_URL)")
    wk.add_argument("--queues", default="", help="comma-separated queues to consume (default: all of "
                                                  "poll,pages,embed,process,summaries,digests,deliver)")
    wk.add_argument("--threads", type=int, default=8, help="worker threads (default 8)")
    sub.add_parser("scheduler", help="schedule tasks on the broker; one leads, others stand by (scale-out)")
    return p


def _add_feeds(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`feeds list|add|remove|resume|import|export`."""
    feeds = sub.add_parser("feeds", help="manage the feed list")
    fsub = feeds.add_subparsers(dest="feeds_cmd", required=True, metavar="ACTION")
    fl = fsub.add_parser("list", help="list feeds with their state")
    fl.add_argument("--json", action="store_true")
    fa = fsub.add_parser("add", help="add a feed URL")
    fa.add_argument("url")
    fa.add_argument("--name", default="")
    fr = fsub.add_parser("remove", help="remove a feed by id or URL")
    fr.add_argument("feed")
    fres = fsub.add_parser("resume", help="clear a paused feed's errors so it is polled again")
    fres.add_argument("feed")
    fi = fsub.add_parser("import", help="import an OPML file")
    fi.add_argument("file", type=Path)
    fi.add_argument("--json", action="store_true")
    fsub.add_parser("export", help="print the feed list as OPML")


def _add_eval(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`eval extract|classify|dedup`."""
    ev = sub.add_parser("eval", help="evaluate a stage on labelled data (prints one JSON object)")
    esub = ev.add_subparsers(dest="eval_cmd", required=True, metavar="STAGE")
    for name, helptext in (("extract", "article text extraction (DIR with ground-truth.json and html/)"),
                           ("classify", "a built-in topic: geo JSON lines (geopolitical 0/1) or AG News CSV"),
                           ("dedup", "same-story detection (JSON lines: doc_id, cluster_id, text, "
                                     "optional title, published, outlet)")):
        e = esub.add_parser(name, help=helptext)
        e.add_argument("--data", type=Path, required=True)
        if name == "classify":
            e.add_argument("--topic", choices=("geopolitics", "world"), default=None,
                           help="default: geopolitics for geo JSON lines, world for AG News CSV")
        if name == "dedup":
            e.add_argument("--protocol", choices=("timed", "dense"), default=None,
                           help="timed: publication order, times and the service's window; dense: file order, "
                                "no time (default: timed when every record has `published`)")


def _add_train(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`train classify|dedup`."""
    tr = sub.add_parser("train", help="train a model head")
    tsub = tr.add_subparsers(dest="train_cmd", required=True, metavar="WHAT")
    tc = tsub.add_parser("classify", help="train a built-in topic head: geopolitics from geo JSON lines, "
                                          "world from a labelled CSV (AG News format)")
    tc.add_argument("--data", type=Path, required=True)
    tc.add_argument("--topic", choices=("geopolitics", "world"), default=None,
                    help="default: geopolitics for JSON lines, world for CSV")
    tc.add_argument("--out-dir", type=Path, default=None,
                    help="where to write geo_head.* or topic_head.* (default: replace the shipped head); "
                         "point NEWSDIGEST_TOPIC_HEAD_DIR at it to use it")
    tc.add_argument("--positive", default="1", help="class value of the topic (AG News World: 1)")
    tc.add_argument("--no-eval", action="store_true", help="skip the cross-validation report")
    tc.add_argument("--encoder", choices=("mpnet", "minilm"), default="mpnet",
                    help="geopolitics only: the head's sentence encoder (default mpnet, all-mpnet-base-v2, as "
                         "shipped; minilm: all-MiniLM-L6-v2, lighter, ~0.01 F1 lower)")
    td = tsub.add_parser("dedup", help="train the same-story pair model and its background word table")
    td.add_argument("--ecb", type=Path, required=True, help="ECB+-format JSON lines")
    td.add_argument("--allsides", type=Path, required=True, help="AllSides-format JSON lines")
    td.add_argument("--background", type=Path, nargs="+", required=True,
                    help="background news texts for word rarity (AG News CSV, JSON lines)")
    td.add_argument("--out-dir", type=Path, default=None, help="default: replace the shipped model")
    td.add_argument("--cv", action="store_true", help="also report the cross-fitted estimate (slow)")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `newsdigest` console script."""
    args = build_parser().parse_args(argv)
    _setup_logging()
    try:
        if args.cmd == "eval":
            return _eval(args)
        if args.cmd == "train":
            return _train(args)
        if args.cmd == "models":
            from summarizer.models import download_model

            path = download_model(args.model_id, args.dest)
            print(path)
            return 0
        if args.cmd in ("worker", "scheduler"):
            return _scale_out(args)
        if args.cmd == "run":
            from bot.memory import tune_malloc

            tune_malloc()  # before the models load: a long-running process should give freed memory back
        from bot.app import App
        from bot.settings import load_settings

        settings = load_settings()  # the log format before the app's first line (the feeds file sync)
        _setup_logging(settings.log_level, settings.log_format)
        app = App.from_environment(wait_for_database=args.cmd == "run")
        try:
            return _dispatch(app, args)
        finally:
            app.close()
    except ConfigError as exc:
        print(f"newsdigest: configuration error: {exc}", file=sys.stderr)
        return 2
    except (CommandError, BlockedURLError) as exc:
        print(f"newsdigest: {exc}", file=sys.stderr)
        return 1
    except StorageError as exc:
        what = "unreachable" if exc.unavailable else "error"
        print(f"newsdigest: database {what}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _scale_out(args: argparse.Namespace) -> int:
    from bot.distributed.config import load_scale_config
    from bot.distributed.service import run_scheduler, run_worker
    from bot.settings import load_settings

    load_scale_config()  # no broker: one line and exit 2, before anything starts
    settings = load_settings()
    _setup_logging(settings.log_level, settings.log_format)
    if args.cmd == "scheduler":
        return run_scheduler()
    queues = [q.strip() for q in args.queues.split(",") if q.strip()]
    return run_worker(queues or None, threads=max(1, args.threads))


def _train(args: argparse.Namespace) -> int:
    if args.train_cmd == "dedup":
        from bot.train import story_pairs

        return story_pairs.main(["--ecb", str(args.ecb), "--allsides", str(args.allsides), "--background",
                                 *map(str, args.background)]
                                + (["--out-dir", str(args.out_dir)] if args.out_dir else [])
                                + (["--cv"] if args.cv else []))
    from bot.eval.classify import detect_format
    from bot.train import geo_head, topic_head

    try:
        topic = args.topic or ("geopolitics" if detect_format(args.data) == "geo" else "world")
    except (OSError, ValueError) as exc:
        print(f"newsdigest train classify: {exc}", file=sys.stderr)
        return 2
    common = ((["--out-dir", str(args.out_dir)] if args.out_dir else [])
              + (["--no-eval"] if args.no_eval else []))
    if topic == "geopolitics":
        return geo_head.main(["--data", str(args.data), "--encoder", args.encoder, *common])
    return topic_head.main(["--data", str(args.data), "--positive", args.positive, *common])


def _eval(args: argparse.Namespace) -> int:
    if args.eval_cmd == "classify":
        from bot.eval import classify

        return classify.main(["--data", str(args.data)] + (["--topic", args.topic] if args.topic else []))
    if args.eval_cmd == "extract":
        from bot.eval import extract

        return extract.main(["--data", str(args.data)])
    from bot.eval import dedup

    return dedup.main(["--data", str(args.data)] + (["--protocol", args.protocol] if args.protocol else []))


def _dispatch(app: App, args: argparse.Namespace) -> int:
    """Run a command that needs the app: one function per subcommand."""
    commands: dict[str, Callable[[App, argparse.Namespace], int]] = {
        "poll": _poll, "feeds": _feeds, "articles": _articles,
        "digest": lambda app, args: app.print_digest(args.since, as_json=args.json),
        "run": lambda app, args: app.run_service()}
    if args.cmd not in commands:
        raise AssertionError(args.cmd)
    return commands[args.cmd](app, args)


def _poll(app: App, args: argparse.Namespace) -> int:
    """`poll --once`: one cycle, its report as a line (or JSON) and each failed feed."""
    report = asyncio.run(app.poll_once(force=args.force, process=not args.no_process))
    if args.json:
        print(json.dumps(report.as_dict()))
    else:
        print(f"{report.feeds} feeds: {report.fetched} fetched, {report.not_modified} not modified, "
              f"{len(report.failed)} failed; {report.new_articles} new articles")
        for f in report.failed:
            print(f"  failed: {f['url']}: {f['error']}")
    return 0


def _feeds(app: App, args: argparse.Namespace) -> int:
    """`feeds ACTION`: one function per action."""
    actions: dict[str, Callable[[App, argparse.Namespace], int]] = {
        "list": _feeds_list, "add": _feeds_add, "remove": _feeds_remove_or_resume,
        "resume": _feeds_remove_or_resume, "import": _feeds_import, "export": _feeds_export}
    return actions[args.feeds_cmd](app, args)


def _feeds_list(app: App, args: argparse.Namespace) -> int:
    rows = app.store.list_feeds()
    if args.json:
        print(json.dumps([_feed_json(r) for r in rows]))
        return 0
    for r in rows:
        state = ("disabled" if not r.enabled else f"PAUSED: {r.paused_reason}" if r.paused_reason
                 else f"{r.error_count} errors: {r.last_error}" if r.error_count else "ok")
        print(f"{r.id:>4}  {r.display_name[:40]:<40}  {r.url}  [{state}]")
    return 0


def _feeds_add(app: App, args: argparse.Namespace) -> int:
    from bot.feedlist import add_feed

    row, created = add_feed(app.store, args.url, origin="cli", allow_private=app.settings.allow_private_urls,
                            name=args.name)
    print(f"{'added' if created else 'already present'}: {row.id} {row.url}")
    return 0


def _feeds_remove_or_resume(app: App, args: argparse.Namespace) -> int:
    change = app.store.remove_feed if args.feeds_cmd == "remove" else app.store.resume_feed
    changed = change(args.feed)
    if changed is None:
        print(f"newsdigest: no feed {args.feed!r}", file=sys.stderr)
        return 1
    print(f"{args.feeds_cmd}d: {changed.id} {changed.url}")
    return 0


def _feeds_import(app: App, args: argparse.Namespace) -> int:
    from bot.feedlist import import_opml

    try:
        data = args.file.read_bytes()
    except OSError as exc:
        print(f"newsdigest: {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    try:
        imported = import_opml(app.store, data, origin="opml", allow_private=app.settings.allow_private_urls)
    except CommandError as exc:
        # Not OPML at all (text, HTML, a feed, a bomb): a bad input file, like a bad feeds file.
        print(f"newsdigest: {args.file}: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(imported.as_dict()))
        return 0
    print(imported.summary())
    for url, title in imported.added:
        print(f"  added: {url} {title}")
    for url in imported.duplicates:
        print(f"  skipped (duplicate): {url}")
    for url, reason in imported.rejected:
        print(f"  rejected: {url}: {reason}")
    return 0


def _feeds_export(app: App, args: argparse.Namespace) -> int:
    from bot.feedlist import export_opml

    sys.stdout.write(export_opml(app.store.list_feeds()))
    return 0


def _articles(app: App, args: argparse.Namespace) -> int:
    """`articles`: stored articles as lines (their count on stderr) or JSON."""
    from bot.clock import utcnow

    since = utcnow() - args.since if args.since else None
    articles = app.store.list_articles(since=since, limit=args.limit)
    if args.json:
        print(json.dumps([dataclasses.asdict(a) for a in articles], default=lambda v: v.isoformat()))
        return 0
    for a in articles:
        when = (a.published_at or a.fetched_at).strftime("%Y-%m-%d %H:%M")
        print(f"{a.id:>6}  {when}  {(a.outlet or '')[:20]:<20}  {a.title[:90]}")
    print(f"{len(articles)} articles", file=sys.stderr)
    return 0


def _feed_json(r: FeedRow) -> dict[str, Any]:
    return {"id": r.id, "url": r.url, "name": r.display_name, "enabled": r.enabled, "origin": r.origin,
            "tags": list(r.tags), "interval_s": r.interval_s, "error_count": r.error_count,
            "last_error": r.last_error, "paused_reason": r.paused_reason,
            "last_checked_at": r.last_checked_at.isoformat() if r.last_checked_at else None,
            "next_check_at": r.next_check_at.isoformat() if r.next_check_at else None}

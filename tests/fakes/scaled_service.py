"""`newsdigest run` with its durations scaled down, for the crash campaign (tests/test_fault_crash.py).

Run as `python -m tests.fakes.scaled_service [--scale 60]`: the environment configures it as it does
`newsdigest run` (database, feeds file, Telegram token and API root). Only timings change, each divided by
`--scale`: the poll tick (30 s), how long parse workers are kept for a feed due soon (120 s), a feed claim's
lease (300 s), the time to a feed's next poll after a success or a failure (its interval, at least 60 s; the
backoff), the scheduler tick (30 s) and an outbox claim's lease (120 s). Everything else is the real service: `bot.cli.main(["run"])`, the same code path, models and adapters.
"""

from __future__ import annotations

import argparse
import dataclasses
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.pipeline import feed as feed_stage


def _divide_default(fn: Any, name: str, scale: float) -> None:
    """Divide a keyword-only default of `fn`; fails loudly when the service no longer has it."""
    defaults = fn.__kwdefaults__ or {}
    if name not in defaults:
        raise SystemExit(f"scaled_service: {fn.__qualname__} has no keyword default {name!r} to scale")
    defaults[name] = defaults[name] / scale


def scale_timings(scale: float) -> None:
    """Divide the service's waits and leases by `scale` (in this process only)."""
    # Imported here, not at the top: spawned parse workers re-import this main module, and should pay for the
    # entry stage only, as they do under the `newsdigest` script.
    import bot.runner
    from bot.chat import wiring
    from bot.chat.runtime import RuntimeConfig
    from bot.pipeline import feed as feed_stage
    from bot.runner import Runner
    from bot.storage.store import Store

    _divide_default(Runner.run_forever, "tick_s", scale)  # 30 s
    bot.runner.PARSERS_KEPT_S /= scale  # 120 s: looked up on the module at each poll phase
    _divide_default(Store.claim_due_feeds, "lease_s", scale)  # 300 s

    after_success, after_failure = feed_stage.next_check_after_success, feed_stage.after_failure

    def shrink(now: datetime, at: datetime) -> datetime:
        return now + (at - now) / scale

    def scaled_success(now: datetime, *args: Any, **kwargs: Any) -> datetime:
        return shrink(now, after_success(now, *args, **kwargs))

    def scaled_failure(exc: Exception, **kwargs: Any) -> feed_stage.FailureDecision:
        decision = after_failure(exc, **kwargs)
        return dataclasses.replace(decision, next_check_at=shrink(kwargs["now"], decision.next_check_at))

    # The runner looks these up on the module at each call.
    feed_stage.next_check_after_success = scaled_success
    feed_stage.after_failure = scaled_failure

    build = wiring.build_chat_runtime
    base = RuntimeConfig()
    config = dataclasses.replace(base, scheduler_tick_s=base.scheduler_tick_s / scale, lease_s=base.lease_s / scale)

    def build_scaled(*args: Any, **kwargs: Any) -> Any:
        kwargs["config"] = kwargs.get("config") or config
        return build(*args, **kwargs)

    wiring.build_chat_runtime = build_scaled


def point_discord_at(port: str) -> None:
    """Send discord.py to tests/fakes/discord_api.FakeDiscord on 127.0.0.1:`port` (what its install() does;
    that module is not imported here: its server libraries would count in the service's measured memory)."""
    import discord.gateway
    import discord.http
    import yarl

    discord.http.Route.BASE = f"http://127.0.0.1:{port}/api/v10"
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(f"ws://127.0.0.1:{port}/gateway")


if __name__ == "__main__":
    import os

    p = argparse.ArgumentParser()
    p.add_argument("--scale", type=float, default=60.0)
    p.add_argument("--fake-discord-port", default=os.environ.get("NEWSDIGEST_TEST_FAKE_DISCORD_PORT", ""))
    args = p.parse_args()
    scale_timings(args.scale)
    if args.fake_discord_port:
        point_discord_at(args.fake_discord_port)
    from bot import cli

    raise SystemExit(cli.main(["run"]))

"""The crash campaign's long run (issue 10): `newsdigest run` killed with SIGKILL at random points of polling,
page fetching, processing and delivery, `--iterations` times with a seeded RNG, then run to completion and
checked. What is injected, how often, and the invariants: tests/fakes/crash_rig.py. Prints one JSON object.

    .venv/bin/python bench/crash_campaign.py --iterations 30 --seed 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fakes.crash_rig import STAGES, Campaign  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Run the campaign; exit 0 when every invariant held."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iterations", type=int, default=30)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--scale", type=float, default=60.0, help="the service's waits and leases are divided by this")
    p.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)}")
    p.add_argument("--trigger-timeout", type=float, default=25.0, help="kill anyway after this long without the trigger")
    p.add_argument("--workdir", type=Path, default=None, help="keep the database and service log here")
    a = p.parse_args(argv)
    stages = tuple(s for s in a.stages.split(",") if s)
    if not stages or set(stages) - set(STAGES):
        p.error(f"--stages: choose from {','.join(STAGES)}")

    def log(line: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {line}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="crash-") as tmp:
        workdir = a.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        summary = asyncio.run(Campaign(workdir, iterations=a.iterations, seed=a.seed, scale=a.scale,
                                       stages=stages, trigger_timeout_s=a.trigger_timeout, log=log).run())
    print(json.dumps(summary, indent=2, default=str))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""What a parse worker runs first. Kept apart from bot.runner so that a spawned worker imports only this and the
entry stage (~30 MB resident), not the runner's HTTP client and storage; trafilatura (~10 MB) is imported only
once the worker is given a page to extract."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable


def watch_parent(parent_pid: int, initializer: Callable[[], object] | None) -> None:
    """Runs first in each parse worker: exit when the parent is gone, then the caller's initializer."""

    def watch() -> None:
        # A parent killed with SIGKILL never shuts its pool down; without this its workers would live on.
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
    if initializer is not None:
        initializer()

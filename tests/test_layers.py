"""Layering rules (docs/architecture.md), checked in a fresh interpreter: what a module may pull in."""

from __future__ import annotations

import subprocess
import sys

import pytest

# module -> third-party packages it must not load, directly or through the modules it imports
RULES = {
    "bot.clock": ("httpx", "sqlalchemy", "telegram", "discord", "torch"),
    "bot.urls": ("httpx", "sqlalchemy", "telegram", "discord", "torch"),
    "bot.settings": ("httpx", "telegram", "discord", "torch"),
    "bot.storage.store": ("httpx", "telegram", "discord", "torch"),
    "bot.storage.chat_store": ("httpx", "telegram", "discord", "torch"),
    "bot.pipeline.entry": ("telegram", "discord", "sqlalchemy"),
    "bot.pipeline.digest": ("telegram", "discord", "sqlalchemy", "httpx"),
    "bot.pipeline.delivery": ("telegram", "discord", "sqlalchemy", "httpx"),
    "bot.runner": ("telegram", "discord"),
    "bot.processing": ("telegram", "discord"),
    "bot.chat.commands": ("telegram", "discord"),
    "bot.chat.runtime": ("telegram", "discord"),
    "summarizer": ("bot",),
}


@pytest.mark.parametrize("module", sorted(RULES))
def test_module_does_not_load_forbidden_packages(module: str) -> None:
    forbidden = RULES[module]
    code = (f"import sys, importlib; importlib.import_module({module!r}); "
            f"print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}} & {set(forbidden)!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "", f"{module} loads {out.stdout.strip()}"

"""ChatRuntime.start is exception-safe: when one adapter fails to start, those already started are stopped."""

from __future__ import annotations

import asyncio
import io

import pytest

from bot.chat.console import ConsoleSink
from bot.chat.runtime import ChatRuntime
from bot.settings import DigestDefaults
from bot.storage.chat_store import ChatStore
from bot.storage.store import Store


class Adapter:
    """A service that records its lifecycle and can fail to start or stop."""

    def __init__(self, name: str, log: list[str], *, fail_start: bool = False, fail_stop: bool = False) -> None:
        self.name, self.log, self.fail_start, self.fail_stop = name, log, fail_start, fail_stop

    async def start(self) -> None:
        self.log.append(f"start {self.name}")
        if self.fail_start:
            raise RuntimeError(f"{self.name}: login failed")

    async def stop(self) -> None:
        self.log.append(f"stop {self.name}")
        if self.fail_stop:
            raise RuntimeError(f"{self.name}: stop failed")


async def test_a_failed_start_stops_the_services_already_started(sqlite_store: Store) -> None:
    log: list[str] = []
    telegram, discord, later = Adapter("telegram", log), Adapter("discord", log, fail_start=True), Adapter("x", log)
    runtime = ChatRuntime(ChatStore(sqlite_store.engine), DigestDefaults(), [ConsoleSink(io.StringIO())],
                          services=[telegram, discord, later])
    tasks_before = asyncio.all_tasks()
    with pytest.raises(RuntimeError, match="discord: login failed"):
        await runtime.start()
    assert log == ["start telegram", "start discord", "stop telegram"]
    assert runtime._tasks == [] and asyncio.all_tasks() == tasks_before, "no loop is left running"
    # stop() after a failed start is harmless and stops nothing twice.
    await runtime.stop()
    assert log == ["start telegram", "start discord", "stop telegram"]


async def test_the_start_error_is_raised_even_when_a_rollback_stop_fails(sqlite_store: Store) -> None:
    log: list[str] = []
    services = [Adapter("a", log, fail_stop=True), Adapter("b", log), Adapter("c", log, fail_start=True)]
    runtime = ChatRuntime(ChatStore(sqlite_store.engine), DigestDefaults(), [ConsoleSink(io.StringIO())],
                          services=services)
    with pytest.raises(RuntimeError, match="c: login failed"):
        await runtime.start()
    assert log == ["start a", "start b", "start c", "stop b", "stop a"]


async def test_a_started_runtime_stops_every_service_once(sqlite_store: Store) -> None:
    log: list[str] = []
    runtime = ChatRuntime(ChatStore(sqlite_store.engine), DigestDefaults(), [ConsoleSink(io.StringIO())],
                          services=[Adapter("a", log), Adapter("b", log)])
    await runtime.start()
    await runtime.stop()
    await runtime.stop()
    assert log == ["start a", "start b", "stop b", "stop a"]

"""Rate limits shared by every worker, kept in Redis: chat send limits (a platform's `Limits`, the same numbers
bot/pipeline/delivery.Pacer applies in one process) and per-host fetch politeness.

One Lua script decides and records atomically on the Redis clock, so workers on several machines neither race
nor need synchronized clocks. A send is granted only when all of these hold: at most `global_per_s` sends in any
window of one second and no two closer than 1/global_per_s (the whole bot), `chat_interval_s` since the chat's
last send, at most `group_per_window` per `group_window_s` for a group, and no 429 block (bot-wide or for the
chat). `margin_s` widens every interval: limits are counted where messages arrive, after network jitter.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from bot.pipeline.delivery import Limits

# KEYS: 1 window zset, 2 last (global), 3 chat last, 4 group zset, 5 block all, 6 block chat
# ARGV: 1 n, 2 window_s, 3 spacing_s, 4 chat_interval_s (<0: no chat), 5 group n, 6 group window_s,
#       7 "1" for a group, 8 unique member
_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local ready = now
local function later(x) if x > ready then ready = x end end
local function window(key, n, w)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - w)
  if redis.call('ZCARD', key) >= n then
    local nth = redis.call('ZREVRANGE', key, n - 1, n - 1, 'WITHSCORES')
    later(tonumber(nth[2]) + w)
  end
end
local v = redis.call('GET', KEYS[5]); if v then later(tonumber(v)) end
local n, w, spacing = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local chat_interval = tonumber(ARGV[4])
v = redis.call('GET', KEYS[2]); if v then later(tonumber(v) + spacing) end
window(KEYS[1], n, w)
if chat_interval >= 0 then
  v = redis.call('GET', KEYS[6]); if v then later(tonumber(v)) end
  v = redis.call('GET', KEYS[3]); if v then later(tonumber(v) + chat_interval) end
  if ARGV[7] == '1' then window(KEYS[4], tonumber(ARGV[5]), tonumber(ARGV[6])) end
end
if ready > now then return tostring(ready - now) end
redis.call('ZADD', KEYS[1], now, ARGV[8])
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(n + 1))
redis.call('EXPIRE', KEYS[1], math.ceil(w) + 1)
redis.call('SET', KEYS[2], tostring(now), 'EX', math.ceil(spacing) + 1)
if chat_interval >= 0 then
  redis.call('SET', KEYS[3], tostring(now), 'EX', math.ceil(chat_interval) + 1)
  if ARGV[7] == '1' then
    redis.call('ZADD', KEYS[4], now, ARGV[8])
    redis.call('ZREMRANGEBYRANK', KEYS[4], 0, -(tonumber(ARGV[5]) + 1))
    redis.call('EXPIRE', KEYS[4], math.ceil(tonumber(ARGV[6])) + 1)
  end
end
return '0'
"""

# KEYS: 1 block key; ARGV: 1 seconds from now
_BLOCK = """
local t = redis.call('TIME')
local until_t = tonumber(t[1]) + tonumber(t[2]) / 1000000 + tonumber(ARGV[1])
local v = redis.call('GET', KEYS[1])
if (not v) or tonumber(v) < until_t then
  redis.call('SET', KEYS[1], tostring(until_t), 'EX', math.ceil(tonumber(ARGV[1])) + 1)
end
return 1
"""


class SharedLimiter:
    """Shared send and fetch limits over one Redis (redis.asyncio; use on one event loop)."""

    def __init__(self, redis_url: str, *, prefix: str = "newsdigest:limit", margin_s: float = 0.1,
                 host_per_s: float = 2.0) -> None:
        import redis.asyncio as aioredis

        self.client: Any = aioredis.Redis.from_url(redis_url)
        self.prefix = prefix
        self.margin_s = margin_s
        self.host_per_s = host_per_s
        self._script = self.client.register_script(_SCRIPT)
        self._block = self.client.register_script(_BLOCK)

    async def aclose(self) -> None:
        """Close the connections."""
        await self.client.aclose()

    async def ping(self) -> None:
        """Raise when Redis cannot answer (the readiness check)."""
        await self.client.ping()

    def _keys(self, scope: str, chat_key: str = "") -> list[str]:
        p = f"{self.prefix}:{scope}"
        return [f"{p}:window", f"{p}:last", f"{p}:chat:{chat_key}", f"{p}:group:{chat_key}", f"{p}:block",
                f"{p}:block:{chat_key}"]

    async def try_send(self, platform: str, limits: Limits, chat_key: str, is_group: bool) -> float:
        """Take a send slot now and return 0, or return the seconds to wait before asking again (nothing taken)."""
        m = self.margin_s
        wait = await self._script(keys=self._keys(platform, chat_key), args=[
            max(1, int(limits.global_per_s)), 1.0 + m, 1.0 / limits.global_per_s, limits.chat_interval_s + m,
            limits.group_per_window, limits.group_window_s + m, "1" if is_group else "0", uuid.uuid4().hex])
        return float(wait)

    async def acquire_send(self, platform: str, limits: Limits, chat_key: str, is_group: bool, *,
                           max_wait_s: float) -> float:
        """Wait for a send slot up to `max_wait_s`; returns 0 when taken, else the wait still ahead."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_wait_s
        while True:
            wait = await self.try_send(platform, limits, chat_key, is_group)
            if wait <= 0:
                return 0.0
            if loop.time() + wait > deadline:
                return wait
            await asyncio.sleep(wait)

    async def block(self, platform: str, seconds: float, chat_key: str | None = None) -> None:
        """No send (to this chat, or at all) for `seconds` (after a 429), for every worker."""
        keys = self._keys(platform, chat_key or "")
        await self._block(keys=[keys[5] if chat_key else keys[4]], args=[max(0.0, seconds)])

    async def acquire_host(self, host: str) -> None:
        """Wait until a request to `host` keeps the shared per-host rate (`host_per_s`, any worker)."""
        rate = self.host_per_s
        while True:
            wait = float(await self._script(keys=self._keys(f"host:{host}"), args=[
                max(1, int(rate)), 1.0 if rate >= 1 else 1.0 / rate, 1.0 / rate, -1, 0, 0, "0",
                uuid.uuid4().hex]))
            if wait <= 0:
                return
            await asyncio.sleep(wait)


__all__ = ["SharedLimiter"]

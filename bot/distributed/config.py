"""Scale-out settings from the environment: the broker, the Redis of the shared limiter, the scheduler's tick."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from bot.errors import ConfigError

ENV = "environment"
BROKER_EXAMPLES = "amqp://guest:guest@127.0.0.1:5672// or redis://127.0.0.1:6379/0"


@dataclass(frozen=True)
class ScaleConfig:
    """What workers and the scheduler need besides the service settings."""

    broker_url: str
    redis_url: str
    scheduler_tick_s: float = 10.0
    host_requests_per_s: float = 2.0
    send_margin_s: float = 0.1
    redis_heartbeat_s: float = 60.0

    @property
    def broker_kind(self) -> str:
        """"rabbitmq" or "redis"."""
        return "redis" if urlsplit(self.broker_url).scheme in ("redis", "rediss") else "rabbitmq"


def _float(env: Mapping[str, str], key: str, default: float, *, minimum: float) -> float:
    raw = env.get(key, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(ENV, key, f"not a number: {raw!r}") from None
    if not value >= minimum:
        raise ConfigError(ENV, key, f"must be at least {minimum:g}, got {raw}")
    return value


def amqp_url(url: str) -> str:
    """Celery's spelling of the default vhost ("...:5672//") as pika reads it ("...:5672/%2F")."""
    parts = urlsplit(url)
    if parts.path == "//":
        return parts._replace(path="/%2F").geturl()
    return url


def load_scale_config(env: Mapping[str, str] | None = None) -> ScaleConfig:
    """Read and check NEWSDIGEST_BROKER_URL and the other scale-out variables; ConfigError names the first bad one."""
    env = os.environ if env is None else env
    broker = env.get("NEWSDIGEST_BROKER_URL", "").strip()
    if not broker:
        raise ConfigError(ENV, "NEWSDIGEST_BROKER_URL",
                          f"not set: `newsdigest worker` and `newsdigest scheduler` need a broker ({BROKER_EXAMPLES})")
    scheme = urlsplit(broker).scheme
    if scheme not in ("amqp", "amqps", "redis", "rediss"):
        raise ConfigError(ENV, "NEWSDIGEST_BROKER_URL", f"unsupported scheme {scheme!r} (use {BROKER_EXAMPLES})")
    if scheme.startswith("amqp"):
        broker = amqp_url(broker)
    redis_url = env.get("NEWSDIGEST_REDIS_URL", "").strip() or (broker if scheme.startswith("redis") else "")
    if not redis_url:
        raise ConfigError(ENV, "NEWSDIGEST_REDIS_URL",
                          "not set: with a RabbitMQ broker the shared send and fetch limits need a Redis "
                          "(e.g. redis://127.0.0.1:6379/0)")
    if urlsplit(redis_url).scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(ENV, "NEWSDIGEST_REDIS_URL", f"not a Redis URL: {redis_url!r}")
    return ScaleConfig(
        broker_url=broker, redis_url=redis_url,
        scheduler_tick_s=_float(env, "NEWSDIGEST_SCHEDULER_TICK_S", 10.0, minimum=0.05),
        host_requests_per_s=_float(env, "NEWSDIGEST_HOST_REQUESTS_PER_S", 2.0, minimum=0.01),
        send_margin_s=_float(env, "NEWSDIGEST_SEND_MARGIN_S", 0.1, minimum=0.0),
        redis_heartbeat_s=_float(env, "NEWSDIGEST_BROKER_HEARTBEAT_S", 60.0, minimum=1.0))


__all__ = ["ScaleConfig", "load_scale_config"]

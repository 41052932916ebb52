"""One error hierarchy for the whole core; third-party errors are translated into it at the boundary."""

from __future__ import annotations

from typing import Any


def _rebuild(cls: type[Exception], message: str) -> Exception:
    """Unpickle an error whose constructor takes other arguments than its message; its attributes follow."""
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    return err


class NewsdigestError(Exception):
    """Base class of every error newsdigest raises on purpose."""


class ConfigError(NewsdigestError):
    """Bad settings or a bad feeds file; the message names the source, the key and the problem."""

    def __init__(self, source: str, key: str, problem: str) -> None:
        self.source, self.key, self.problem = source, key, problem
        super().__init__(f"{source}: {key}: {problem}")

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.source, self.key, self.problem), self.__dict__


class FetchError(NewsdigestError):
    """A URL could not be fetched; `transient` says whether retrying later may help."""

    def __init__(self, url: str, reason: str, *, transient: bool = True, retry_after: float | None = None,
                 status: int | None = None) -> None:
        self.url, self.reason, self.transient = url, reason, transient
        self.retry_after, self.status = retry_after, status
        super().__init__(f"{reason} ({url})")

    def __reduce__(self) -> tuple[Any, ...]:
        # Parsing runs in a process pool: an error must survive the trip back (pickle calls cls(*args) by default).
        return _rebuild, (type(self), str(self)), self.__dict__


class BlockedURLError(FetchError):
    """A URL is not allowed: wrong scheme, or it resolves to a private/loopback address."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(url, reason, transient=False)


class TooLargeError(FetchError):
    """A response body exceeded the configured size cap."""

    def __init__(self, url: str, limit: int) -> None:
        super().__init__(url, f"response larger than {limit} bytes", transient=False)


class ParseError(NewsdigestError):
    """Fetched bytes are not a usable feed (HTML page, XML garbage, empty)."""


class ExtractError(NewsdigestError):
    """No article text could be extracted from a page."""


class StorageError(NewsdigestError):
    """The database failed in a way the caller should report; `unavailable` says it could not be reached or used
    right now (connection lost or refused, "database is locked"), so retrying later may help."""

    def __init__(self, reason: str, *, unavailable: bool = False) -> None:
        self.reason, self.unavailable = reason, unavailable
        super().__init__(reason)

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild, (type(self), str(self)), self.__dict__


class DeliveryError(NewsdigestError):
    """A chat platform refused or failed a send."""

    def __init__(self, reason: str, *, retry_after: float | None = None, permanent: bool = False,
                 migrate_to: str | None = None) -> None:
        self.reason, self.retry_after, self.permanent, self.migrate_to = reason, retry_after, permanent, migrate_to
        super().__init__(reason)

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild, (type(self), str(self)), self.__dict__


class ChatForbiddenError(DeliveryError):
    """The bot was blocked, kicked or lost access: pause the subscription, keep its settings."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, permanent=True)


class RateLimitedError(DeliveryError):
    """The platform asked us to slow down for `retry_after` seconds."""

    def __init__(self, reason: str, retry_after: float) -> None:
        super().__init__(reason, retry_after=retry_after)


class CommandError(NewsdigestError):
    """A chat command was malformed or not allowed; the message is shown to the user as is."""


class PermissionDenied(CommandError):
    """The user may not run this command here."""

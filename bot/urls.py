"""Pure URL checks (no network): absolute http(s) URLs only, and which IP addresses count as public."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from bot.errors import BlockedURLError


def check_url(url: str) -> str:
    """Validate that a URL is absolute http(s) with a host; returns it unchanged or raises BlockedURLError."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise BlockedURLError(url, f"not a valid URL: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise BlockedURLError(url, "only http and https URLs are allowed")
    if not parts.hostname:
        raise BlockedURLError(url, "URL has no host")
    if not url.isascii():
        try:
            # Lone surrogates (a YAML or JSON "\ud800" escape) cannot be sent or stored: refuse them here.
            url.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise BlockedURLError(url, "URL contains invalid characters (lone surrogates)") from exc
    return url


def address_is_public(ip: str) -> bool:
    """True when an IP address is globally routable (not private, loopback, link-local, multicast, reserved)."""
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return not (addr.is_private or addr.is_loopback or addr.is_link_local or addr.is_multicast
                or addr.is_reserved or addr.is_unspecified or not addr.is_global)


__all__ = ["address_is_public", "check_url"]

"""Text measuring for every renderer: lengths in UTF-16 code units (as Telegram and Discord count them),
lone surrogates dropped, and cutting to a length without splitting a character."""

from __future__ import annotations

ELLIPSIS = "…"


def units(text: str) -> int:
    """Length in UTF-16 code units, as Telegram and Discord count it (never less than Python's len())."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def drop_surrogates(text: str) -> str:
    """`text` without lone surrogates (broken UTF-16 in a feed): UTF-8, which both platforms get, cannot carry
    them."""
    return "".join(ch for ch in text if not "\ud800" <= ch <= "\udfff")


def cut(text: str, limit: int) -> str:
    """At most `limit` UTF-16 units, ending with an ellipsis when shortened, never splitting a character."""
    if units(text) <= limit:
        return text
    out, used = [], 0
    for ch in text:
        w = units(ch)
        if used + w > limit - 1:
            break
        out.append(ch)
        used += w
    return "".join(out).rstrip() + ELLIPSIS

"""Per-chat filters (pure): muted words and phrases, muted outlets, required keywords per topic.

Users never give patterns: each entry is plain text, split into words the same way as the story text, and it
matches when its words appear consecutively (so muting "war" does not hide "warning"), case-insensitively.
Matching is linear in the text: no user input ever becomes a regular expression.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.pipeline.digest import StoryCandidate

MAX_ENTRIES = 30  # per list (muted words, muted outlets, the keywords of one topic)
MAX_ENTRY_CHARS = 60
MAX_REQUIRED_TOPICS = 12
MAX_ENTRY_WORDS = 8
_WORD = re.compile(r"\w+")  # fixed pattern; only ever applied to text, never built from it


class FilterError(ValueError):
    """A filter entry that cannot be stored (empty, too long, too many); the message is for the user."""


def words(text: str) -> tuple[str, ...]:
    """The words of a text, case-folded and NFKC-normalised (the one tokenisation for entries and stories)."""
    return tuple(_WORD.findall(unicodedata.normalize("NFKC", text).casefold()))


def clean_entry(text: str) -> str:
    """A user's entry as stored: whitespace collapsed; FilterError when it is empty, has no word or is too long."""
    entry = " ".join(text.split())
    if len(entry) > MAX_ENTRY_CHARS:
        raise FilterError(f"Each entry is at most {MAX_ENTRY_CHARS} characters.")
    found = words(entry)
    if not found:
        raise FilterError("Give a word or phrase (letters or digits).")
    if len(found) > MAX_ENTRY_WORDS:
        raise FilterError(f"A phrase has at most {MAX_ENTRY_WORDS} words.")
    return entry


class _Index:
    """A text's words with their positions, so that each phrase is checked only where its first word occurs."""

    def __init__(self, texts: Iterable[str]) -> None:
        self.tokens: list[str] = []
        self.at: dict[str, list[int]] = {}
        for text in texts:
            self.tokens.append("")  # a gap, so that a phrase never spans two separate texts
            for w in words(text):
                self.at.setdefault(w, []).append(len(self.tokens))
                self.tokens.append(w)

    def has(self, phrase: Sequence[str]) -> bool:
        if not phrase:
            return False
        n = len(phrase)
        return any(tuple(self.tokens[i:i + n]) == tuple(phrase) for i in self.at.get(phrase[0], ()))


def contains(text: str | Iterable[str], entry: str) -> bool:
    """Whether `entry`'s words occur consecutively in the text(s), on word boundaries, ignoring case."""
    return _Index([text] if isinstance(text, str) else text).has(words(entry))


@dataclass(frozen=True)
class ChatFilters:
    """A chat's filters; empty lists filter nothing."""

    muted_words: tuple[str, ...] = ()
    muted_outlets: tuple[str, ...] = ()
    # topic -> keywords: a story labelled with the topic needs at least one of them.
    required: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.muted_words or self.muted_outlets or any(self.required.values()))

    def outlet_muted(self, outlet: str) -> bool:
        """Whether an outlet name is muted (a muted entry's words occur in the name: "BBC" mutes "BBC News")."""
        index = _Index([outlet])
        return any(index.has(words(m)) for m in self.muted_outlets)

    def to_json(self) -> dict[str, Any] | None:
        """The stored form (None when empty, as old rows have)."""
        if not self:
            return None
        return {"muted_words": list(self.muted_words), "muted_outlets": list(self.muted_outlets),
                "required": {t: list(ws) for t, ws in self.required.items() if ws}}

    @classmethod
    def from_json(cls, data: Any) -> ChatFilters:
        """Read the stored form; anything missing or malformed reads as no filter."""
        if not isinstance(data, Mapping):
            return cls()

        def strs(v: Any) -> tuple[str, ...]:
            return tuple(x for x in v if isinstance(x, str)) if isinstance(v, list) else ()

        req = data.get("required")
        required = {str(t): strs(v) for t, v in req.items()} if isinstance(req, Mapping) else {}
        return cls(strs(data.get("muted_words")), strs(data.get("muted_outlets")),
                   {t: v for t, v in required.items() if v})


def add_entry(entries: Sequence[str], text: str) -> tuple[str, ...]:
    """`entries` with a cleaned entry added (unchanged when already there, ignoring case); FilterError past
    the limits."""
    entry = clean_entry(text)
    if any(words(e) == words(entry) for e in entries):
        return tuple(entries)
    if len(entries) >= MAX_ENTRIES:
        raise FilterError(f"At most {MAX_ENTRIES} entries in a list; remove one first.")
    return (*entries, entry)


def remove_entry(entries: Sequence[str], text: str) -> tuple[str, ...]:
    """`entries` without the one that has the same words as `text`."""
    key = words(text)
    return tuple(e for e in entries if words(e) != key)


def story_texts(c: StoryCandidate) -> list[str]:
    """The text a story shows: title, summary, its sentences and its articles' headlines."""
    return [c.title, c.summary, *(s.text for s in c.sentences), *(lk.title for lk in c.links)]


def passes_filters(c: StoryCandidate, filters: ChatFilters) -> bool:
    """Whether a story may go into the chat's digest: no muted word or phrase in its text, not only from muted
    outlets, and for each of its topics with required keywords, at least one of them in its text."""
    if not filters:
        return True
    outlets = [lk.outlet for lk in c.links if lk.core] or [lk.outlet for lk in c.links]
    if outlets and filters.muted_outlets and all(filters.outlet_muted(o) for o in outlets):
        return False
    index = _Index(story_texts(c))
    if any(index.has(words(m)) for m in filters.muted_words):
        return False
    for topic in c.topics:
        keywords = filters.required.get(topic)
        if keywords and not any(index.has(words(k)) for k in keywords):
            return False
    return True


__all__ = ["MAX_ENTRIES", "MAX_ENTRY_CHARS", "MAX_REQUIRED_TOPICS", "ChatFilters", "FilterError", "add_entry",
           "clean_entry", "contains", "passes_filters", "remove_entry", "story_texts", "words"]

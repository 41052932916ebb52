"""Follow-up stage (pure): what a chat was shown of a story, and whether an update of it is news to that chat.

A chat that got a story is sent it again only when the update is substantial for that chat: new figures (a toll,
a sum), new names (people, places, organisations), or several new outlets. One more article that repeats what
the chat read is not news. `WhatsNew.line` says what is new, for the follow-up item.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Outlets alone make an update substantial from this many new ones (one more outlet repeating it is not news).
NEW_OUTLETS_MIN = 2
MAX_TERMS = 60  # names, figures and outlets kept per story (what a digest item can show is far less)
SHOWN = 4  # names, figures and outlets named in the "what's new" line, each

# Capitalised words that are no names: sentence openers, days, months, titles of address.
_NOT_NAMES = frozenset("""a an the this that these those it its in on at to for from by with and or but as after
before over under into amid about according also breaking live update updates latest watch video photos exclusive
analysis opinion explainer he she they we i his her their our you your there here when where while what who why how
later earlier then now meanwhile today yesterday tomorrow tonight still however since until once if so yet all some
monday tuesday wednesday thursday friday saturday sunday january february march april may june july august
september october november december mr mrs ms dr sir officials police""".split())
# Words that do not say what a figure counts ("1,200 were hurt" shows "1,200").
_NOT_UNITS = frozenset("""a an the and or but of in on at to for from by with as than more less over under up down
about since after before were was are is be been being have has had said says say will would could may might
who which that this it its""".split())
# Words that may sit inside a name ("Bank of England", "Abu al Hassan").
_CONNECTORS = frozenset("of de del da di al el bin ibn van von der la le du".split())
_SCALES = {"thousand": "k", "million": "m", "millions": "m", "billion": "bn", "billions": "bn", "trillion": "tn",
           "percent": "%"}
# A word (with inner apostrophes, dots, hyphens: "U.S.", "al-Sadr"), or a number not glued to letters ("2nd").
_WORD = re.compile(r"[^\W\d_][\w'’.-]*|[$€£¥]?\d(?:[\d,.:]*\d)?%?(?![^\W_])")
_ABBREVIATIONS = frozenset("mr mrs ms dr st gen col lt sgt capt prof sen rep gov u.s u.k u.n no vs".split())
_SENTENCE_END = re.compile(r"[.!?…:;]['\"”’)\]]*$")
_YEAR = re.compile(r"(19|20)\d\d")
_TIME = re.compile(r"\d{1,2}[:.]\d\d")


@dataclass(frozen=True)
class Coverage:
    """What a chat was shown of a story: its outlets (by name; `outlet_count` counts those not named too), and
    the salient names and figures of its headline, summary and member headlines (figures as comparison keys)."""

    outlets: tuple[str, ...] = ()
    outlet_count: int = 0
    names: tuple[str, ...] = ()
    figures: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The stored form (sent_stories.coverage)."""
        return {"outlets": list(self.outlets), "outlet_count": self.outlet_count, "names": list(self.names),
                "figures": list(self.figures)}

    @classmethod
    def from_json(cls, raw: Any) -> Coverage | None:
        """The stored form back; None for NULL or anything malformed (rows from before follow-ups)."""
        if not isinstance(raw, dict):
            return None
        lists = [raw.get(k) for k in ("outlets", "names", "figures")]
        count = raw.get("outlet_count")
        if not all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in lists) \
                or not isinstance(count, int):
            return None
        outlets, names, figures = (tuple(v[:MAX_TERMS]) for v in lists)  # type: ignore[index]
        return cls(outlets=outlets, outlet_count=count, names=names, figures=figures)


@dataclass(frozen=True)
class SentStory:
    """What a subscription was sent of a story: the version, what it showed (None for rows from before this
    was kept) and the message it went in (`message_ref`, "" when unknown or not confirmed sent)."""

    version: int
    coverage: Coverage | None = None
    message_ref: str = ""


@dataclass(frozen=True)
class WhatsNew:
    """What an update adds to what a chat was shown: new outlets by name, more new outlets not named, new
    names, new figures (as the text shows them, e.g. "52 dead")."""

    outlets: tuple[str, ...] = ()
    more_outlets: int = 0
    names: tuple[str, ...] = ()
    figures: tuple[str, ...] = ()

    @property
    def new_outlets(self) -> int:
        """New outlets in all, named or not."""
        return len(self.outlets) + self.more_outlets

    @property
    def substantial(self) -> bool:
        """News to the chat: a new figure or name, or at least NEW_OUTLETS_MIN new outlets."""
        return bool(self.figures or self.names) or self.new_outlets >= NEW_OUTLETS_MIN

    def line(self) -> str:
        """'New: 52 dead, Antony Blinken · now also reported by AP, DW and 2 more' (plain text: renderers
        escape it)."""
        parts = []
        terms = [*self.figures[:SHOWN], *self.names[:SHOWN]]
        if terms:
            parts.append("New: " + ", ".join(terms))
        if self.outlets:
            more = len(self.outlets) - SHOWN + self.more_outlets if len(self.outlets) > SHOWN else self.more_outlets
            parts.append("now also reported by " + ", ".join(self.outlets[:SHOWN])
                         + (f" and {more} more" if more > 0 else ""))
        elif self.more_outlets:
            parts.append(f"now reported by {self.more_outlets} more outlet{'s' if self.more_outlets != 1 else ''}")
        return " · ".join(parts) or "Updated"


def _key(s: str) -> str:
    return " ".join(s.casefold().split())


def _tokens(text: str) -> list[tuple[str, bool]]:
    """(token, opens a sentence) for each word or number, trailing punctuation stripped."""
    out: list[tuple[str, bool]] = []
    prev_raw, prev_end = "", 0
    for m in _WORD.finditer(text):
        raw = m.group()
        gap = text[prev_end:m.start()]
        start = not prev_raw or "\n" in gap or (bool(_SENTENCE_END.search(prev_raw + gap.strip()))
                                               and prev_raw.rstrip(".").casefold() not in _ABBREVIATIONS)
        clean = raw.rstrip(",'’-")
        if clean.endswith(".") and "." not in clean[:-1]:  # a full stop, not "U.S."
            clean = clean[:-1]
        if clean:
            out.append((clean, start))
        prev_raw, prev_end = raw, m.end()
    return out


def _is_capitalised(tok: str) -> bool:
    return tok[:1].isupper()


def _title_case(tokens: Sequence[tuple[str, bool]]) -> bool:
    """A headline in Title Case, where capitals say nothing about names."""
    words = [t for t, _ in tokens if t[:1].isalpha() and t.casefold() not in _CONNECTORS]
    # Title Case capitalises every longer word, verbs too ("Strikes Kill"); one lower-case verb says it is not.
    return len(words) >= 4 and all(_is_capitalised(w) for w in words if len(w) >= 4)


def _strip_possessive(tok: str) -> str:
    for end in ("'s", "’s"):
        if tok.endswith(end):
            return tok[:-2]
    return tok


def names_in(text: str) -> list[str]:
    """Salient names: runs of capitalised words ("Antony Blinken", "Bank of England", "UN"), leaving out a
    lone capitalised word that opens a sentence (it is capitalised for that reason), days, months and openers.
    A headline in Title Case has none (its capitals say nothing)."""
    tokens = _tokens(text)
    if _title_case(tokens):
        return []
    runs: list[tuple[list[str], bool]] = []
    cur: list[str] = []
    cur_start = False
    for i, (tok, start) in enumerate(tokens):
        word = _strip_possessive(tok)
        capital = word[:1].isalpha() and word[:1].isupper()
        if cur and (start or not capital):
            following = tokens[i + 1] if i + 1 < len(tokens) else ("", True)
            if not start and word.casefold() in _CONNECTORS and following[0][:1].isupper() and not following[1]:
                cur.append(word)  # "Bank of England"
                continue
            runs.append((cur, cur_start))
            cur = []
        if capital:
            if not cur:
                cur_start = start
            cur.append(word)
            if word != tok:  # "Kerala's floods": the name ends at the possessive
                runs.append((cur, cur_start))
                cur = []
    if cur:
        runs.append((cur, cur_start))
    out: list[str] = []
    for words, at_start in runs:
        while words and (words[0].casefold() in _NOT_NAMES or words[0].casefold() in _CONNECTORS):
            words, at_start = words[1:], False
        if not words or (len(words) == 1 and (at_start or words[0].casefold() in _NOT_NAMES)):
            continue
        out.append(" ".join(words))
    return out


def figures_in(text: str) -> list[tuple[str, str]]:
    """(key, as shown) of each figure: a number with its currency, per cent or scale ("$2 billion", "40%"),
    shown with the word after it ("52 dead"); years and clock times are left out."""
    tokens = [t for t, _ in _tokens(text)]
    out = []
    for i, tok in enumerate(tokens):
        if not tok[:1].isdigit() and not (tok[:1] in "$€£¥" and tok[1:2].isdigit()):
            continue
        digits = tok.lstrip("$€£¥").rstrip("%")
        if _YEAR.fullmatch(digits) or _TIME.fullmatch(digits):
            continue
        number = digits.replace(",", "")
        try:
            value = float(number)
        except ValueError:
            continue
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        scale = _SCALES.get(nxt.casefold(), None)
        key = f"{tok[0] if tok[0] in '$€£¥' else ''}{value:g}{'%' if tok.endswith('%') else ''}{scale or ''}"
        shown = tok
        if nxt and nxt[:1].isalpha() and nxt.casefold() not in _NOT_NAMES and nxt.casefold() not in _NOT_UNITS:
            shown = f"{tok} {nxt}"
        out.append((key, shown))
    return out


def coverage(texts: Iterable[str], outlets: Iterable[str], outlet_count: int) -> Coverage:
    """What a chat is shown of a story: `texts` are its headline, summary and member headlines; `outlets` the
    outlets of its links."""
    names: dict[str, str] = {}
    figures: dict[str, str] = {}
    for t in texts:
        for n in names_in(t):
            names.setdefault(_key(n), n)
        for k, _ in figures_in(t):
            figures.setdefault(k, k)
    named = {_key(o): " ".join(o.split()) for o in outlets if o.strip()}
    # An outlet's name in the text ("Reuters reported") is an outlet, not a name in the news.
    kept = [n for k, n in names.items() if k not in named]
    return Coverage(outlets=tuple(list(named.values())[:MAX_TERMS]), outlet_count=max(outlet_count, len(named)),
                    names=tuple(kept[:MAX_TERMS]), figures=tuple(list(figures)[:MAX_TERMS]))


def whats_new(before: Coverage, now: Coverage, texts: Iterable[str] = ()) -> WhatsNew:
    """What `now` adds to `before`: outlets not named before; names with a word the chat has not seen
    ("Hunter Biden" after "Joe Biden" is new, "Biden" is not); figures not shown before (as `texts` show them)."""
    seen_outlets = {_key(o) for o in before.outlets}
    outlets = tuple(o for o in now.outlets if _key(o) not in seen_outlets)
    more = max(0, now.outlet_count - before.outlet_count - len(outlets))
    seen_words = {w for n in before.names for w in _key(n).split()} | {_key(o) for o in before.outlets}
    names = tuple(n for n in now.names
                  if any(w not in seen_words for w in _key(n).split() if w not in _CONNECTORS))
    seen_figures = set(before.figures)
    new_keys = [k for k in now.figures if k not in seen_figures]
    shown: dict[str, str] = {}
    for t in texts:
        for k, s in figures_in(t):
            if len(s) > len(shown.get(k, "")):  # "52 people" says more than "52"
                shown[k] = s
    figures = tuple(dict.fromkeys(shown.get(k, k) for k in new_keys))
    return WhatsNew(outlets=outlets, more_outlets=more, names=names, figures=figures)


def follow_up(sent: Mapping[int, SentStory], story_id: int, version: int, now: Coverage,
              texts: Sequence[str]) -> tuple[bool, WhatsNew | None]:
    """(send it, what is new) for a story at `version` shown as `now`: a story the chat never got is sent (no
    news); one it got at this version or later is not; an update is sent when substantial for the chat, or, for
    rows from before coverage was kept, whenever its version grew (then with no news)."""
    previous = sent.get(story_id)
    if previous is None:
        return True, None
    if version <= previous.version:
        return False, None
    if previous.coverage is None:
        return True, None
    news = whats_new(previous.coverage, now, texts)
    return news.substantial, news

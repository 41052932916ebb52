"""News-aware cleaning and sentence splitting (pysbd plus rules for datelines, bylines and photo captions)."""

from __future__ import annotations

import re
import threading
import unicodedata
from dataclasses import dataclass

import pysbd

# Whole-line boilerplate that carries no story content.
_JUNK_LINE = re.compile(
    r"""^\s*(?:
        (?:by\s*\.?\s*)?(?:daily\s*mail|mail\s*online|associated\s*press|press\s*association)\s*reporters?\s*\.?
      | published\s*:.*
      | (?:last\s+)?updated\s*(?:at|:).*
      | (?:image|media|video)\s+(?:copyright|caption|playback).*
      | (?:read\s+more|related|see\s+also|advertisement|share\s+this(?:\s+article)?|click\s+here)\b.*
      | follow\s+(?:@\w+|us\b|\w+\s+\w+\s+on\s+twitter).*
      | (?:photo|picture|image)s?\s*(?:credit)?\s*:.*
    )\s*$""",
    re.I | re.X,
)

# Boilerplate inside running text, removed wherever it appears.
_JUNK_INLINE = [
    re.compile(r"\bScroll\s+down\s+for\s+(?:the\s+)?(?:video|videos|more)\b\.?", re.I),
    re.compile(r"\bMedia playback is unsupported on your device\b\.?", re.I),
    re.compile(r"\bBy \. [A-Z][\w'’. -]{0,60}? \. (?=[A-Z])"),
    re.compile(r"\bPUBLISHED: \..*?\| \. UPDATED: \. [\d:]+ \w+, \d+ \w+ \d{4} \.(?=\s|$)", re.S),
    re.compile(r"\bLast updated at .*? \d{4} \.(?=\s|$)"),
    re.compile(r"(?:^|\s)Click here (?:to|for) [^.!?]*[.!?]", re.I),
    re.compile(r"(?:^|\s)READ MORE:[^.!?]*?(?=[.!?]|$)"),
]

# Leading dateline / wire / byline prefixes: "LONDON, England (CNN) -- ", "(Reuters) - ", "(The Hollywood
# Reporter)Stan Freberg", "By Jane Doe, Reporter |".
_LEAD_PREFIX = re.compile(
    r"""^\s*(?:
        (?:[A-Z][A-Za-z.'’-]+(?:[\s,]+[A-Z][A-Za-z.'’-]*){0,4}\s*)?
        \((?:CNN|Reuters|AP|AFP|Associated\ Press|UPI|dpa|Xinhua|EFE)(?:\s+\w+)?\)\s*(?:--|[-–—:])?\s*
        (?=[A-Z0-9"'“‘])
      | \((?:The\ )?[A-Z][\w.&'’-]*(?:\ [A-Z][\w.&'’-]*){0,3}\)(?=[A-Z])
      | [A-Z]{2,}(?:[\s,]+[A-Z][A-Za-z.]*){0,3}\s*(?:--|[–—])\s*
      | By\s+[A-Z][\w'’.-]*(?:\s+[A-Z][\w'’.-]*){0,3}(?:,\s*[A-Z][\w .'’-]{0,40})?\s*(?:\|\s*|$)
    )""",
    re.X,
)

# A caption label such as "Strictly business: " or "Flying high: ": DailyMail-style pages glue photo captions to
# the text around them without a full stop.
_SPEECH = (r"(?:said|says|added|adds|told|tells|replied|wrote|writes|explained|asked|insisted|claimed|stated|"
           r"warned|continued|posted|tweeted|reads|read|message|statement)")
_LABEL = re.compile(r"^[A-Z][\w'’-]*(?: [a-z][\w'’-]*){0,4}:\s")
_SPEECH_LABEL = re.compile(rf"^[^:]*\b{_SPEECH}\b[^:]*:")

# Capitalised words that start a new sentence when they follow a lower-case word with no punctuation between.
_STARTERS = (
    r"(?:The(?=\s[a-z])|A(?=\s[a-z])|An|He|She|It|They|We|His|Her|Their|Its|This|These|Those|But|And|However|"
    r"Ever|When|After|Before|As|In|On|At|If|While|Now|Last|Earlier|Later|Meanwhile|Speaking|According|"
    r"Although|Though|Despite|During|Following|"
    r"Police|Officials|Yesterday|Today)\b"
)
_MIN_RUN = 5
_MIN_UNPUNCTUATED = 8

# Words that cannot end a sentence, so a capital after them is a name or title, not a lost boundary.
_NO_END = frozenset(
    "a an the to of in on at by for from with and or but as than that which who whose whom is are was were be "
    "been being has have had do does did not no nor so if into onto upon about over under after before between "
    "dubbed called named titled known his her their its our my your this these those said says told".split()
)
_GLUED = re.compile(
    rf"(?<![\w'’-])([a-z][\w'’-]*[a-z0-9]|[a-z]|[0-9][\w,.]*|\))[ ]+"
    rf"(?=(?:{_STARTERS}|[A-Z][\w'’-]*(?: [a-z][\w'’-]*){{0,4}}:\s(?![\"'“‘])))"
)


def _break_glued(para: str) -> list[str]:
    """Cut a paragraph where a sentence boundary was lost (caption text glued to prose)."""
    cuts: list[int] = []
    for m in _GLUED.finditer(para):
        if m.group(1).lower() in _NO_END or _SPEECH_LABEL.match(para[m.end():m.end() + 60]):
            continue
        # A lost boundary ends a run of several words; "With the new Avengers: Age of Ultron" does not.
        since = para[cuts[-1] if cuts else 0:m.start(1)]
        run = re.split(r"[.!?]['\"’”)]*\s", since)[-1]
        if len(run.split()) >= _MIN_RUN:
            cuts.append(m.end())
    bounds = [0, *cuts, len(para)]
    return [para[a:b].strip() for a, b in zip(bounds, bounds[1:], strict=False) if para[a:b].strip()]


_PHOTO = re.compile(r"\b(?:pictured|(?:far )?(?:left|right|centre|center|above|below|inset)\))|\(pictured\b", re.I)
_TERMINAL = re.compile(r"""[.!?…](?:["'”’)\]]+)?\s*$""")
_WS = re.compile(r"[ \t\u00a0\u2009\u200a\u202f]+")


@dataclass(frozen=True, slots=True)
class Sentence:
    """One sentence of a cleaned document, verbatim from the source (after whitespace normalisation)."""

    text: str
    index: int  # position among the document's kept sentences
    paragraph: int
    fragment: bool  # photo caption ("Label: ...", "(pictured)") or a short run without terminal punctuation


_local = threading.local()


def _segmenter() -> pysbd.Segmenter:
    # One per thread: pysbd's Segmenter.segment keeps the text it splits on the instance and reads it back to
    # map the sentences, so two threads sharing one get each other's text back, or no sentences at all (an
    # empty story summary under a worker's concurrent summary tasks).
    seg: pysbd.Segmenter | None = getattr(_local, "segmenter", None)
    if seg is None:
        seg = _local.segmenter = pysbd.Segmenter(language="en", clean=False)
    return seg


def normalize(text: str) -> str:
    """Unicode-normalise and collapse horizontal whitespace, keeping paragraph breaks."""
    text = unicodedata.normalize("NFKC", text).replace("\r\n", "\n").replace("\r", "\n")
    lines = (_WS.sub(" ", line).strip() for line in text.split("\n"))
    return "\n".join(lines)


def clean(text: str) -> str:
    """Remove bylines, datelines, wire prefixes and page furniture from an article's text."""
    text = normalize(text)
    paragraphs = []
    for para in text.split("\n"):
        if not para or _JUNK_LINE.match(para):
            continue
        for pattern in _JUNK_INLINE:
            para = pattern.sub(" ", para)
        para = _WS.sub(" ", para).strip()
        if para and not _JUNK_LINE.match(para):
            paragraphs.append(para)
    if paragraphs:
        paragraphs[0] = _LEAD_PREFIX.sub("", paragraphs[0], count=1).lstrip()
    return "\n".join(p for p in paragraphs if p)


def _is_fragment(sentence: str, last_in_paragraph: bool) -> bool:
    terminal = bool(_TERMINAL.search(sentence))
    if _LABEL.match(sentence) and not _SPEECH_LABEL.match(sentence):
        # "Flying high: Half of the kite took to the sky" is a caption; "Mark your calendars: The doll
        # goes on sale on Saturday." is prose.
        return not terminal or bool(_PHOTO.search(sentence))
    if _PHOTO.search(sentence):
        return True
    # An unlabelled run that lost its full stop is kept when it is long: on DailyMail pages it is usually the
    # top caption, which restates the story (keeping these measured better on both halves of CNN/DM dev).
    return not last_in_paragraph and not terminal and len(sentence.split()) < _MIN_UNPUNCTUATED


def split_sentences(text: str, *, cleaned: bool = False) -> list[Sentence]:
    """Split an article into sentences, flagging photo captions and other fragments."""
    if not cleaned:
        text = clean(text)
    seg = _segmenter()
    out: list[Sentence] = []
    for p, para in enumerate(text.split("\n")):
        pieces: list[str] = []
        for part in _break_glued(para):
            for s in seg.segment(part):
                s = s.strip()
                if pieces and not re.search(r"[\w]", s):
                    pieces[-1] += s  # pysbd sometimes strands a closing quote
                elif s:
                    pieces.append(s)
        for k, s in enumerate(pieces):
            out.append(Sentence(s, len(out), p, _is_fragment(s, k == len(pieces) - 1)))
    return out


def sentences(text: str) -> list[str]:
    """Plain list of the non-fragment sentences of an article."""
    return [s.text for s in split_sentences(text) if not s.fragment]

"""Article stage: the main text of an entry, from the feed itself or from its fetched page.

Pure: strings in, strings out, no network (the runner fetches pages with the SSRF rules). Pages are reduced to
their main text with trafilatura, then `strip_boilerplate` drops boilerplate lines that survive (share, follow and
subscribe prompts, "you may also like" promotions, comment forms, ad labels); feed-provided text gets the
same cleanup.
"""

from __future__ import annotations

import re
from typing import Any

from lxml import etree
from lxml import html as lxml_html

from bot.errors import ExtractError
from bot.models import Entry

MAX_PAGE_BYTES = 5 * 1024 * 1024
MAX_FEED_HTML_CHARS = 1024 * 1024
MAX_TEXT_CHARS = 200_000
MIN_ARTICLE_WORDS = 10
FULL_TEXT_WORDS = 150

# favor_precision is trafilatura's own stricter boilerplate filter; comments are never article text.
EXTRACT_OPTIONS: dict[str, Any] = {"include_comments": False, "favor_precision": True, "include_tables": True,
                                   "include_images": False, "include_links": False, "deduplicate": False}

_PROMO = (
    r"you(?: may| might| will|'ll| could) (?:also )?(?:like|love|enjoy|be interested)",
    r"(?:we|you) think you(?:'ll| will| would)? (?:also )?(?:like|enjoy)",
    r"(?:also read|read (?:more|also|next)|see (?:more|also)|more|also|related(?: \w+){0,2}|watch)\s*[:|]",
    r"don'?t miss\b",
    r"(?:read|see) the full (?:story|article)",
    r"the post .{1,300} appeared first on ",
)
_HEADINGS = (  # whole short lines only: section labels of link lists and ad slots
    r"related(?: stories| articles| coverage| content| reading| links| topics)?",
    r"more (?:from|on) .{1,60}",
    r"recommended(?: for you| stories| articles| reading| videos)?",
    r"(?:top|latest|trending|popular) stories",
    r"trending(?: now| stories| videos| news)?",
    r"most (?:read|popular|viewed|shared|commented)(?: .{1,40})?",
    r"advertisements?", r"sponsored(?: content| links| stories)?", r"promoted(?: stories| content| links)?",
    r"ad", r"skip (?:this )?ad",
    r"(?:story|article) continues below(?: this| the)?(?: advertisement| ad)?",
    r"continue reading(?: the main story| below)?",
    r"scroll (?:down )?to continue(?: with content| reading)?",
    r"(?:\d+ )?comments?(?: \(\d+\))?",
    r"(?:show|view|load|hide|read) (?:all )?(?:\d+ )?comments",
    r"(?:subscribe|sign up)(?: now| today| here| for free)?",
    r".{0,40}\bnewsletters?",
    r"share(?: this)?(?: article| story| post| page)?",
)
# A video outlet's prompt, matched as a line of its own (_SOCIAL) and at the end of a line (_TRAILING_PROMPT).
_CHANNEL_PROMPT = r"subscribe to (?:our|my|the) (?:youtube |news )?channel"
_SOCIAL = (
    r"follow (?:us|me|him|her|them|[\w.@' ]{1,40}) on (?:twitter|x|facebook|instagram|linkedin|youtube|"
    r"tiktok|threads|bluesky|telegram|whatsapp|google news|flipboard)",
    r"(?:find|like|join) us on (?:twitter|x|facebook|instagram|linkedin|youtube|tiktok|threads|bluesky|"
    r"telegram|whatsapp)\s*:",
    r"check (?:out )?our website\s*:",
    r"(?:share|post|send) (?:this|it)? ?(?:on|via|to|with) "
    r"(?:twitter|x|facebook|whatsapp|linkedin|reddit|email)",
    r"click to (?:share|tweet|email|print)",
    r"(?:subscribe|sign up|register)\b.{0,80}\b(?:newsletters?|inbox|alerts)",
    _CHANNEL_PROMPT,
    r"(?:get|receive) .{0,80}\b(?:in|to|into) your inbox",
    r"delivered (?:straight |right |directly )?to your inbox",
    r"if you (?:enjoyed|liked|value|appreciate) (?:this|our|reading)",
    r"visit .{0,60}(?:homepage|home page) for more",
    r"support (?:our|independent|quality) journalism",
)
_COMMENT_FORM = (
    r"leave a (?:reply|comment)", r"post a comment", r"add (?:a|your) comment", r"cancel reply",
    r"post comment", r"submit comment", r"your email address will not be published",
    r"required fields are marked", r"save my name, email,? and website",
    r"notify me of (?:follow-up|new) (?:comments|posts)", r"this site uses akismet",
    r"you must be logged in to (?:post|leave) a comment", r"log ?in to (?:comment|reply)",
    r"join the (?:conversation|discussion)", r"tell us what you think", r"have your say",
)
_LABELS = (
    r"filed under\s*:", r"(?:tags|topics|categories)\s*:", r"(?:copyright|©|\(c\))\s",
    r".{0,80}all rights reserved",
)

# (patterns, most words a matching line may have): the limit keeps real sentences that start alike.
_LIMITS = ((_PROMO, 35), (_SOCIAL, 40), (_COMMENT_FORM, 25), (_LABELS, 25))
_RULES = tuple((re.compile(r"^(?:" + "|".join(patterns) + r")", re.IGNORECASE), limit)
               for patterns, limit in _LIMITS)
_WHOLE_LINE = re.compile(r"^(?:" + "|".join(_HEADINGS) + r")\W*$", re.IGNORECASE)
_SOCIAL_WORDS = frozenset("share tweet email e-mail print facebook twitter x linkedin whatsapp reddit "
                          "pinterest telegram messenger copy link url save comment comments flipboard "
                          "bluesky".split())
# Video outlets end a description with channel prompts on the same line: "... - Subscribe to our channel: URL".
_TRAILING_PROMPT = re.compile(
    r"(?:\s*(?:click to tweet|tweet this)|(?:\s+[-–—•|]\s*(?:" + _CHANNEL_PROMPT + r"|follow us on [\w ]{1,20}|"
    r"find us on [\w ]{1,20}|check (?:out )?our [\w ]{1,30})\s*:?\s*(?:https?://\S+)?)+)\s*$",
    re.IGNORECASE)
_BULLET = " \t\u00a0•·*▪►»>|-–—"
_TEASER_END = re.compile(
    r"(?:\.\.\.|…|\[…\]|\[\.\.\.\]|\(more…?\)|read (?:more|on)|continue reading|read the (?:full|rest)[\w ]*|"
    r"lire la suite|weiterlesen|leer más|leia mais)\W*$", re.IGNORECASE)
_WORD = re.compile(r"\w+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Chinese and Japanese are written without spaces: count their characters as words.
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_BLOCK_TAGS = frozenset("p div br li ul ol h1 h2 h3 h4 h5 h6 blockquote pre tr table section article header "
                        "footer aside figure dd dt dl hr".split())
# Elements whose text is never article text; comments and processing instructions carry no text anyway.
_DROP_TAGS = ("script", "style", "noscript", "template", "iframe", "object", "embed", "svg", "math", "form",
              "button", "select", "textarea", "nav", "figcaption")


def extract_article(html: str | bytes, url: str | None = None, *, max_bytes: int = MAX_PAGE_BYTES,
                    min_words: int = MIN_ARTICLE_WORDS) -> str:
    """Main text of a fetched page, boilerplate removed; raise `ExtractError` when nothing usable is left."""
    if len(html) > max_bytes:
        raise ExtractError(f"page larger than {max_bytes} bytes ({url or 'no url'})")
    if not html or not html.strip():
        raise ExtractError(f"empty page ({url or 'no url'})")
    import trafilatura  # here: only the processes that extract pages pay for it (~10 MB), not the service's

    text = trafilatura.extract(html, url=url, output_format="txt", **EXTRACT_OPTIONS)
    cleaned = strip_boilerplate(text or "")
    if word_count(cleaned) < min_words:
        raise ExtractError(f"no article text found ({url or 'no url'})")
    return cleaned


def strip_boilerplate(text: str) -> str:
    """Drop boilerplate lines (prompts, promotions, comment forms, ad labels) from plain text."""
    kept: list[str] = []
    for line in text[:MAX_TEXT_CHARS].splitlines():
        line = _TRAILING_PROMPT.sub("", line.rstrip())
        if _is_boilerplate(line):
            continue
        if line.strip() or (kept and kept[-1].strip()):
            kept.append(line)
    return "\n".join(kept).strip()


def text_from_entry(entry: Entry) -> str:
    """Plain, cleaned text the feed itself carries for an entry (full content if any, else summary)."""
    return strip_boilerplate(html_to_text(_feed_html(entry)))


def needs_page(entry: Entry, *, min_words: int = FULL_TEXT_WORDS) -> bool:
    """True when the feed carries only a teaser, so the article page must be fetched and extracted."""
    if not entry.url:
        return False
    raw = html_to_text(_feed_html(entry))
    if _TEASER_END.search(raw[-300:]):
        return True
    return word_count(strip_boilerplate(raw)) < min_words


def html_to_text(fragment: str) -> str:
    """Text of an HTML fragment (feed content) with one line per block element; plain text passes through."""
    # lxml refuses control characters in text it is given; they carry nothing readable anyway.
    fragment = _CONTROL.sub("", fragment[:MAX_FEED_HTML_CHARS])
    if "<" not in fragment and "&" not in fragment:
        return _normalize_lines(fragment)
    try:
        # document_fromstring, not fragment_fromstring: feed content is sometimes a whole HTML document.
        root = lxml_html.document_fromstring(fragment).find("body")
    except (etree.ParserError, etree.XMLSyntaxError, ValueError):
        root = None
    if root is None:  # nothing but markup or comments
        return "" if "<" in fragment else _normalize_lines(fragment)
    etree.strip_elements(root, *_DROP_TAGS, with_tail=False)
    for element in root.iter():
        if isinstance(element.tag, str) and element.tag.lower() in _BLOCK_TAGS:
            element.tail = "\n" + (element.tail or "")
            if element.tag.lower() != "br":
                element.text = "\n" + (element.text or "")
    return _normalize_lines(root.text_content())


def word_count(text: str) -> int:
    """Words in `text`, counting each CJK character as one word."""
    cjk = len(_CJK.findall(text))
    return cjk + len(_WORD.findall(_CJK.sub(" ", text) if cjk else text))


def _feed_html(entry: Entry) -> str:
    return entry.content if len(entry.content) >= len(entry.summary) else entry.summary


def _normalize_lines(text: str) -> str:
    lines = (" ".join(line.split()) for line in text.splitlines())
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip()


def _is_boilerplate(line: str) -> bool:
    core = line.strip(_BULLET)
    if not core:
        return False
    words = len(core.split())
    if _WHOLE_LINE.match(core) and words <= 8:
        return True
    if words <= 6 and all(w.strip(":|,.").lower() in _SOCIAL_WORDS for w in core.split()):
        return True
    return any(words <= limit and rule.match(core) for rule, limit in _RULES)


def read_page(html: str | bytes, url: str | None = None) -> tuple[str, str]:
    """A page's article text (as `extract_article`) and its headline (as `page_title`), in one call."""
    return extract_article(html, url), page_title(html)


def page_title(html: str | bytes) -> str:
    """The page's headline from its metadata (og:title, <title>), or '' when it has none."""
    # load_html inside takes bytes too (it decodes them); the annotation names str and trees only.
    import trafilatura

    meta = trafilatura.extract_metadata(html)  # type: ignore[arg-type]
    return (meta.title or "").strip() if meta is not None else ""

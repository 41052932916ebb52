"""Digest stage (pure): rank and select stories for a chat, and the schedule math for when digests are due."""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from bot.pipeline.filters import ChatFilters, passes_filters
from bot.pipeline.followups import Coverage, SentStory, WhatsNew, coverage, follow_up

# Ranking weights: breadth of coverage matters most, then freshness, then how on-topic the story is.
W_OUTLETS, W_RECENCY, W_TOPIC = 0.5, 0.3, 0.2
OUTLETS_FULL = 10  # outlets at which the coverage term saturates
RECENCY_HALF_LIFE_H = 12.0
MAX_LINKS = 6
MAX_LOOKBACK = timedelta(hours=24)
URL_MAX = 2048


@dataclass(frozen=True)
class OutletLink:
    """One outlet's article about a story: `title` is the article's own headline; `core` says it surely belongs
    to the story (`story.is_core_member`): only core members are shown, so a link is never about another event."""

    outlet: str
    url: str
    title: str = ""
    core: bool = True


@dataclass(frozen=True)
class SourcedSentence:
    """One summary sentence and the member article it was taken from (verbatim for extractive summaries);
    `url` is empty for generated text, which has no single source."""

    text: str
    outlet: str = ""
    url: str = ""
    article_id: int | None = None


@dataclass(frozen=True)
class StoryCandidate:
    """A stored story as the digest stage sees it (links: its members, earliest published first; outlet_count:
    distinct outlets among core members)."""

    id: int
    version: int
    title: str
    summary: str
    major_update_at: datetime
    outlet_count: int
    article_count: int
    topic_score: float
    topics: tuple[str, ...] = ()
    links: tuple[OutletLink, ...] = ()
    topic_scores: Mapping[str, float] = field(default_factory=dict)
    # The summary sentence by sentence with its source; empty for stories summarized before sources were kept.
    sentences: tuple[SourcedSentence, ...] = ()

    def relevance(self, wanted: Collection[str]) -> float:
        """How on-topic the story is for a chat: its best score among the chat's topics (every topic when the
        chat wants all, or when the story has no per-topic scores)."""
        if wanted and self.topic_scores:
            return max((float(self.topic_scores.get(t, 0.0)) for t in wanted), default=0.0)
        return self.topic_score


@dataclass(frozen=True)
class DigestStory:
    """A story chosen for a digest; `updated` marks a substantial update of a story the chat already got.

    For such an update `news` says what is new to the chat and `reply_to` is the message the chat got it in
    ("" when unknown: it goes as an item of the digest); `coverage` is what this item shows, recorded as sent.

    `title` is the headline of `links[0]` (the lead article) whenever that link has one, so the headline and
    the first link are always the same article; `summary` never repeats the headline."""

    id: int
    version: int
    title: str
    summary: str
    links: tuple[OutletLink, ...]
    outlet_count: int
    score: float
    updated: bool = False
    # `summary` sentence by sentence with each one's outlet and link (empty when the sources are unknown).
    sentences: tuple[SourcedSentence, ...] = ()
    news: WhatsNew | None = None
    reply_to: str = ""
    coverage: Coverage | None = None

    @property
    def follow_up(self) -> bool:
        """An update sent as a reply to the message the chat got the story in."""
        return self.news is not None and bool(self.reply_to)


@dataclass(frozen=True)
class Digest:
    """The ranked stories for one chat over a time window."""

    since: datetime
    until: datetime
    stories: tuple[DigestStory, ...]
    title: str = "News digest"

    @property
    def story_versions(self) -> dict[int, int]:
        """story id -> version, what gets recorded as sent."""
        return {s.id: s.version for s in self.stories}

    @property
    def story_coverage(self) -> dict[int, dict[str, object]]:
        """story id -> what its item shows (Coverage.to_json), recorded with the version sent."""
        return {s.id: s.coverage.to_json() for s in self.stories if s.coverage is not None}


def score_story(c: StoryCandidate, now: datetime, topics: Collection[str] = ()) -> float:
    """Rank score in [0, 1]: outlets carrying it, recency of its last major update, score on the chat's topics."""
    outlets = min(1.0, math.log1p(max(c.outlet_count, 1)) / math.log1p(OUTLETS_FULL))
    age_h = max(0.0, (now - c.major_update_at).total_seconds() / 3600)
    recency: float = 0.5 ** (age_h / RECENCY_HALF_LIFE_H)
    topic = min(1.0, max(0.0, c.relevance(topics)))
    return W_OUTLETS * outlets + W_RECENCY * recency + W_TOPIC * topic


def select_stories(candidates: Sequence[StoryCandidate], *, now: datetime, since: datetime, max_stories: int,
                   topics: Sequence[str] = (), min_topic_score: float = 0.0,
                   sent_versions: Mapping[int, int] | None = None,
                   filters: ChatFilters | None = None,
                   sent: Mapping[int, SentStory] | None = None) -> tuple[DigestStory, ...]:
    """The top `max_stories` stories updated in (since, now], on the chat's topics, not already sent at that version.

    A story the chat got (`sent`, or only its versions in `sent_versions`) comes again only when its update is
    substantial for the chat (bot.pipeline.followups.follow_up), with what is new and the message to reply to.

    The chat's `filters` apply before ranking: a story they hide never takes a place, and a muted outlet's
    links and sentences are left out of the stories that remain.

    A story must score at least `min_topic_score` on one of the chat's topics (a geopolitics digest carries
    geopolitics, however high the story scores as world news); a story with no topic labels passes the topic
    filter (nothing says it is off-topic); an empty `topics` means every topic.
    """
    records = dict(sent) if sent is not None else {k: SentStory(v) for k, v in (sent_versions or {}).items()}
    wanted = set(topics)
    chosen: list[DigestStory] = []
    for c in candidates:
        if not (since < c.major_update_at <= now) or c.relevance(wanted) < min_topic_score:
            continue
        if wanted and c.topics and not wanted.intersection(c.topics):
            continue
        previous = records.get(c.id)
        if previous is not None and c.version <= previous.version:
            continue
        if filters and not passes_filters(c, filters):
            continue
        c_links, c_sentences = c.links, c.sentences
        if filters and filters.muted_outlets:
            c_links = tuple(lk for lk in c.links if not filters.outlet_muted(lk.outlet))
            c_sentences = tuple(s for s in c.sentences if not (s.outlet and filters.outlet_muted(s.outlet)))
        links = story_links(c_links)
        title = headline(c, links)
        sentences = strip_headline_sentences(c_sentences, title)
        summary = " ".join(s.text for s in sentences) if sentences else strip_headline(c.summary, title)
        shown = [lk for lk in c_links if lk.core and linkable(lk.url)]
        texts = [title, summary, *(lk.title for lk in shown)]
        cov = coverage(texts, [lk.outlet for lk in shown], c.outlet_count)
        send, news = follow_up(records, c.id, c.version, cov, texts)
        if not send:
            continue
        chosen.append(DigestStory(id=c.id, version=c.version, title=title, summary=summary,
                                  links=links, outlet_count=c.outlet_count, score=score_story(c, now, wanted),
                                  updated=previous is not None, sentences=sentences, news=news,
                                  reply_to=previous.message_ref if previous is not None and news is not None else "",
                                  coverage=cov))
    chosen.sort(key=lambda s: (-s.score, -s.id))
    return tuple(chosen[:max_stories])


def linkable(url: str | None) -> bool:
    """An absolute http(s) URL with a host, no whitespace or control characters, short enough for any chat."""
    if not url or len(url) > URL_MAX or any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        return False
    try:
        parts = urlsplit(url)
        return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
    except ValueError:
        return False


def story_links(links: Sequence[OutletLink]) -> tuple[OutletLink, ...]:
    """The links a digest shows: core members only, linkable, one per outlet and URL, the lead (earliest) first."""
    return dedupe_links([lk for lk in links if lk.core and linkable(lk.url)])[:MAX_LINKS]


def headline(c: StoryCandidate, links: Sequence[OutletLink]) -> str:
    """The story's headline: the lead link's own title, so the headline and the first link are one article;
    the stored title when there is no link or it has no title."""
    if links and links[0].title.strip():
        return " ".join(links[0].title.split())
    return c.title


# Words that carry no content: a sentence made of the headline's words plus these says nothing new.
_FILLER = frozenset("a an the of in on at to for from by with and or but as is are was were be been has have had "
                    "it its this that these those there here after over into amid says said say reports report "
                    "reported according".split())
_WORD = re.compile(r"\w+")
# Sentence ends: a period/question/exclamation (maybe closed by a quote or bracket), then space.
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|(?<=[.!?…][\"”’')\]])\s+")
# Title separators: "Headline - Outlet", "Headline | Section".
_TITLE_PARTS = re.compile(r"\s+[-–—|:]\s+|:\s+")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.casefold())


def repeats_headline(sentence: str, title: str) -> bool:
    """True when a sentence says no more than the headline: the same words, or at most a few filler words and
    one new word besides the headline's (so a lede that adds who, where or how many is not a repeat)."""
    head = _words(title)
    words = _words(sentence)
    if not head or not words:
        return False
    if words == head:
        return True
    parts = {tuple(_words(p)) for p in _TITLE_PARTS.split(title) if p.strip()}
    if tuple(words) in parts and len(words) >= 3:
        return True
    known = set(head)
    new = [w for w in words if w not in known and w not in _FILLER]
    covered = sum(1 for w in words if w in known)
    return len(words) >= 3 and covered >= 0.6 * len(words) and len(new) <= 1


def strip_leading_headline(text: str, title: str) -> str:
    """`text` without the headline glued to its start ("Quake hits Coalinga A 3.8 quake..." -> "A 3.8 quake...")."""
    head = _words(title)
    if len(head) < 3:  # a one- or two-word headline is too likely the subject of a real sentence
        return text
    matches = list(_WORD.finditer(text))
    if len(matches) <= len(head) or [m.group().casefold() for m in matches[:len(head)]] != head:
        return text
    gap = text[matches[len(head) - 1].end():matches[len(head)].start()]
    rest = text[matches[len(head)].start():]
    # Glued means a new sentence starts right after: only a separator between, and a capital or figure next.
    if gap.strip(" \t\n.:-–—|") or not (rest[:1].isupper() or rest[:1].isdigit()):
        return text
    return rest


def strip_headline(summary: str, title: str) -> str:
    """The summary without what repeats the headline (sentences that say no more than it, or the headline glued
    to the first sentence); unchanged when nothing repeats it."""
    if not summary.strip() or not _words(title):
        return summary
    kept, changed = [], False
    for sentence in _SENTENCE_END.split(summary.strip()):
        cut = strip_leading_headline(sentence, title)
        if repeats_headline(cut, title):
            changed = True
            continue
        changed = changed or cut != sentence
        kept.append(cut)
    return " ".join(kept) if changed else summary


def strip_headline_sentences(sentences: Sequence[SourcedSentence], title: str) -> tuple[SourcedSentence, ...]:
    """`strip_headline` sentence by sentence, each keeping its source; sentences left empty are dropped."""
    out = []
    for s in sentences:
        text = strip_headline(s.text, title).strip()
        if text:
            out.append(SourcedSentence(text, s.outlet, s.url, s.article_id) if text != s.text else s)
    return tuple(out)


def dedupe_links(links: Sequence[OutletLink]) -> tuple[OutletLink, ...]:
    """One link per outlet (the first seen) and per URL."""
    seen_outlets: set[str] = set()
    seen_urls: set[str] = set()
    out = []
    for lk in links:
        key = lk.outlet.strip().lower()
        if not lk.url or lk.url in seen_urls or (key and key in seen_outlets):
            continue
        seen_outlets.add(key)
        seen_urls.add(lk.url)
        out.append(lk)
    return tuple(out)


def build_digest(candidates: Sequence[StoryCandidate], *, now: datetime, since: datetime, max_stories: int,
                 topics: Sequence[str] = (), min_topic_score: float = 0.0,
                 sent_versions: Mapping[int, int] | None = None, filters: ChatFilters | None = None,
                 sent: Mapping[int, SentStory] | None = None) -> Digest:
    """A Digest value for the window (since, now]."""
    return Digest(since=since, until=now,
                  stories=select_stories(candidates, now=now, since=since, max_stories=max_stories, topics=topics,
                                         min_topic_score=min_topic_score, sent_versions=sent_versions,
                                         filters=filters, sent=sent))


# schedules -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """When a chat gets digests: times of day in its time zone, or every N hours."""

    timezone: str = "UTC"
    times: tuple[str, ...] = ("08:00",)
    every_hours: int | None = None

    def describe(self) -> str:
        """Human form, e.g. 'at 08:00, 18:00 (Europe/Berlin)' or 'every 6 h'."""
        if self.every_hours:
            return f"every {self.every_hours} h ({self.timezone})"
        return f"at {', '.join(self.times)} ({self.timezone})"


def parse_time_of_day(value: str) -> time:
    """'8:00' or '08:00' -> time(8, 0); raises ValueError."""
    hh, sep, mm = value.strip().partition(":")
    if not sep or not hh.isdigit() or not mm.isdigit() or len(mm) != 2 or len(hh) > 2:
        raise ValueError(f"{value!r} is not a time like 08:00")
    h, m = int(hh), int(mm)
    if not (0 <= h <= 23 and 0 <= m <= 59):
        raise ValueError(f"{value!r} is not a time of day (00:00 to 23:59)")
    return time(h, m)


def _local_instants(day: datetime, tz: ZoneInfo, times: Sequence[time]) -> list[datetime]:
    out = []
    for t in times:
        naive = datetime.combine(day.date(), t)
        # fold=0 picks the first of two repeated wall times (DST end) and maps a skipped wall time (DST start)
        # to the instant just after the gap, so every configured time fires exactly once a day.
        out.append(naive.replace(tzinfo=tz, fold=0).astimezone(UTC))
    return out


def next_due(schedule: Schedule, after: datetime) -> datetime:
    """The first digest time strictly after `after` (aware), in UTC; DST-safe."""
    tz = ZoneInfo(schedule.timezone)
    if schedule.every_hours:
        n = schedule.every_hours
        if 24 % n == 0:
            times = [time(h, 0) for h in range(0, 24, n)]
        else:
            # Not a divisor of a day: a fixed grid of N-hour steps from the Unix epoch.
            step = n * 3600
            ts = math.floor(after.timestamp() / step + 1) * step
            return datetime.fromtimestamp(ts, UTC)
    else:
        times = sorted(parse_time_of_day(t) for t in schedule.times)
        if not times:
            raise ValueError("a schedule needs at least one time of day or every_hours")
    local = after.astimezone(tz)
    for offset in range(-1, 3):
        day = local + timedelta(days=offset)
        for instant in sorted(_local_instants(day, tz, times)):
            if instant > after:
                return instant
    raise AssertionError("no due time within three days")  # unreachable: every day has at least one instant


def period(schedule: Schedule) -> timedelta:
    """The longest gap between two digests (for the lookback of the first digest after a long pause)."""
    if schedule.every_hours:
        return timedelta(hours=schedule.every_hours)
    mins = sorted(parse_time_of_day(t).hour * 60 + parse_time_of_day(t).minute for t in schedule.times)
    gaps = [b - a for a, b in zip(mins, mins[1:], strict=False)] + [mins[0] + 1440 - mins[-1]]
    return timedelta(minutes=max(gaps))


def digest_since(now: datetime, last_digest_at: datetime | None, schedule: Schedule | None = None,
                 requested: timedelta | None = None) -> datetime:
    """Start of a digest window: the requested span, else since the last digest, at most 24 h (or one period)."""
    cap = MAX_LOOKBACK if schedule is None else max(MAX_LOOKBACK, period(schedule))
    if requested is not None:
        return now - requested
    if last_digest_at is None or now - last_digest_at > cap:
        return now - cap
    return last_digest_at


def digest_key(subscription_id: int, due_at: datetime) -> str:
    """Idempotency key of one scheduled digest run (outbox rows share it, one per part)."""
    return f"s{subscription_id}-{int(due_at.timestamp())}"

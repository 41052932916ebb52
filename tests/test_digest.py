"""Digest stage: ranking, selection, re-sending on substantial updates, and DST-safe schedules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.pipeline.digest import (
    OutletLink,
    Schedule,
    StoryCandidate,
    build_digest,
    dedupe_links,
    digest_since,
    next_due,
    period,
    repeats_headline,
    score_story,
    select_stories,
    strip_headline,
)

NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)


def cand(i: int, *, outlets: int = 1, hours_ago: float = 1, topic: float = 0.9, version: int = 1,
         topics: tuple[str, ...] = ("world",)) -> StoryCandidate:
    return StoryCandidate(id=i, version=version, title=f"S{i}", summary="", major_update_at=NOW - timedelta(hours=hours_ago),
                          outlet_count=outlets, article_count=outlets, topic_score=topic, topics=topics,
                          links=tuple(OutletLink(f"O{k}", f"https://o{k}.example/{i}") for k in range(outlets)))


def test_more_outlets_rank_higher_then_recency_then_topic() -> None:
    assert score_story(cand(1, outlets=5), NOW) > score_story(cand(2, outlets=1), NOW)
    assert score_story(cand(1, hours_ago=1), NOW) > score_story(cand(2, hours_ago=20), NOW)
    assert score_story(cand(1, topic=0.9), NOW) > score_story(cand(2, topic=0.6), NOW)
    picked = select_stories([cand(1), cand(2, outlets=6), cand(3, outlets=3)], now=NOW,
                            since=NOW - timedelta(days=1), max_stories=2)
    assert [s.id for s in picked] == [2, 3]


def test_window_topics_min_score_and_sent_versions() -> None:
    cands = [cand(1, hours_ago=30), cand(2, topic=0.2), cand(3, topics=("sport",)), cand(4, topics=()),
             cand(5, version=2), cand(6, version=1), cand(7)]
    picked = select_stories(cands, now=NOW, since=NOW - timedelta(days=1), max_stories=10, topics=["world"],
                            min_topic_score=0.5, sent_versions={5: 1, 6: 1})
    by_id = {s.id: s for s in picked}
    # 1: too old; 2: below the topic score; 3: off-topic; 6: already sent at this version.
    assert set(by_id) == {4, 5, 7}
    assert by_id[5].updated and not by_id[7].updated
    everything = select_stories(cands, now=NOW, since=NOW - timedelta(days=2), max_stories=10)
    assert len(everything) == 7


def test_a_geopolitics_digest_needs_a_geopolitics_score() -> None:
    """A story that scores high as world news but low on geopolitics (a COVID rule, a celebrity) stays out of a
    geopolitics digest, and the rank uses the score on the chat's topics."""
    covid = StoryCandidate(**{**cand(1, outlets=4).__dict__, "topic_score": 0.83, "topics": ("geopolitics", "world"),
                              "topic_scores": {"geopolitics": 0.01, "world": 0.83}})
    war = StoryCandidate(**{**cand(2, outlets=2).__dict__, "topic_score": 0.99, "topics": ("geopolitics", "world"),
                            "topic_scores": {"geopolitics": 0.99, "world": 0.6}})
    geo = select_stories([covid, war], now=NOW, since=NOW - timedelta(days=1), max_stories=5,
                         topics=["geopolitics"], min_topic_score=0.5)
    assert [s.id for s in geo] == [2]
    world = select_stories([covid, war], now=NOW, since=NOW - timedelta(days=1), max_stories=5,
                           topics=["world"], min_topic_score=0.5)
    assert [s.id for s in world] == [1, 2]
    assert covid.relevance({"geopolitics"}) == 0.01 and covid.relevance(()) == 0.83


def test_links_deduplicated_per_outlet() -> None:
    links = [OutletLink("BBC", "https://a"), OutletLink("bbc ", "https://b"), OutletLink("DW", "https://a"),
             OutletLink("DW", "https://c"), OutletLink("X", "")]
    assert dedupe_links(links) == (OutletLink("BBC", "https://a"), OutletLink("DW", "https://c"))


def test_weak_members_neither_rank_nor_show() -> None:
    # A story with one sure member and five weak joins (maybe other events) vs a story of three sure outlets:
    # outlet_count is core outlets (Store.refresh_story_counts), and no weak member's link reaches the digest.
    weak = StoryCandidate(id=1, version=1, title="Quake hits Coalinga", summary="A 3.8 quake hit Coalinga.",
                          major_update_at=NOW - timedelta(hours=1), outlet_count=1, article_count=6, topic_score=0.9,
                          links=(OutletLink("A", "https://a.example/1", "Quake hits Coalinga"),
                                 *(OutletLink(f"W{k}", f"https://w{k}.example/", f"Quake rattles town {k}", core=False)
                                   for k in range(5))))
    sure = cand(2, outlets=3)
    first, second = select_stories([weak, sure], now=NOW, since=NOW - timedelta(days=1), max_stories=2)
    assert first.id == 2 and second.id == 1
    assert [lk.url for lk in second.links] == ["https://a.example/1"]


def test_headline_is_the_first_links_article() -> None:
    # The stored title came from another member than the earliest one: the headline follows the first link.
    c = StoryCandidate(id=1, version=1, title="Later write-up", summary="Officials counted 40 dead on Monday.",
                       major_update_at=NOW - timedelta(hours=1), outlet_count=2, article_count=2, topic_score=0.9,
                       links=(OutletLink("Bad", "javascript:alert(1)", "Not a link"),
                              OutletLink("Reuters", "https://reuters.example/a", "Floods kill 40 in Kerala"),
                              OutletLink("AP", "https://ap.example/b", "Later write-up")))
    (story,) = select_stories([c], now=NOW, since=NOW - timedelta(days=1), max_stories=1)
    assert story.links[0].url == "https://reuters.example/a" and story.title == "Floods kill 40 in Kerala"
    # No titled link: the stored title stays.
    bare = StoryCandidate(**{**c.__dict__, "links": (OutletLink("Reuters", "https://reuters.example/a"),)})
    assert select_stories([bare], now=NOW, since=NOW - timedelta(days=1), max_stories=1)[0].title == "Later write-up"


def test_summary_never_repeats_the_headline() -> None:
    title = "UN Security Council votes on ceasefire resolution"
    assert repeats_headline("The UN Security Council votes on a ceasefire resolution.", title)
    assert repeats_headline("Security Council votes on ceasefire.", title)
    assert not repeats_headline("The resolution passed 13-0 with Russia and China abstaining.", title)
    assert not repeats_headline("The UN Security Council voted on Friday in New York on a ceasefire resolution.",
                                title)
    assert not repeats_headline("U.S.", "U.S. backs ceasefire")
    summary = ("The UN Security Council votes on a ceasefire resolution. The resolution passed 13-0. "
               "Aid convoys are due on Sunday.")
    assert strip_headline(summary, title) == "The resolution passed 13-0. Aid convoys are due on Sunday."
    # The headline glued to the first sentence (feeds that put the title in the text) is cut off.
    glued = f"{title} Diplomats said the text was softened overnight. Aid convoys are due on Sunday."
    assert strip_headline(glued, title) == "Diplomats said the text was softened overnight. Aid convoys are due on Sunday."
    # A sentence that merely starts like the headline and goes on is kept whole; nothing to strip: unchanged.
    kept = "UN Security Council votes on ceasefire resolution drafted by Malta, diplomats say.\nMore to come."
    assert strip_headline(kept, title) == kept
    c = StoryCandidate(id=1, version=1, title=title, summary=summary, major_update_at=NOW - timedelta(hours=1),
                       outlet_count=1, article_count=1, topic_score=0.9,
                       links=(OutletLink("UN News", "https://news.un.example/1", title),))
    (story,) = select_stories([c], now=NOW, since=NOW - timedelta(days=1), max_stories=1)
    assert story.summary == "The resolution passed 13-0. Aid convoys are due on Sunday."


def test_build_digest_versions() -> None:
    d = build_digest([cand(1, version=3), cand(2)], now=NOW, since=NOW - timedelta(hours=5), max_stories=5)
    assert d.story_versions == {1: 3, 2: 1}


def test_times_of_day_in_a_time_zone() -> None:
    s = Schedule("Europe/Berlin", ("08:00", "18:30"))
    first = next_due(s, datetime(2026, 1, 5, 6, 0, tzinfo=UTC))  # 07:00 in Berlin
    assert first == datetime(2026, 1, 5, 7, 0, tzinfo=UTC)
    assert next_due(s, first) == datetime(2026, 1, 5, 17, 30, tzinfo=UTC)
    assert next_due(s, datetime(2026, 1, 5, 17, 30, tzinfo=UTC)) == datetime(2026, 1, 6, 7, 0, tzinfo=UTC)


@pytest.mark.parametrize("tz,day", [("America/New_York", datetime(2026, 3, 7)), ("America/New_York", datetime(2026, 10, 31)),
                                    ("Europe/Berlin", datetime(2026, 3, 28)), ("Europe/Berlin", datetime(2026, 10, 24))])
def test_dst_transitions_fire_every_time_exactly_once(tz: str, day: datetime) -> None:
    zone = ZoneInfo(tz)
    s = Schedule(tz, ("01:30", "02:30", "08:00"))
    t, seen = day.replace(tzinfo=zone), []
    for _ in range(12):
        t = next_due(s, t)
        seen.append(t)
    assert seen == sorted(seen) and len(set(seen)) == len(seen)
    local_days = [x.astimezone(zone).date() for x in seen]
    # Four local days (the clock change among them), three digests each: a skipped 02:30 fires just after the
    # gap, a repeated 01:30/02:30 fires once.
    assert sorted(set(local_days)) == [(day + timedelta(days=k)).date() for k in range(4)]
    assert all(local_days.count(d) == 3 for d in set(local_days))


def test_every_n_hours() -> None:
    s = Schedule("Asia/Kolkata", (), 6)
    t = next_due(s, datetime(2026, 1, 1, 0, 0, tzinfo=UTC))  # 05:30 local -> 06:00 local
    assert t.astimezone(ZoneInfo("Asia/Kolkata")).hour == 6
    assert next_due(s, t) - t == timedelta(hours=6)
    odd = Schedule("UTC", (), 5)
    a = next_due(odd, NOW)
    assert next_due(odd, a) - a == timedelta(hours=5) and a > NOW
    assert period(odd) == timedelta(hours=5)
    assert period(Schedule("UTC", ("08:00", "18:00"))) == timedelta(hours=14)


def test_digest_since() -> None:
    assert digest_since(NOW, None) == NOW - timedelta(hours=24)
    assert digest_since(NOW, NOW - timedelta(hours=3)) == NOW - timedelta(hours=3)
    assert digest_since(NOW, NOW - timedelta(days=5)) == NOW - timedelta(hours=24)
    assert digest_since(NOW, NOW - timedelta(hours=40), Schedule("UTC", (), 48)) == NOW - timedelta(hours=40)
    assert digest_since(NOW, NOW - timedelta(hours=1), requested=timedelta(hours=6)) == NOW - timedelta(hours=6)

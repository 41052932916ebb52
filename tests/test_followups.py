"""Follow-ups: when an update is news to a chat (pure), what the follow-up says and where it goes (renderers),
and which message it answers (storage)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.chat.render_discord import DiscordRenderer
from bot.chat.render_telegram import TelegramRenderer
from bot.pipeline.digest import OutletLink, SourcedSentence, StoryCandidate, build_digest
from bot.pipeline.followups import Coverage, SentStory, coverage, figures_in, names_in, whats_new
from bot.ports import STORY_BUTTON, ChatRef, OutgoingMessage
from tests.fakes.telegram_api import parse_html

NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
FIRST = ["Floods hit Kerala", "Rivers burst their banks across Kerala on Monday. Officials said at least 40 people "
         "died.", "Kerala floods kill 40"]


def test_names_leave_out_sentence_openers_title_case_days_and_outlets() -> None:
    assert names_in("Officials said U.S. Secretary of State Antony Blinken's visit to the Bank of England ended.") \
        == ["U.S. Secretary of State Antony Blinken", "Bank of England"]
    assert names_in("Rescue teams used boats on Monday. The UN and NATO met in Kyiv.") == ["UN", "NATO", "Kyiv"]
    assert names_in("Ukraine Says Russian Strikes Kill 40 In Kharkiv") == [], "Title Case says nothing"
    cov = coverage(["Reuters reported that Reuters saw Kyiv burn."], ["Reuters"], 1)
    assert cov.names == ("Kyiv",) and cov.outlets == ("Reuters",)


def test_figures_keep_scale_and_unit_but_not_years_times_or_ordinals() -> None:
    assert figures_in("At least 52 people died, 1,200 were hurt and $2 billion lost (3.5%) in 2024 at 10:30 "
                      "on the 2nd day.") == [("52", "52 people"), ("1200", "1,200"), ("$2bn", "$2 billion"),
                                             ("3.5%", "3.5%")]


def test_one_more_outlet_repeating_the_story_is_not_news_but_a_figure_a_name_or_two_outlets_are() -> None:
    before = coverage(FIRST, ["Reuters", "BBC"], 2)
    again = FIRST + ["Kerala floods: rivers burst their banks"]
    assert not whats_new(before, coverage(again, ["Reuters", "BBC", "DW"], 3), again).substantial
    toll = FIRST + ["Kerala flood toll rises to 52 people"]
    news = whats_new(before, coverage(toll, ["Reuters", "BBC"], 2), toll)
    assert news.substantial and news.figures == ("52 people",) and news.names == ()
    visit = FIRST + ["Chief Minister Pinarayi Vijayan visits Wayanad"]
    news = whats_new(before, coverage(visit, ["Reuters", "BBC"], 2), visit)
    assert news.substantial and news.names == ("Chief Minister Pinarayi Vijayan", "Wayanad")
    broad = whats_new(before, coverage(FIRST, ["Reuters", "BBC", "DW", "AP <News>"], 6), FIRST)
    assert broad.substantial and broad.outlets == ("DW", "AP <News>") and broad.more_outlets == 2
    assert broad.line() == "now also reported by DW, AP <News> and 2 more"


def test_a_known_surname_is_not_a_new_name_but_another_first_name_is() -> None:
    before = coverage(["Talks with Joe Biden in Geneva ended."], [], 1)
    assert whats_new(before, coverage(["Later Biden left Geneva."], [], 1)).names == ()
    assert whats_new(before, coverage(["Then Hunter Biden spoke."], [], 1)).names == ("Hunter Biden",)


def test_what_is_new_line_and_coverage_round_trip() -> None:
    news = whats_new(Coverage(("Reuters",), 1, ("Kerala",), ("40",)),
                     Coverage(("Reuters", "A", "B", "C", "D", "E"), 8, ("Kerala", "Wayanad"), ("40", "52")),
                     ["52 dead"])
    assert news.line() == "New: 52 dead, Wayanad · now also reported by A, B, C, D and 3 more"
    cov = coverage(FIRST, ["Reuters"], 3)
    assert Coverage.from_json(cov.to_json()) == cov
    assert Coverage.from_json(None) is None and Coverage.from_json({"outlets": "x"}) is None


def _candidate(version: int, texts: list[str], outlets: list[str]) -> StoryCandidate:
    links = tuple(OutletLink(o, f"https://{k}.example/a?x=<{k}>", title=texts[min(k, len(texts) - 1)])
                  for k, o in enumerate(outlets))
    sentences = tuple(SourcedSentence(t, outlets[0], links[0].url) for t in texts[1:2])
    return StoryCandidate(id=7, version=version, title=texts[0], summary=texts[1], major_update_at=NOW,
                          outlet_count=len(outlets), article_count=len(outlets), topic_score=0.9, links=links,
                          sentences=sentences)


def test_select_sends_an_update_only_when_it_is_news_and_replies_to_the_message_it_went_in() -> None:
    first = build_digest([_candidate(1, FIRST, ["Reuters", "BBC"])], now=NOW, since=NOW - timedelta(hours=1),
                         max_stories=5)
    (story,) = first.stories
    assert story.news is None and not story.updated and story.coverage is not None
    sent = {7: SentStory(1, Coverage.from_json(first.story_coverage[7]), "1001")}
    same = _candidate(2, FIRST, ["Reuters", "BBC", "DW"])
    assert build_digest([same], now=NOW, since=NOW - timedelta(hours=1), max_stories=5, sent=sent).stories == ()
    toll = FIRST[:2] + ["Kerala flood toll rises to 52 people"]
    (update,) = build_digest([_candidate(2, toll, ["Reuters", "BBC", "DW"])], now=NOW, since=NOW - timedelta(hours=1),
                             max_stories=5, sent=sent).stories
    assert update.follow_up and update.reply_to == "1001" and update.news is not None
    assert update.news.figures == ("52 people",) and update.news.outlets == ("DW",)
    # The part it went in was never confirmed sent: the update is an item of the digest, saying what is new.
    (listed,) = build_digest([_candidate(2, toll, ["Reuters", "BBC", "DW"])], now=NOW, since=NOW - timedelta(hours=1),
                             max_stories=5, sent={7: SentStory(1, sent[7].coverage, "")}).stories
    assert listed.updated and not listed.follow_up and listed.news == update.news
    # Rows from before coverage was kept: any newer version comes again, as before.
    (old,) = build_digest([same], now=NOW, since=NOW - timedelta(hours=1), max_stories=5,
                          sent_versions={7: 1}).stories
    assert old.updated and old.news is None and not old.follow_up


def _digest_with_follow_up() -> tuple:
    fresh = _candidate(1, ["Talks resume in Geneva", "Delegates from both sides met on Tuesday."], ["Reuters"])
    fresh = StoryCandidate(**{**fresh.__dict__, "id": 8})
    toll = FIRST[:2] + ["Kerala flood toll rises to 52 <people>"]
    first = build_digest([_candidate(1, FIRST, ["Reuters", "BBC"])], now=NOW, since=NOW - timedelta(hours=1),
                         max_stories=5)
    sent = {7: SentStory(1, Coverage.from_json(first.story_coverage[7]), "1001")}
    return build_digest([_candidate(2, toll, ["Reuters", "BBC", "AP <*News*>"]), fresh], now=NOW,
                        since=NOW - timedelta(hours=1), max_stories=5, sent=sent)


def test_telegram_sends_a_follow_up_as_its_own_reply_and_the_rest_as_the_digest() -> None:
    digest = _digest_with_follow_up()
    listed, follow = TelegramRenderer().render_digest(digest)
    plain, _ = parse_html(listed.text)
    assert plain.startswith("News digest · 1 top story") and listed.story_ids == (8,) and not listed.reply_to
    assert follow.reply_to == "1001" and follow.story_ids == (7,)
    text, entities = parse_html(follow.text)
    assert text.startswith("↪ Update: Floods hit Kerala\nNew: 52 people · now also reported by AP <*News*>")
    assert text.rstrip().endswith("/story_7")
    assert OutgoingMessage.from_payload(follow.to_payload()).reply_to == "1001"


def test_discord_sends_a_follow_up_as_a_reply_with_what_is_new_and_sources_buttons() -> None:
    digest = _digest_with_follow_up()
    listed, follow = DiscordRenderer().render_digest(digest)
    assert listed.text.startswith("**News digest** · 1 story") and listed.story_ids == (8,)
    assert [[b.data for b in row] for row in listed.buttons] == [[f"{STORY_BUTTON}8"]]
    assert follow.reply_to == "1001" and follow.text == "↪ **Update**"
    (embed,) = follow.extra["embeds"]
    assert embed["fields"][0]["name"] == "What's new"
    assert embed["fields"][0]["value"] == r"New: 52 people · now also reported by AP <\*News\*>"
    # Ten stories in one message: ten buttons in Discord's five rows.
    many = build_digest([StoryCandidate(**{**_candidate(1, FIRST, ["Reuters"]).__dict__, "id": i})
                         for i in range(1, 11)], now=NOW, since=NOW - timedelta(hours=1), max_stories=10)
    (msg,) = DiscordRenderer().render_digest(many)
    assert len(msg.buttons) == 5 and sum(len(r) for r in msg.buttons) == 10 and len(msg.story_ids) == 10


def test_the_store_records_the_part_each_story_went_in_and_gives_its_message_once_sent(sqlite_store) -> None:  # noqa: ANN001
    from bot.pipeline.digest import Schedule, next_due
    from bot.settings import DigestDefaults
    from bot.storage.chat_store import ChatStore
    from tests.fakes.stories import add_outlet, add_story

    chats = ChatStore(sqlite_store.engine)
    now = datetime.now(UTC)
    sub, _ = chats.subscribe(ChatRef("telegram", "5"), DigestDefaults(), now, next_due=next_due)
    outlet = add_outlet(sqlite_store, "Reuters", now)
    a, b = (add_story(sqlite_store, title=f"s{i}", summary="x", at=now, outlets=[outlet]) for i in range(2))
    cov = Coverage(("Reuters",), 1, ("Kerala",), ("40",))
    assert chats.enqueue_digest(sub, due_at=sub.next_due_at, next_due_at=next_due(Schedule(), now), digest_key="k",
                                payloads=[{"text": "1"}, {"text": "2"}], story_versions={a: 1, b: 1}, now=now,
                                part_stories=[[a], [b]], coverage={a: cov.to_json()})
    assert chats.sent_stories(sub.id, [a, b]) == {a: SentStory(1, cov, ""), b: SentStory(1, None, "")}
    items = chats.claim_outbox(now, lease_s=30, limit=10)
    assert [i.part for i in items] == [0]
    chats.mark_sent(items[0].id, "777", now)
    assert chats.sent_stories(sub.id, [a, b])[a].message_ref == "777"
    assert chats.sent_stories(sub.id, [a, b])[b].message_ref == "", "part 2 is not sent yet"

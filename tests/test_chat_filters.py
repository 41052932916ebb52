"""Per-chat filters: the pure matcher (property-tested), the /settings commands, and a digest end to end."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.chat.commands import CommandService
from bot.pipeline.digest import OutletLink, SourcedSentence, StoryCandidate, select_stories
from bot.pipeline.filters import (
    MAX_ENTRIES,
    MAX_ENTRY_CHARS,
    ChatFilters,
    FilterError,
    add_entry,
    clean_entry,
    contains,
    passes_filters,
    remove_entry,
    words,
)
from bot.ports import ChatRef
from tests.fakes.telegram_api import Sent
from tests.test_commands import GROUP_CHAT, run, svc, text  # noqa: F401  (svc: the fixture)
from tests.test_telegram_e2e import USER, Bot, bot, command  # noqa: F401  (bot: the fixture)

NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)


def cand(title: str = "Talks resume", summary: str = "", outlets: tuple[str, ...] = ("Reuters",),
         topics: tuple[str, ...] = ("world",), sid: int = 1) -> StoryCandidate:
    links = tuple(OutletLink(o, f"https://o{k}.example/{sid}", title) for k, o in enumerate(outlets))
    return StoryCandidate(id=sid, version=1, title=title, summary=summary, major_update_at=NOW - timedelta(hours=1),
                          outlet_count=len(outlets), article_count=len(outlets), topic_score=0.9, topics=topics,
                          links=links, sentences=tuple(SourcedSentence(s, outlets[0], links[0].url)
                                                        for s in summary.split(". ") if s))


def test_word_boundaries_phrases_case_and_unicode() -> None:
    mute_war = ChatFilters(muted_words=("war",))
    assert not passes_filters(cand("War in the north"), mute_war)
    assert not passes_filters(cand("Calm", "A trade-war looms."), mute_war)  # hyphen is a boundary
    assert passes_filters(cand("Storm warning issued"), mute_war)
    assert passes_filters(cand("Warsaw talks", "Postwar plans; wars"), mute_war)
    royal = ChatFilters(muted_words=("royal family",))
    assert not passes_filters(cand("The ROYAL   Family visits"), royal)
    assert passes_filters(cand("Royal visit", "The family stayed home"), royal)  # not consecutive
    # A phrase does not match across two separate texts (title, then summary).
    assert passes_filters(cand("Visit of the royal", "Family matters"), royal)
    assert not passes_filters(cand("Straße gesperrt"), ChatFilters(muted_words=("STRASSE",)))
    assert not passes_filters(cand("Ärzte streiken"), ChatFilters(muted_words=("ärzte",)))
    assert passes_filters(cand("Ärztekammer tagt"), ChatFilters(muted_words=("ärzte",)))
    assert not passes_filters(cand("東京 地震"), ChatFilters(muted_words=("地震",)))
    assert not passes_filters(cand("ｗａｒ news"), mute_war)  # NFKC: full-width letters
    # Regex syntax in an entry is plain text.
    assert clean_entry("a.*b") == "a.*b" and words("a.*b") == ("a", "b")
    assert passes_filters(cand("axxb"), ChatFilters(muted_words=("a.*b",)))
    assert contains("see (a) b here", "a.*b")


def test_outlets_and_required_keywords() -> None:
    f = ChatFilters(muted_outlets=("daily mail",))
    assert not passes_filters(cand(outlets=("Daily Mail",)), f)
    assert passes_filters(cand(outlets=("Daily Mail", "Reuters")), f)  # others still carry it
    assert passes_filters(cand(outlets=("Mail & Guardian",)), f)
    assert not passes_filters(cand(outlets=("BBC News",)), ChatFilters(muted_outlets=("bbc",)))
    req = ChatFilters(required={"tech": ("chips", "open source")})
    assert not passes_filters(cand("Phone launch", topics=("tech",)), req)
    assert passes_filters(cand("New chips", topics=("tech",)), req)
    assert passes_filters(cand("Open-source model", topics=("tech",)), req)
    assert passes_filters(cand("Phone launch", topics=("world",)), req)  # other topics are not constrained
    # Applied before ranking: hidden stories do not take a place, and muted outlets' links are left out.
    cs = [cand("War ends", outlets=("A", "B", "C"), sid=1), cand("Peace", outlets=("Daily Mail", "Reuters"), sid=2),
          cand("Quiet day", outlets=("Daily Mail",), sid=3), cand("Other", sid=4)]
    chosen = select_stories(cs, now=NOW, since=NOW - timedelta(hours=5), max_stories=2,
                            filters=ChatFilters(muted_words=("war",), muted_outlets=("daily mail",)))
    assert [s.id for s in chosen] == [2, 4]
    assert [lk.outlet for lk in chosen[0].links] == ["Reuters"]


def test_entry_limits() -> None:
    entries: tuple[str, ...] = ()
    for i in range(MAX_ENTRIES):
        entries = add_entry(entries, f"word{i}")
    assert add_entry(entries, "WORD0") == entries  # already there, ignoring case
    for bad in ("x" * (MAX_ENTRY_CHARS + 1), "   ", "?!", "a b c d e f g h i"):
        try:
            clean_entry(bad)
        except FilterError:
            continue
        raise AssertionError(f"{bad!r} was accepted")
    try:
        add_entry(entries, "one more")
        raise AssertionError("past the limit")
    except FilterError:
        pass
    assert remove_entry(entries, " Word3 ") == tuple(e for e in entries if e != "word3")
    assert ChatFilters.from_json(None) == ChatFilters() and ChatFilters.from_json({"muted_words": "x"}) == ChatFilters()
    f = ChatFilters(("a",), ("B",), {"t": ("c",)})
    assert ChatFilters.from_json(f.to_json()) == f and ChatFilters().to_json() is None


TEXT = st.text(alphabet=st.sampled_from("aAbß-_ .,'\n\u0301é地ａ*(["), max_size=200)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300), st.lists(st.text(max_size=MAX_ENTRY_CHARS), max_size=MAX_ENTRIES), TEXT)
def test_adversarial_inputs_never_raise(title: str, muted: list[str], summary: str) -> None:
    f = ChatFilters(muted_words=tuple(muted), muted_outlets=tuple(muted), required={"world": tuple(muted)})
    assert isinstance(passes_filters(cand(title or "x", summary), f), bool)


@settings(max_examples=300, deadline=None)
@given(TEXT, TEXT, TEXT)
def test_match_is_exactly_consecutive_words(before: str, entry: str, after: str) -> None:
    """An entry set between separators always matches; any text matches exactly when its word list holds the
    entry's word list consecutively (the reference: a naive scan)."""
    e = words(entry)
    assert contains(f"{before} {entry} {after}", entry) == bool(e)
    t = words(before + entry + after)
    expected = bool(e) and any(t[i:i + len(e)] == e for i in range(len(t)))
    assert contains(before + entry + after, entry) == expected


def test_long_text_stays_linear() -> None:
    """Many partial matches of long phrases in a long text: bounded by the limits, no backtracking."""
    f = ChatFilters(muted_words=tuple(f"a a a a a a a {i}" for i in range(MAX_ENTRIES)))
    c = cand("a " * 20000)
    t0 = time.perf_counter()
    assert passes_filters(c, f)
    assert time.perf_counter() - t0 < 5


async def test_commands(svc: CommandService) -> None:  # noqa: F811
    await run(svc, "subscribe")
    r = text(await run(svc, "settings", "mute", "word", "royal", "family,", "war"))
    assert "Muted words: royal family, war." in r
    r = text(await run(svc, "settings", "mute", "outlet", "Daily", "Mail"))
    assert "Muted outlets: Daily Mail." in r
    r = text(await run(svc, "settings", "require", "economy", "chips,", "open", "source"))
    assert "economy stories need one of: chips, open source." in r
    shown = text(await run(svc, "settings"))
    assert "Muted words: royal family, war." in shown and "Muted outlets: Daily Mail." in shown
    assert "mute word" in shown
    r = text(await run(svc, "settings", "unmute", "word", "WAR"))
    assert "Muted words: royal family." in r
    assert "is not muted" in text(await run(svc, "settings", "unmute", "word", "peace"))
    r = text(await run(svc, "settings", "unrequire", "economy"))
    assert "stories need one of" not in r
    assert "Usage: /settings mute" in text(await run(svc, "settings", "mute", "colour", "red"))
    assert "Usage: /settings mute" in text(await run(svc, "settings", "mute", "word"))
    assert "at most 60 characters" in text(await run(svc, "settings", "mute", "word", "x" * 61))
    assert "Unknown topic" in text(await run(svc, "settings", "require", "cats", "x"))
    for i in range(MAX_ENTRIES - 1):
        await run(svc, "settings", "mute", "word", f"w{i}")
    assert "At most 30" in text(await run(svc, "settings", "mute", "word", "last"))
    # Groups: chat admins only, as other settings.
    await run(svc, "subscribe", chat=GROUP_CHAT)
    denied = text(await run(svc, "settings", "mute", "word", "x", chat=GROUP_CHAT, user="9", admin=False))
    assert "administrators" in denied
    sub = svc.chats.get_subscription(GROUP_CHAT)
    assert sub is not None and not sub.filters


async def test_digest_with_muted_outlet_and_word(bot: Bot) -> None:  # noqa: F811
    api = bot.api
    api.add_chat(USER)
    await command(bot, USER, USER, "/subscribe")
    bot.produce_stories(6)  # story i: "Story i: leaders meet ...", outlets Reuters, BBC, Al Jazeera, DW (1 + i % 4)
    (r,) = await command(bot, USER, USER, "/settings mute outlet Reuters")
    assert "Muted outlets: Reuters." in r.plain
    (r,) = await command(bot, USER, USER, "/settings mute word story 3, leader")
    assert "Muted words: story 3, leader." in r.plain
    (digest,) = await command(bot, USER, USER, "/summary 12h")
    plain = digest.plain
    # Stories 0 and 4 come from Reuters only; story 3 is muted; "leader" does not hide "leaders".
    assert "Story 3:" not in plain and "Story 0:" not in plain and "Story 4:" not in plain
    assert all(f"Story {i}:" in plain for i in (1, 2, 5))
    urls = [e["url"] for e in digest.entities if e["type"] == "text_link"]
    assert urls and not any("news1.example" in u for u in urls)  # Reuters is the first outlet feed
    sub = bot.chats.get_subscription(ChatRef("telegram", str(USER)))
    assert sub is not None and sub.filters.muted_outlets == ("Reuters",)


def tg_buttons(sent: Sent) -> dict[str, str]:
    """Label -> callback data of a Telegram message's inline keyboard."""
    rows = (sent.reply_markup or {}).get("inline_keyboard") or []
    return {b["text"]: b["callback_data"] for row in rows for b in row}


async def press(bot: Bot, sent: Sent, label: str, user: int = USER) -> tuple[Sent, str]:  # noqa: F811
    """Press the button labelled `label` under `sent`; returns the edited message and the callback answer."""
    api = bot.api
    edits, answers = len([s for s in api.sent if s.method == "editMessageText"]), len(api.callback_answers)
    api.press_button(sent, user, tg_buttons(sent)[label])
    # The settings message is edited in place (after the callback is answered).
    await api.wait_for(lambda: len([s for s in api.sent if s.method == "editMessageText"]) > edits
                       and len(api.callback_answers) > answers)
    edited = [s for s in api.sent if s.method == "editMessageText"]
    assert len(edited) == edits + 1 and edited[-1].message_id == sent.message_id
    return edited[-1], api.callback_answers[-1].get("text", "")


async def test_settings_buttons_show_page_and_remove_filters(bot: Bot) -> None:  # noqa: F811
    api = bot.api
    api.add_chat(USER)
    await command(bot, USER, USER, "/subscribe")
    await command(bot, USER, USER, "/settings mute word royal family, war")
    await command(bot, USER, USER, "/settings mute outlet Daily Mail")
    long_entry = "internationally coordinated humanitarian reconstruction plan"
    assert len(long_entry) == MAX_ENTRY_CHARS
    (r,) = await command(bot, USER, USER, f"/settings require world {long_entry}")
    assert "world stories need one of" in r.plain
    for i in range(6):
        await command(bot, USER, USER, f"/settings mute word w{i}")
    (settings_msg,) = await command(bot, USER, USER, "/settings")
    assert "Muted words: royal family, war, w0" in settings_msg.plain

    view, _ = await press(bot, settings_msg, "Filters (10)")
    assert "Filters (page 1 of 2)" in view.plain and "Muted word: royal family" in view.plain
    labels = tg_buttons(view)
    assert {"✕ royal family", "✕ war", "✕ w5", "‹ Settings", "More ›"} <= set(labels)
    assert len([k for k in labels if k.startswith("✕")]) == 8
    assert all(len(d.encode()) <= 64 for d in labels.values())

    page2, _ = await press(bot, view, "More ›")
    assert "Filters (page 2 of 2)" in page2.plain and "Muted outlet: Daily Mail" in page2.plain
    assert f"Required for world: {long_entry}" in page2.plain
    assert set(tg_buttons(page2)) == {"✕ outlet Daily Mail", f"✕ world: {long_entry}", "‹ Settings", "‹ Previous"}
    page2, notice = await press(bot, page2, "✕ outlet Daily Mail")
    assert notice == "Removed: Daily Mail." and "Muted outlet: Daily Mail" not in page2.plain
    page1, _ = await press(bot, page2, "‹ Previous")
    page1, notice = await press(bot, page1, "✕ royal family")
    assert notice == "Removed: royal family." and "Muted word: royal family" not in page1.plain
    # The same button on the message before the removal: nothing more goes.
    _, notice = await press(bot, view, "✕ royal family")
    assert notice == "Already removed."
    back, _ = await press(bot, page1, "‹ Settings")
    assert "Digest settings" in back.plain and "Filters (8)" in tg_buttons(back)
    sub = bot.chats.get_subscription(ChatRef("telegram", str(USER)))
    assert sub is not None and sub.filters.muted_words == ("war", "w0", "w1", "w2", "w3", "w4", "w5")
    assert sub.filters.muted_outlets == () and sub.filters.required == {"world": (long_entry,)}

"""The chat grammar: every command line, synonyms, case, addressing, prefixes, fallbacks, durations, limits."""

from __future__ import annotations

from datetime import timedelta

import pytest

from toggler.commands import COMMANDS, Command, ParseContext, UsageError, help_lines, parse

WORDS = {"web": "web", "w": "web", "site": "web", "db": "db", "postgres": "db"}
BOT = ("@toggler:example.org", "toggler", "Toggler Bot")
CTX = ParseContext(WORDS, bot_names=BOT)
ONE = ParseContext({"web": "web", "w": "web"}, bot_names=BOT)
NONE = ParseContext({}, bot_names=BOT)
PREFIXED = ParseContext(WORDS, prefix="!t", bot_names=BOT)
DIRECT = ParseContext(WORDS, bot_names=BOT, addressed=True)


def command(body: str, ctx: ParseContext = CTX) -> Command:
    result = parse(body, ctx)
    assert isinstance(result, Command), result
    return result


def usage(body: str, ctx: ParseContext = CTX) -> UsageError:
    result = parse(body, ctx)
    assert isinstance(result, UsageError), result
    return result


# --- start / on ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("word", ["start", "on"])
def test_start_and_its_synonym(word: str) -> None:
    assert command(f"{word} web") == Command("start", "web")


@pytest.mark.parametrize("body", ["start web for 2h", "on web for 2h", "start web 2h", "start web for 2 hours"])
def test_start_for_a_duration(body: str) -> None:
    assert command(body) == Command("start", "web", timedelta(hours=2))


def test_start_for_without_target_uses_the_only_usable_target() -> None:
    assert command("start for 30m", ONE) == Command("start", "web", timedelta(minutes=30))


def test_start_with_an_alias_resolves_to_the_target_name() -> None:
    assert command("start site") == Command("start", "web")
    assert command("on postgres") == Command("start", "db")


# --- stop / off ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("word", ["stop", "off"])
def test_stop_and_its_synonym(word: str) -> None:
    assert command(f"{word} db") == Command("stop", "db")
    assert command(f"{word} all") == Command("stop", all_targets=True)


def test_stop_takes_one_target() -> None:
    assert usage("stop web db").command == "stop"


# --- extend --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("body", ["extend web by 1h", "extend web 1h", "extend w by 60m"])
def test_extend_with_and_without_by(body: str) -> None:
    assert command(body) == Command("extend", "web", timedelta(hours=1))


def test_extend_without_target_uses_the_only_usable_target() -> None:
    assert command("extend by 45m", ONE) == Command("extend", "web", timedelta(minutes=45))
    assert command("extend 45m", ONE) == Command("extend", "web", timedelta(minutes=45))


def test_extend_needs_a_duration() -> None:
    error = usage("extend web")
    assert error.command == "extend"
    assert "how long" in error.reason


# --- status, list, help --------------------------------------------------------------------------------
def test_status_with_and_without_target() -> None:
    assert command("status") == Command("status")
    assert command("status postgres") == Command("status", "db")


def test_list() -> None:
    assert command("list") == Command("list")
    assert usage("list everything").command == "list"


def test_help_and_help_topic_by_name_or_synonym() -> None:
    assert command("help") == Command("help")
    assert command("help extend") == Command("help", topic="extend")
    assert command("help off") == Command("help", topic="stop")
    assert "dance" in usage("help dance").reason


# --- case and white space ------------------------------------------------------------------------------
@pytest.mark.parametrize("body", ["START WEB", "Start Web", "sTaRt SITE", "  start web  ", "\tstart   web\n"])
def test_case_and_white_space_do_not_matter(body: str) -> None:
    assert command(body) == Command("start", "web")


def test_case_insensitive_keywords_all_for_by() -> None:
    assert command("STOP ALL") == Command("stop", all_targets=True)
    assert command("start web FOR 2H") == Command("start", "web", timedelta(hours=2))
    assert command("Extend Web BY 1H") == Command("extend", "web", timedelta(hours=1))


# --- reply fallback ------------------------------------------------------------------------------------
def test_reply_fallback_is_stripped() -> None:
    body = "> <@alice:example.org> starting `web` (0/1 ready)…\n\nstop web"
    assert command(body) == Command("stop", "web")


def test_multi_line_reply_fallback_does_not_count_against_the_line_limit() -> None:
    quoted = "\n".join(f"> line {index}" for index in range(6))
    body = f"> <@toggler:example.org> status\n{quoted}\n\nstatus web"
    assert command(body) == Command("status", "web")


def test_a_quote_alone_is_not_a_command() -> None:
    assert parse("> <@alice:example.org> start web", CTX) is None


# --- prefix and addressing -----------------------------------------------------------------------------
def test_room_prefix() -> None:
    assert command("!t start web", PREFIXED) == Command("start", "web")
    assert command("!T START WEB", PREFIXED) == Command("start", "web")


def test_unprefixed_messages_are_ignored_when_the_room_has_a_prefix() -> None:
    assert parse("start web", PREFIXED) is None
    assert parse("stop all", PREFIXED) is None


def test_addressing_by_name_works_even_with_a_prefix() -> None:
    assert command("toggler: start web", PREFIXED) == Command("start", "web")


@pytest.mark.parametrize(
    "body",
    ["toggler: start web", "toggler, start web", "Toggler start web", "@toggler:example.org start web",
     "@toggler:example.org: start web", "Toggler Bot: start web", "toggler:start web"],
)
def test_addressing_by_display_name_or_user_id(body: str) -> None:
    assert command(body) == Command("start", "web")


def test_a_name_that_only_starts_like_the_bot_is_not_addressing() -> None:
    assert parse("togglerx start web", CTX) is None


def test_addressing_with_nothing_after_it_asks_for_a_command() -> None:
    assert isinstance(parse("toggler:", CTX), UsageError)


# --- missing and unknown targets -----------------------------------------------------------------------
@pytest.mark.parametrize("body", ["start", "stop", "on", "off"])
def test_missing_target_with_exactly_one_usable_target_picks_it(body: str) -> None:
    result = command(body, ONE)
    assert result.target == "web"


@pytest.mark.parametrize("body", ["start", "stop", "extend 1h", "start for 1h"])
def test_missing_target_with_several_usable_targets_lists_them(body: str) -> None:
    error = usage(body)
    assert error.targets == ("web", "db")
    assert error.command is not None


def test_missing_target_with_no_usable_target() -> None:
    error = usage("start", NONE)
    assert error.targets == ()
    assert "no target" in error.reason


def test_unknown_target_lists_only_usable_targets() -> None:
    error = usage("start secret-prod")
    assert error.command == "start"
    assert error.targets == ("web", "db")
    assert "secret-prod" in error.reason


def test_a_target_the_sender_may_not_use_is_unknown() -> None:
    error = usage("stop db", ONE)
    assert error.targets == ("web",)


# --- unknown words -------------------------------------------------------------------------------------
def test_unknown_words_are_ignored_when_not_addressed() -> None:
    assert parse("hello everyone", CTX) is None
    assert parse("starting the meeting now", CTX) is None


def test_unknown_words_get_usage_when_addressed() -> None:
    error = usage("toggler: dance")
    assert "dance" in error.reason
    assert error.command is None


def test_unknown_words_get_usage_in_a_direct_chat() -> None:
    assert isinstance(parse("dance", DIRECT), UsageError)
    assert parse("dance", CTX) is None


def test_unknown_words_with_prefix_get_usage() -> None:
    assert isinstance(parse("!t dance", PREFIXED), UsageError)


# --- durations -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("45m", timedelta(minutes=45)),
        ("2h", timedelta(hours=2)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1d", timedelta(days=1)),
        ("2 hours", timedelta(hours=2)),
        ("1 h 30 min", timedelta(hours=1, minutes=30)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert command(f"start web for {text}").duration == expected
    assert command(f"extend web by {text}").duration == expected


@pytest.mark.parametrize("text", ["5x", "0m", "0s", "soon", "2h and a bit"])
def test_bad_or_zero_durations_get_usage(text: str) -> None:
    error = usage(f"start web for {text}")
    assert error.command == "start"
    assert "not a duration" in error.reason


def test_bad_extend_duration() -> None:
    assert "not a duration" in usage("extend web by 5x").reason


# --- size limits ---------------------------------------------------------------------------------------
def test_bodies_over_one_kib_are_not_commands() -> None:
    assert parse("start web " + "x" * 1024, DIRECT) is None
    assert parse("status" + " " * 1010, CTX) == Command("status")


def test_bodies_over_three_lines_are_not_commands() -> None:
    assert parse("start web\nplease\nnow\nthanks", DIRECT) is None
    assert isinstance(parse("start web\nplease\nnow", DIRECT), UsageError)


# --- help is generated from the table ------------------------------------------------------------------
def test_help_lines_cover_every_command_and_synonym() -> None:
    text = "\n".join(usage for usage, _ in help_lines())
    assert len(help_lines()) == len(COMMANDS)
    for spec in COMMANDS:
        for word in (spec.name, *spec.synonyms):
            assert word in text
    assert [description for _, description in help_lines()] == [spec.help for spec in COMMANDS]


@pytest.mark.parametrize("word", [word for spec in COMMANDS for word in (spec.name, *spec.synonyms)])
def test_every_word_in_the_table_is_parsed(word: str) -> None:
    result = parse(f"{word}", ONE)
    assert result is not None
    if isinstance(result, Command):
        assert result.action in {spec.name for spec in COMMANDS if word in (spec.name, *spec.synonyms)}


def test_prefix_needs_a_word_boundary() -> None:
    ctx = ParseContext(targets={"web": "web"}, prefix="!t")
    assert parse("!tstart web", ctx) is None
    assert parse("!toggle web", ctx) is None
    assert parse("!t start web", ctx) == Command("start", "web")


def test_joiner_without_duration_is_usage() -> None:
    ctx = ParseContext(targets={"web": "web", "db": "db"})
    for body in ("start web for", "extend web by", "start for"):
        result = parse(body, ctx)
        assert isinstance(result, UsageError), body
        assert "duration" in result.reason

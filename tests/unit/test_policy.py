"""Who may do what, where: deny by default; per-room, per-user and per-target grants; room aliases."""

from __future__ import annotations

from typing import Any

from toggler.config import Config
from toggler.policy import Policy

ALICE = "@alice:example.org"
BOB = "@bob:example.org"
CAROL = "@carol:example.org"
MALLORY = "@mallory:example.org"
OPS = "!ops:example.org"
DEV = "!dev:example.org"
WATCH = "!watch:example.org"
EMPTY = "!empty:example.org"
ALIASED_ID = "!aliased:example.org"
ELSEWHERE = "!elsewhere:example.org"


def make_config(rooms: dict[str, Any]) -> Config:
    return Config.model_validate({
        "matrix": {"homeserver": "http://hs.example.org", "user_id": "@toggler:example.org", "password": "x"},
        "targets": {
            "web": {"namespace": "apps", "aliases": ["site", "W"]},
            "db": {"namespace": "data", "aliases": ["postgres"]},
            "secret": {"namespace": "prod", "aliases": ["hidden"]},
        },
        "rooms": rooms,
    })


ROOMS: dict[str, Any] = {
    OPS: {"users": [ALICE, BOB], "targets": ["*"]},
    DEV: {"users": [ALICE], "targets": ["web"], "grants": {CAROL: ["db"], BOB: ["web"]}},
    WATCH: {"users": [ALICE], "targets": ["web", "db"], "actions": ["status"]},
    EMPTY: {},
    "#aliased:example.org": {"users": [BOB], "targets": ["db"]},
}
POLICY = Policy(make_config(ROOMS), resolved_aliases={"#aliased:example.org": ALIASED_ID})


# --- deny by default -----------------------------------------------------------------------------------
def test_unknown_room_denies_everything() -> None:
    for action in ("start", "stop", "extend", "status", "list", "help"):
        assert not POLICY.allowed(ALICE, ELSEWHERE, action, "web")
        assert not POLICY.allowed(ALICE, ELSEWHERE, action)
    assert POLICY.usable_targets(ALICE, ELSEWHERE) == ()
    assert not POLICY.is_configured(ELSEWHERE)


def test_unknown_user_is_denied_everything_even_help() -> None:
    for action in ("start", "stop", "status", "list", "help"):
        assert not POLICY.allowed(MALLORY, OPS, action, "web")
        assert not POLICY.allowed(MALLORY, OPS, action)
    assert POLICY.word_map(MALLORY, OPS) == {}


def test_room_with_no_targets_denies_everything() -> None:
    assert POLICY.is_configured(EMPTY)
    assert not POLICY.allowed(ALICE, EMPTY, "start", "web")
    assert not POLICY.allowed(ALICE, EMPTY, "help")
    assert POLICY.usable_targets(ALICE, EMPTY) == ()


def test_a_config_without_rooms_denies_everything() -> None:
    policy = Policy(make_config({}))
    assert not policy.allowed(ALICE, OPS, "start", "web")
    assert not policy.allowed(ALICE, OPS, "help")


# --- per room, per user, per target --------------------------------------------------------------------
def test_star_targets_means_every_target_in_config_order() -> None:
    assert POLICY.usable_targets(ALICE, OPS) == ("web", "db", "secret")
    assert POLICY.allowed(BOB, OPS, "start", "secret")


def test_per_room_grants_differ() -> None:
    assert POLICY.allowed(ALICE, DEV, "start", "web")
    assert not POLICY.allowed(ALICE, DEV, "start", "db")
    assert POLICY.allowed(ALICE, OPS, "start", "db")


def test_per_target_in_one_room() -> None:
    assert POLICY.usable_targets(ALICE, DEV) == ("web",)
    assert not POLICY.allowed(ALICE, DEV, "stop", "secret")
    assert not POLICY.allowed(ALICE, DEV, "status", "secret")


def test_per_user_grants_add_to_the_room_users() -> None:
    assert POLICY.usable_targets(CAROL, DEV) == ("db",)
    assert POLICY.allowed(CAROL, DEV, "start", "db")
    assert not POLICY.allowed(CAROL, DEV, "start", "web")
    assert POLICY.usable_targets(BOB, DEV) == ("web",)


def test_unknown_target_is_denied() -> None:
    assert not POLICY.allowed(ALICE, OPS, "start", "nope")


# --- legacy `*` room -----------------------------------------------------------------------------------
def test_star_room_applies_to_any_room_not_configured_otherwise() -> None:
    rooms = {"*": {"users": [ALICE], "targets": ["web"]}, DEV: {"users": [BOB], "targets": ["db"]}}
    policy = Policy(make_config(rooms))
    assert policy.allowed(ALICE, ELSEWHERE, "start", "web")
    assert policy.is_configured(ELSEWHERE)
    assert not policy.allowed(ALICE, ELSEWHERE, "start", "db")
    assert not policy.allowed(BOB, ELSEWHERE, "start", "db")
    assert not policy.allowed(ALICE, DEV, "start", "web"), "a room's own entry wins over `*`"


# --- room actions --------------------------------------------------------------------------------------
def test_status_only_room_allows_status_and_nothing_that_writes() -> None:
    assert POLICY.allowed(ALICE, WATCH, "status", "web")
    assert POLICY.allowed(ALICE, WATCH, "status")
    for action in ("start", "stop", "extend"):
        assert not POLICY.allowed(ALICE, WATCH, action, "web")
    assert not POLICY.allowed(ALICE, WATCH, "stop"), "`stop all` is a stop too"
    assert POLICY.allowed(ALICE, WATCH, "list")
    assert POLICY.allowed(ALICE, WATCH, "help")


def test_room_without_status_action_refuses_status_of_everything() -> None:
    policy = Policy(make_config({DEV: {"users": [ALICE], "targets": ["web"], "actions": ["start", "stop"]}}))
    assert policy.allowed(ALICE, DEV, "start", "web")
    assert not policy.allowed(ALICE, DEV, "status")
    assert not policy.allowed(ALICE, DEV, "status", "web")


def test_stop_all_and_status_all_need_no_target() -> None:
    assert POLICY.allowed(ALICE, DEV, "stop")
    assert POLICY.allowed(ALICE, DEV, "status")
    assert not POLICY.allowed(ALICE, DEV, "start")
    assert not POLICY.allowed(ALICE, DEV, "extend")


def test_list_and_help_only_for_users_with_a_usable_target() -> None:
    assert POLICY.allowed(CAROL, DEV, "list")
    assert POLICY.allowed(CAROL, DEV, "help")
    assert not POLICY.allowed(CAROL, OPS, "list")
    assert not POLICY.allowed(CAROL, OPS, "help")


# --- room aliases --------------------------------------------------------------------------------------
def test_alias_keyed_room_matches_its_resolved_id() -> None:
    assert POLICY.allowed(BOB, ALIASED_ID, "start", "db")
    assert POLICY.usable_targets(BOB, ALIASED_ID) == ("db",)


def test_unresolved_alias_grants_nothing() -> None:
    policy = Policy(make_config(ROOMS))
    assert not policy.allowed(BOB, ALIASED_ID, "start", "db")
    assert not policy.may_invite(MALLORY, ALIASED_ID)


# --- invites -------------------------------------------------------------------------------------------
def test_may_invite_when_room_is_configured_or_inviter_may_use_the_bot() -> None:
    assert POLICY.may_invite(MALLORY, OPS), "a configured room may be joined whoever invites"
    assert POLICY.may_invite(MALLORY, ALIASED_ID), "a room configured by a resolved alias is configured too"
    assert not POLICY.may_invite(MALLORY, ELSEWHERE)
    assert not POLICY.may_invite(ALICE, ELSEWHERE)


def test_may_invite_with_a_star_room_needs_a_usable_target() -> None:
    policy = Policy(make_config({"*": {"users": [ALICE], "targets": ["web"]}}))
    assert policy.may_invite(ALICE, ELSEWHERE)
    assert not policy.may_invite(MALLORY, ELSEWHERE)


# --- words ---------------------------------------------------------------------------------------------
def test_word_map_has_names_and_aliases_of_usable_targets_only() -> None:
    assert POLICY.word_map(ALICE, DEV) == {"web": "web", "site": "web", "w": "web"}
    assert POLICY.word_map(CAROL, DEV) == {"db": "db", "postgres": "db"}
    assert "hidden" in POLICY.word_map(ALICE, OPS)


def test_known_users_include_grants() -> None:
    assert POLICY.known_users() == frozenset({ALICE, BOB, CAROL})

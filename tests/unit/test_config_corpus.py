"""A corpus of broken configs: each makes `toggler check-config` exit 2 and name the field, without a traceback."""

from __future__ import annotations

import os
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from toggler import legacy
from toggler.cli import main

MATRIX = """\
matrix:
  homeserver: https://matrix.example.org
  user_id: "@toggler:example.org"
  password_file: /run/secrets/pw
"""
WEB = """\
targets:
  web:
    namespace: apps
"""
ROOMS = """\
rooms:
  "!ops:example.org":
    users: ["@alice:example.org"]
    targets: [web]
"""
ROOM = "rooms.!ops:example.org"


def make(*, matrix: str = MATRIX, targets: str = WEB, rooms: str = ROOMS, extra: str = "") -> str:
    """A config text from blocks; each block is dedented YAML."""
    return "".join(textwrap.dedent(block) for block in (matrix, targets, rooms, extra))


def targets(body: str) -> str:
    """`targets:` with `body` (written at column 0) indented under it."""
    return "targets:\n" + textwrap.indent(textwrap.dedent(body), "  ")


@dataclass(frozen=True)
class Case:
    """One broken config and the field path its report must name."""

    id: str
    text: str | None
    path: str
    line: int | None = None


TWO = "web:\n  namespace: apps\n"
CASES = [
    Case(
        "alias-is-other-name",
        make(targets=targets(TWO + "  aliases: [api]\napi:\n  namespace: apps\n")),
        "targets.web.aliases[0]",
        8,
    ),
    Case(
        "alias-is-other-alias",
        make(targets=targets(TWO + "  aliases: [site]\napi:\n  namespace: apps\n  aliases: [site]\n")),
        "targets.api.aliases[0]",
        11,
    ),
    Case("alias-repeats-own-name", make(targets=targets(TWO + "  aliases: [web]\n")), "targets.web.aliases[0]"),
    Case("alias-not-a-word", make(targets=targets(TWO + "  aliases: ['two words']\n")), "targets.web.aliases[0]"),
    Case("unknown-target-in-room", make(rooms=ROOMS.replace("[web]", "[web, db]")), f"{ROOM}.targets[1]", 11),
    Case(
        "unknown-target-in-grant",
        make(rooms=ROOMS + '    grants:\n      "@bob:example.org": [db]\n'),
        f"{ROOM}.grants.@bob:example.org[0]",
    ),
    Case("bad-duration-5x", make(extra="defaults:\n  auto_stop_after: 5x\n"), "defaults.auto_stop_after", 13),
    Case(
        "duration-without-unit",
        make(targets=targets(TWO + "  auto_stop_after: 90\n")),
        "targets.web.auto_stop_after",
        8,
    ),
    Case("duration-zero", make(extra="defaults:\n  warn_before: 0s\n"), "defaults.warn_before"),
    Case(
        "cron-field-count",
        make(targets=targets(TWO + "  schedule:\n    stop: '0 20 * *'\n")),
        "targets.web.schedule.stop",
        9,
    ),
    Case(
        "cron-out-of-range",
        make(targets=targets(TWO + "  schedule:\n    start: '0 25 * * *'\n")),
        "targets.web.schedule.start",
    ),
    Case(
        "cron-zero-step",
        make(targets=targets(TWO + "  schedule:\n    stop: '*/0 * * * *'\n")),
        "targets.web.schedule.stop",
    ),
    Case("empty-schedule", make(targets=targets(TWO + "  schedule: {}\n")), "targets.web.schedule"),
    Case(
        "schedule-unknown-zone",
        make(targets=targets(TWO + "  schedule:\n    stop: '0 20 * * *'\n    timezone: Mars/Olympus\n")),
        "targets.web.schedule.timezone",
    ),
    Case("bad-mxid-in-users", make(rooms=ROOMS.replace("@alice:example.org", "alice")), f"{ROOM}.users[0]", 10),
    Case(
        "bad-mxid-grant-key",
        make(rooms=ROOMS + '    grants:\n      "bob@example.org": [web]\n'),
        f"{ROOM}.grants.bob@example.org",
    ),
    Case("bad-room-key", make(rooms=ROOMS.replace('"!ops:example.org"', "ops-room")), "rooms.ops-room"),
    Case("bad-action", make(rooms=ROOMS + "    actions: [reboot]\n"), f"{ROOM}.actions[0]"),
    Case("long-prefix", make(rooms=ROOMS + "    command_prefix: " + "x" * 17 + "\n"), f"{ROOM}.command_prefix"),
    Case("bad-encryption-flag", make(rooms=ROOMS + "    require_encryption: maybe\n"), f"{ROOM}.require_encryption"),
    Case("users-without-targets", make(rooms=ROOMS.replace("    targets: [web]\n", "")), f"{ROOM}.targets"),
    Case("unknown-top-level-key", make(extra="bogus: 1\n"), "bogus", 12),
    Case("unknown-nested-key", make(targets=targets(TWO + "  replica: 2\n")), "targets.web.replica", 8),
    Case(
        "warn-not-below-auto-stop",
        make(extra="defaults:\n  auto_stop_after: 5m\n  warn_before: 5m\n"),
        "defaults.warn_before",
    ),
    Case(
        "target-auto-stop-below-warn",
        make(targets=targets(TWO + "  auto_stop_after: 2m\n")),
        "targets.web.auto_stop_after",
    ),
    Case(
        "max-duration-below-auto-stop",
        make(targets=targets(TWO + "  auto_stop_after: 3h\n  max_duration: 1h\n")),
        "targets.web.max_duration",
    ),
    Case("default-max-below-auto-stop", make(extra="defaults:\n  max_duration: 1h\n"), "defaults.max_duration"),
    Case("replicas-zero", make(targets=targets(TWO + "  replicas: 0\n")), "targets.web.replicas", 8),
    Case("same-object-twice", make(targets=targets(TWO + "api:\n  namespace: apps\n  name: web\n")), "targets.api"),
    Case("bad-kind", make(targets=targets(TWO + "  kind: CronJob\n")), "targets.web.kind"),
    Case("bad-namespace", make(targets=targets("web:\n  namespace: Apps_1\n")), "targets.web.namespace", 7),
    Case("bad-target-key", make(targets=targets("Web:\n  namespace: apps\n")), "targets.Web"),
    Case("no-targets", make(targets="targets: {}\n", rooms=""), "targets"),
    Case("unknown-time-zone", make(extra="defaults:\n  timezone: Mars/Olympus\n"), "defaults.timezone"),
    Case("jwt-without-keycloak", make(matrix=MATRIX + "  auth:\n    method: jwt\n"), "matrix.auth"),
    Case(
        "keycloak-without-client",
        make(
            matrix=MATRIX + "  auth:\n    method: jwt\n    keycloak:\n"
            "      url: https://sso.example.org\n      realm: m\n"
        ),
        "matrix.auth.keycloak.client_id",
    ),
    Case("bad-login-type", make(matrix=MATRIX + "  auth:\n    login_type: m.login.sso\n"), "matrix.auth.login_type"),
    Case("homeserver-not-http", make(matrix=MATRIX.replace("https://", "ftp://")), "matrix.homeserver", 2),
    Case("bad-bot-user-id", make(matrix=MATRIX.replace("@toggler:example.org", "@Toggler")), "matrix.user_id"),
    Case("no-password-source", make(matrix=MATRIX.replace("  password_file: /run/secrets/pw\n", "")), "matrix", 1),
    Case("no-matrix-block", make(matrix=""), "matrix"),
    Case(
        "notify-room-not-configured",
        make(targets=targets(TWO + '  notify_room: "#elsewhere:example.org"\n')),
        "targets.web.notify_room",
    ),
    Case("notify-room-malformed", make(targets=targets(TWO + "  notify_room: elsewhere\n")), "targets.web.notify_room"),
    Case("bad-log-level", make(extra="logging:\n  level: LOUD\n"), "logging.level"),
    Case("yaml-syntax-error", make(extra="defaults: [unclosed\n"), "(yaml)"),
    Case("empty-file", "", "(root)"),
    Case("comments-only", "# nothing here\n", "(root)"),
    Case("root-is-a-list", "- matrix\n- targets\n", "(root)"),
    Case("root-is-a-string", "just text\n", "(root)"),
    Case("missing-file", None, "missing.yaml"),
]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [*legacy.VARIABLES, *(key for key in os.environ if key.startswith("TOGGLER_"))]:
        monkeypatch.delenv(name, raising=False)


def run_check(case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    path = tmp_path / ("missing.yaml" if case.text is None else "config.yaml")
    if case.text is not None:
        path.write_text(case.text, encoding="utf-8")
    code = main(["check-config", str(path)])
    out, err = capsys.readouterr()
    return code, out, err


def problem_line(err: str, path: str) -> str:
    """The stderr line reporting `path` (the path itself, or the file name for file-level problems)."""
    hits = [line for line in err.splitlines() if line.startswith(f"{path}:") or f"/{path}:" in line]
    assert hits, f"no problem line for {path!r} in:\n{err}"
    return hits[0]


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 30
    assert len({case.id for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_broken_config_exits_2_naming_the_field(case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_check(case, tmp_path, capsys)
    assert code == 2
    assert out == ""
    assert err.startswith("invalid config (")
    line = problem_line(err, case.path)
    assert len(line.split(": ", 1)[1]) > 3, "the problem line needs a message"
    assert "Traceback" not in err


@pytest.mark.parametrize("case", [c for c in CASES if c.line], ids=[c.id for c in CASES if c.line])
def test_yaml_line_numbers_are_shown(case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, _, err = run_check(case, tmp_path, capsys)
    assert problem_line(err, case.path).endswith(f"(line {case.line})")


def test_yaml_syntax_error_gives_line_and_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, _, err = run_check(Case("yaml", make(extra="defaults: [unclosed\n"), "(yaml)"), tmp_path, capsys)
    assert "(line 13, column 1)" in problem_line(err, "(yaml)")


def test_every_problem_is_reported_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = make(targets=targets(TWO + "  replicas: 0\n  kind: Job\n"), extra="bogus: 1\n")
    code, _, err = run_check(Case("many", text, ""), tmp_path, capsys)
    assert code == 2
    assert err.splitlines()[0] == "invalid config (3 problems):"
    for path in ("targets.web.replicas", "targets.web.kind", "bogus"):
        problem_line(err, path)


def test_messages_are_specific(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = CASES[0]
    _, _, err = run_check(case, tmp_path, capsys)
    assert "alias 'api' is already the name of target 'api'" in problem_line(err, case.path)


def test_a_defaults_problem_is_reported_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = next(c for c in CASES if c.id == "default-max-below-auto-stop")
    _, _, err = run_check(case, tmp_path, capsys)
    assert err.splitlines() == [
        "invalid config (1 problem):",
        "defaults.max_duration: must not be below defaults.auto_stop_after (line 13)",
    ]


def test_durations_in_messages_are_written_like_the_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = next(c for c in CASES if c.id == "warn-not-below-auto-stop")
    _, _, err = run_check(case, tmp_path, capsys)
    assert "defaults.warn_before: must be shorter than defaults.auto_stop_after (5m) (line 14)" in err.splitlines()

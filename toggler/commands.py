"""The chat command grammar, declared once as a table; parser, `help` and usage come from it.

`parse(text, ctx)` returns a `Command`, a `UsageError` (reply with usage), or `None` (not meant for us).
Pure module; must not import nio, kubernetes, apscheduler or aiohttp.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from toggler.durations import DurationError, parse_duration

MAX_BODY_BYTES = 1024
MAX_LINES = 3


@dataclass(frozen=True)
class Spec:
    """One command: its name, synonyms, argument pattern and help."""

    name: str
    synonyms: tuple[str, ...]
    args: str
    help: str


COMMANDS: tuple[Spec, ...] = (
    Spec("start", ("on",), "<target> [for <duration>]", "turn a target on (auto-stops after its timer)"),
    Spec("stop", ("off",), "<target>|all", "turn a target (or every target you may use) off"),
    Spec("extend", (), "<target> [by] <duration>", "push a running target's auto-stop further out"),
    Spec("status", (), "[<target>]", "show replicas, readiness and deadlines"),
    Spec("list", (), "", "list the targets you may use here"),
    Spec("help", (), "[<command>]", "show this help"),
)
_BY_WORD: dict[str, Spec] = {word: spec for spec in COMMANDS for word in (spec.name, *spec.synonyms)}
_FALLBACK = re.compile(r"^> ?(<[^>]+> )?.*$")


@dataclass(frozen=True)
class ParseContext:
    """What the parser needs to know about the room, the sender and the bot."""

    targets: Mapping[str, str]
    """Lower-case words (names, aliases) of the targets the sender may use here → target name."""
    prefix: str | None = None
    """Room command prefix; when set, only prefixed (or addressed) messages are commands."""
    bot_names: tuple[str, ...] = ()
    """Ways to address the bot: its user id, localpart, display name."""
    addressed: bool = False
    """Treat every message as addressed to the bot (e.g. a direct chat): unknown words get usage."""


@dataclass(frozen=True)
class Command:
    """A parsed command. `target` is a canonical target name; `all_targets` for `stop all`."""

    action: str
    target: str | None = None
    duration: timedelta | None = None
    all_targets: bool = False
    topic: str | None = None


@dataclass(frozen=True)
class UsageError:
    """Not a valid command: say why and show the usage (of one command, or all)."""

    reason: str
    command: str | None = None
    targets: tuple[str, ...] = field(default=())


def usage_line(spec: Spec) -> str:
    """`start|on <target> [for <duration>]`."""
    words = "|".join((spec.name, *spec.synonyms))
    return f"{words} {spec.args}".strip()


def help_lines() -> list[tuple[str, str]]:
    """(usage, description) per command, in table order."""
    return [(usage_line(spec), spec.help) for spec in COMMANDS]


def strip_reply_fallback(body: str) -> str:
    """Drop the `> <@user:x> quoted…` lines Matrix clients put in front of a reply."""
    lines = body.splitlines()
    while lines and _FALLBACK.match(lines[0]):
        lines.pop(0)
    return "\n".join(lines).strip()


def _strip_address(text: str, ctx: ParseContext) -> tuple[str, bool]:
    """Remove a leading prefix or bot mention; report whether the message was addressed."""
    prefix = (ctx.prefix or "").lower()
    if prefix and text.lower().startswith(prefix) and text[len(prefix):len(prefix) + 1] in ("", " ", "\t"):
        return text[len(prefix):].strip(), True
    low = text.lower()
    for name in sorted(ctx.bot_names, key=len, reverse=True):
        name_low = name.lower()
        for candidate in (name_low, "@" + name_low):
            if low.startswith(candidate):
                rest = text[len(candidate):]
                if not rest or rest[0] in ":, \t":
                    return rest.lstrip(":, \t"), True
    return text, False


def _target(word: str, ctx: ParseContext, spec: Spec) -> str | UsageError:
    name = ctx.targets.get(word.lower())
    if name is None:
        return UsageError(f"`{word}` is not a target you can use here", spec.name, _usable(ctx))
    return name


def _usable(ctx: ParseContext) -> tuple[str, ...]:
    return tuple(dict.fromkeys(ctx.targets.values()))


def _default_target(ctx: ParseContext, spec: Spec) -> str | UsageError:
    usable = _usable(ctx)
    if len(usable) == 1:
        return usable[0]
    reason = "which target?" if usable else "there is no target you can use here"
    return UsageError(reason, spec.name, usable)


def _duration(words: list[str], spec: Spec) -> timedelta | UsageError:
    try:
        return parse_duration(" ".join(words))
    except DurationError:
        return UsageError(f"`{' '.join(words)}` is not a duration (try 30m, 2h, 1h30m)", spec.name)


def _target_then(words: list[str], ctx: ParseContext, spec: Spec, joiner: str) -> tuple[str | UsageError, list[str]]:
    """Split `[<target>] [joiner] rest…`: the target is optional when the rest starts right away."""
    if words and words[-1].lower() == joiner:
        return UsageError(f"`{joiner}` needs a duration (try 30m, 2h, 1h30m)", spec.name, _usable(ctx)), []
    if not words or words[0].lower() == joiner or (words[0].lower() not in ctx.targets and words[0][0].isdigit()):
        return _default_target(ctx, spec), words[1:] if words and words[0].lower() == joiner else words
    rest = words[1:]
    if rest and rest[0].lower() == joiner:
        rest = rest[1:]
    return _target(words[0], ctx, spec), rest


def _parse_start(words: list[str], ctx: ParseContext, spec: Spec) -> Command | UsageError:
    target, rest = _target_then(words, ctx, spec, "for")
    if isinstance(target, UsageError):
        return target
    if not rest:
        return Command("start", target)
    duration = _duration(rest, spec)
    return duration if isinstance(duration, UsageError) else Command("start", target, duration)


def _parse_stop(words: list[str], ctx: ParseContext, spec: Spec) -> Command | UsageError:
    if len(words) > 1:
        return UsageError("too many words", spec.name, _usable(ctx))
    if words and words[0].lower() == "all":
        return Command("stop", all_targets=True)
    target = _target(words[0], ctx, spec) if words else _default_target(ctx, spec)
    return target if isinstance(target, UsageError) else Command("stop", target)


def _parse_extend(words: list[str], ctx: ParseContext, spec: Spec) -> Command | UsageError:
    target, rest = _target_then(words, ctx, spec, "by")
    if isinstance(target, UsageError):
        return target
    if not rest:
        return UsageError("by how long?", spec.name, _usable(ctx))
    duration = _duration(rest, spec)
    return duration if isinstance(duration, UsageError) else Command("extend", target, duration)


def _parse_status(words: list[str], ctx: ParseContext, spec: Spec) -> Command | UsageError:
    if len(words) > 1:
        return UsageError("too many words", spec.name, _usable(ctx))
    if not words or words[0].lower() == "all":
        return Command("status")
    target = _target(words[0], ctx, spec)
    return target if isinstance(target, UsageError) else Command("status", target)


def _parse_list(words: list[str], ctx: ParseContext, spec: Spec) -> Command | UsageError:
    return UsageError("`list` takes no arguments", spec.name) if words else Command("list")


def _parse_help(words: list[str], ctx: ParseContext, spec: Spec) -> Command | UsageError:
    if not words:
        return Command("help")
    topic = _BY_WORD.get(words[0].lower())
    if topic is None or len(words) > 1:
        return UsageError(f"no command `{' '.join(words)}`")
    return Command("help", topic=topic.name)


_PARSERS = {
    "start": _parse_start, "stop": _parse_stop, "extend": _parse_extend,
    "status": _parse_status, "list": _parse_list, "help": _parse_help,
}


def looks_like_command(body: str) -> bool:
    """Cheap pre-filter: short enough and few enough lines to be a command."""
    return len(body.encode("utf-8")) <= MAX_BODY_BYTES and len(body.strip().splitlines()) <= MAX_LINES


def parse(body: str, ctx: ParseContext) -> Command | UsageError | None:
    """Parse a message body. None means the message is not for the bot (stay silent)."""
    stripped = strip_reply_fallback(body)
    if not looks_like_command(stripped):
        return None
    text, addressed = _strip_address(stripped, ctx)
    if ctx.prefix and not addressed:
        return None
    words = text.split()
    if not words:
        return UsageError("say a command") if addressed else None
    spec = _BY_WORD.get(words[0].lower())
    if spec is None:
        return UsageError(f"I don't know `{words[0]}`") if addressed or ctx.addressed else None
    return _PARSERS[spec.name](words[1:], ctx, spec)

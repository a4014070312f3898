"""Cross-field rules of a `Config`, each reported with the field path it concerns.

Pure module; must not import nio, kubernetes, apscheduler or aiohttp.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from toggler.durations import format_duration

if TYPE_CHECKING:
    from toggler.config import Config

Problem = tuple[tuple[str | int, ...], str]


def cross_field_problems(cfg: Config) -> list[Problem]:
    """Every cross-field problem of `cfg`, in a stable order."""
    return [*_alias_clashes(cfg), *_duplicate_objects(cfg), *_timer_bounds(cfg), *_room_targets(cfg)]


def _alias_clashes(cfg: Config) -> Iterator[Problem]:
    owner: dict[str, str] = {name: name for name in cfg.targets}
    for name, target in cfg.targets.items():
        for index, alias in enumerate(target.aliases):
            other = owner.get(alias)
            if other is not None and other != name:
                what = "the name" if alias == other else "an alias"
                yield (("targets", name, "aliases", index), f"alias {alias!r} is already {what} of target {other!r}")
            elif other == name and alias == name:
                yield (("targets", name, "aliases", index), f"alias {alias!r} repeats the target's own name")
            owner.setdefault(alias, name)
        if len(set(target.aliases)) != len(target.aliases):
            yield (("targets", name, "aliases"), "aliases contain duplicates")


def _duplicate_objects(cfg: Config) -> Iterator[Problem]:
    seen: dict[tuple[str, str, str], str] = {}
    for name, target in cfg.targets.items():
        key = (target.namespace, target.kind, target.name or name)
        if key in seen:
            yield (("targets", name), f"points at the same {key[1]} {key[0]}/{key[2]} as target {seen[key]!r}")
        seen.setdefault(key, name)


def _timer_bounds(cfg: Config) -> Iterator[Problem]:
    warn = cfg.defaults.warn_before
    default_stop = cfg.defaults.auto_stop_after
    if default_stop is not None and warn >= default_stop:
        limit = format_duration(default_stop)
        yield (("defaults", "warn_before"), f"must be shorter than defaults.auto_stop_after ({limit})")
    if default_stop is not None and cfg.defaults.max_duration < default_stop:
        yield (("defaults", "max_duration"), "must not be below defaults.auto_stop_after")
    for name in cfg.targets:
        stop = cfg.auto_stop_after(name)
        own = "auto_stop_after" in cfg.targets[name].model_fields_set
        own_max = cfg.targets[name].max_duration is not None
        if stop is not None and own and warn >= stop:
            limit = format_duration(warn)
            yield (("targets", name, "auto_stop_after"), f"must be longer than defaults.warn_before ({limit})")
        if stop is not None and (own or own_max) and cfg.max_duration(name) < stop:  # else reported in defaults
            field = "max_duration" if cfg.targets[name].max_duration else "auto_stop_after"
            yield (("targets", name, field), "max_duration must not be below auto_stop_after")


def _room_targets(cfg: Config) -> Iterator[Problem]:
    known = set(cfg.targets)
    for room, spec in cfg.rooms.items():
        for index, target in enumerate(spec.targets):
            if target != "*" and target not in known:
                yield (("rooms", room, "targets", index), f"unknown target {target!r}")
        for user, targets in spec.grants.items():
            for index, target in enumerate(targets):
                if target != "*" and target not in known:
                    yield (("rooms", room, "grants", user, index), f"unknown target {target!r}")
        if spec.users and not spec.targets:
            yield (("rooms", room, "targets"), "lists users but no targets; add target names or '*'")
    for name, target_spec in cfg.targets.items():
        room_key = target_spec.notify_room
        if room_key and room_key not in cfg.rooms:
            yield (("targets", name, "notify_room"), f"room {room_key!r} is not configured in rooms")

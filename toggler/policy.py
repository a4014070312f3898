"""Who may do what, where: deny by default.

A sender may use a target in a room when the room's config lists the sender in `users` and the target
(or `*`) in `targets`, or grants it to the sender in `grants`; and the action is in the room's `actions`.
`list` and `help` are open to anyone who may use at least one target there and show only those targets.
Room aliases in the config are matched once the Matrix adapter has resolved them to room ids.
Pure module; must not import nio, kubernetes, apscheduler or aiohttp.
"""

from __future__ import annotations

from collections.abc import Mapping

from toggler.config import ANY_ROOM, Config, RoomConfig

READ_ONLY = ("list", "help")
EVERY_TARGET = ("status", "stop")
"""Actions that may name no target: `status` and `stop all` act on each usable target (checked one by one)."""


class Policy:
    """Answers permission questions from a `Config` and the resolved room aliases."""

    def __init__(self, config: Config, *, resolved_aliases: Mapping[str, str] | None = None) -> None:
        self._config = config
        self._rooms: dict[str, RoomConfig] = {}
        aliases = resolved_aliases or {}
        for key, room in config.rooms.items():
            room_id = aliases.get(key, key) if key.startswith("#") else key
            self._rooms[room_id] = room

    def room(self, room_id: str) -> RoomConfig | None:
        """The config governing `room_id`: its own entry, else the `*` entry, else None."""
        return self._rooms.get(room_id) or self._rooms.get(ANY_ROOM)

    def is_configured(self, room_id: str) -> bool:
        """Whether the bot listens in this room at all."""
        return self.room(room_id) is not None

    def usable_targets(self, sender: str, room_id: str) -> tuple[str, ...]:
        """Targets `sender` may use in `room_id`, in config order."""
        room = self.room(room_id)
        if room is None:
            return ()
        names: set[str] = set()
        if sender in room.users:
            names.update(room.targets)
        names.update(room.grants.get(sender, ()))
        if "*" in names:
            return tuple(self._config.targets)
        return tuple(name for name in self._config.targets if name in names)

    def allowed(self, sender: str, room_id: str, action: str, target: str | None = None) -> bool:
        """May `sender` do `action` (on `target`) in `room_id`? Deny by default."""
        room = self.room(room_id)
        usable = self.usable_targets(sender, room_id)
        if room is None or not usable:
            return False
        if action in READ_ONLY:
            return True
        if action not in room.actions:
            return False
        if target is None:
            return action in EVERY_TARGET
        return target in usable

    def may_invite(self, inviter: str, room_id: str) -> bool:
        """Accept an invite when the room is configured by id, or the inviter may use the bot there."""
        return room_id in self._rooms or bool(self.usable_targets(inviter, room_id))

    def known_users(self) -> frozenset[str]:
        """Every user named anywhere in the rooms (for trust-on-first-use)."""
        users: set[str] = set()
        for room in self._config.rooms.values():
            users.update(room.users)
            users.update(room.grants)
        return frozenset(users)

    def word_map(self, sender: str, room_id: str) -> dict[str, str]:
        """Lower-case names and aliases of the targets `sender` may use here → target name."""
        words: dict[str, str] = {}
        for name in self.usable_targets(sender, room_id):
            words[name.lower()] = name
            for alias in self._config.targets[name].aliases:
                words[alias.lower()] = name
        return words

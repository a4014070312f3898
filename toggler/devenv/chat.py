"""A person with a chat client: a real nio client with its own store, used by the demo and the tests.

`UserClient` logs in, syncs in the background, creates (encrypted) rooms, invites, sends messages and
waits for the bot's notices and edits.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nio import (
    AsyncClient,
    AsyncClientConfig,
    ErrorResponse,
    JoinResponse,
    MegolmEvent,
    RoomCreateResponse,
    RoomMessageNotice,
    RoomMessageText,
    RoomSendResponse,
)
from nio.events import Event

from toggler.devenv.synapse import Account

ENCRYPTION_STATE = {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}


@dataclass
class Seen:
    """One event the user's client received."""

    room_id: str
    event: Event

    @property
    def content(self) -> dict[str, Any]:
        return dict(self.event.source.get("content", {}))

    @property
    def relates_to(self) -> dict[str, Any]:
        return dict(self.content.get("m.relates_to") or {})

    @property
    def reply_to(self) -> str | None:
        return (self.relates_to.get("m.in_reply_to") or {}).get("event_id")

    @property
    def replaces(self) -> str | None:
        return self.relates_to.get("event_id") if self.relates_to.get("rel_type") == "m.replace" else None

    @property
    def body(self) -> str:
        new = self.content.get("m.new_content")
        return str((new or self.content).get("body", ""))

    @property
    def html(self) -> str:
        new = self.content.get("m.new_content")
        return str((new or self.content).get("formatted_body", ""))

    @property
    def sender(self) -> str:
        return str(self.event.sender)


@dataclass
class UserClient:
    """A real nio client with its own store that syncs in the background and records what it sees."""

    homeserver: str
    account: Account
    store: Path
    client: AsyncClient = field(init=False)
    seen: list[Seen] = field(default_factory=list)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _task: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self.store.mkdir(parents=True, exist_ok=True)
        config = AsyncClientConfig(store_sync_tokens=True, encryption_enabled=True)
        self.client = AsyncClient(self.homeserver, self.account.user_id, store_path=str(self.store), config=config)
        self.client.add_event_callback(self._on_event, (RoomMessageText, RoomMessageNotice, MegolmEvent))

    @property
    def user_id(self) -> str:
        return self.account.user_id

    async def start(self) -> UserClient:
        """Log in, do a first sync and keep syncing in the background."""
        response = await self.client.login(self.account.password, device_name="test-user")
        assert not isinstance(response, ErrorResponse), response
        first = await self.client.sync(timeout=0, full_state=True)
        assert not isinstance(first, ErrorResponse), first
        if self.client.should_upload_keys:
            await self.client.keys_upload()
        self._task = asyncio.create_task(self.client.sync_forever(timeout=30000))
        return self

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self.client.close()

    async def _on_event(self, room: Any, event: Event) -> None:
        async with self._changed:
            self.seen.append(Seen(room.room_id, event))
            self._changed.notify_all()

    async def create_room(self, *, invite: list[str], encrypted: bool = True, alias: str | None = None) -> str:
        """A private room (encrypted unless told otherwise) with `invite` invited."""
        state = [ENCRYPTION_STATE] if encrypted else []
        response = await self.client.room_create(invite=invite, initial_state=state, alias=alias,
                                                 name=alias or "test room")
        assert isinstance(response, RoomCreateResponse), response
        return str(response.room_id)

    async def wait_member(self, room_id: str, user_id: str, timeout: float = 15.0) -> None:
        """Until `user_id` has joined `room_id` as this client sees it (keys queried, ready to encrypt)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            room = self.client.rooms.get(room_id)
            if room is not None and user_id in room.users and user_id not in room.invited_users:
                if self.client.should_query_keys:
                    await self.client.keys_query()
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{user_id} did not join {room_id} within {timeout} s")

    async def send(self, room_id: str, body: str, *, msgtype: str = "m.text", **extra: Any) -> str:
        """Send a message (encrypted in encrypted rooms, to every device) and return its event id."""
        if self.client.should_query_keys:
            await self.client.keys_query()
        content = {"msgtype": msgtype, "body": body, **extra}
        response = await self.client.room_send(room_id, "m.room.message", content, ignore_unverified_devices=True)
        assert isinstance(response, RoomSendResponse), response
        return str(response.event_id)

    async def wait_for(self, match: Callable[[Seen], bool], timeout: float = 10.0) -> Seen:
        """The first seen event (old or new) that matches, waiting up to `timeout` seconds."""
        async def found() -> Seen:
            async with self._changed:
                while True:
                    for item in self.seen:
                        if match(item):
                            return item
                    await self._changed.wait()

        return await asyncio.wait_for(found(), timeout)

    async def reply_to(self, room_id: str, event_id: str, timeout: float = 10.0) -> Seen:
        """The bot's notice that replies to `event_id`."""
        return await self.wait_for(
            lambda s: s.room_id == room_id and s.reply_to == event_id and s.replaces is None, timeout)

    async def edit_of(self, event_id: str, timeout: float = 10.0) -> Seen:
        """The latest-seen edit (`m.replace`) of `event_id`."""
        return await self.wait_for(lambda s: s.replaces == event_id, timeout)

    def notices(self, room_id: str) -> list[Seen]:
        """Every notice seen in `room_id` so far."""
        return [s for s in self.seen if s.room_id == room_id and isinstance(s.event, RoomMessageNotice)]

    async def quiet(self, room_id: str, seconds: float) -> list[Seen]:
        """Notices that arrive in `room_id` within the next `seconds`."""
        before = len(self.seen)
        await asyncio.sleep(seconds)
        return [s for s in self.seen[before:] if s.room_id == room_id and isinstance(s.event, RoomMessageNotice)]



    async def join(self, room_id: str) -> None:
        """Accept an invite to `room_id`."""
        response = await self.client.join(room_id)
        if not isinstance(response, JoinResponse):
            raise RuntimeError(f"could not join {room_id}: {response}")
        await self.wait_member(room_id, self.user_id)

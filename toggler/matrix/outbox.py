"""Everything the bot sends: rendered outcomes as notices, replies and edits, to room ids or aliases.

Each send checks the nio response for `ErrorResponse`, refreshes device keys first when nio asks for it,
and encrypts for every device of the room except blacklisted ones (`ignore_unverified_devices`).
Failures are logged (type and Matrix error code only) and reported as `None`; nothing raw reaches chat.
"""

from __future__ import annotations

import logging
from typing import Any

from nio import ErrorResponse, KeysQueryResponse, LocalProtocolError, RoomResolveAliasResponse, RoomSendResponse
from nio.exceptions import SendRetryError

from toggler.config import Config
from toggler.matrix import content
from toggler.matrix.session import NETWORK_ERRORS, UNKNOWN_TOKEN, LoginFailed, Session, describe
from toggler.matrix.trust import Trust
from toggler.outcomes import Outcome
from toggler.ports import Clock
from toggler.replies import render
from toggler.replies_text import Reply

log = logging.getLogger(__name__)
SEND_ERRORS = (LocalProtocolError, SendRetryError, *NETWORK_ERRORS)


class Outbox:
    """Sends notices for the bot; resolves and caches room aliases."""

    def __init__(self, config: Config, *, session: Session, trust: Trust, clock: Clock) -> None:
        self.config = config
        self.session = session
        self.trust = trust
        self.clock = clock
        self.aliases: dict[str, str] = {}

    def render(self, outcome: Outcome) -> Reply:
        """The chat text for an outcome, in the configured time zone."""
        return render(outcome, timezone=self.config.defaults.timezone, now=self.clock.now())

    async def resolve(self, room: str) -> str | None:
        """A room id for a room id or alias (aliases are resolved once and cached)."""
        if not room.startswith("#"):
            return room
        if room in self.aliases:
            return self.aliases[room]
        if not self.session.logged_in:
            return None
        try:
            response = await self.session.client.room_resolve_alias(room)
        except NETWORK_ERRORS as exc:
            log.warning("could not resolve room alias %s (%s)", room, type(exc).__name__)
            return None
        if not isinstance(response, RoomResolveAliasResponse):
            log.warning("could not resolve room alias %s: %s", room, describe(response))
            return None
        self.aliases[room] = response.room_id
        return str(response.room_id)

    async def query_keys(self) -> None:
        """Fetch device keys nio is missing, then apply the trust rules to them."""
        client = self.session.client
        if not client.should_query_keys:
            return
        try:
            response = await client.keys_query()
        except LocalProtocolError:
            return
        if isinstance(response, KeysQueryResponse):
            self.trust.after_key_query(response)
        else:
            log.warning("key query failed: %s", describe(response))

    async def send(self, room_id: str, message: dict[str, Any]) -> str | None:
        """Send one `m.room.message`; the new event id, or None (logged) when it could not be sent.

        A dead access token is replaced (same device) and the message sent once more.
        """
        if not self.session.logged_in:
            log.warning("not sending to %s: not logged in", room_id)
            return None
        if room_id not in self.session.client.rooms:
            log.warning("not sending to %s: the bot is not in that room", room_id)
            return None
        token = self.session.client.access_token
        response = await self._send_once(room_id, message)
        if isinstance(response, ErrorResponse) and (response.status_code == UNKNOWN_TOKEN or response.soft_logout):
            try:
                await self.session.relogin(dead_token=token)
            except LoginFailed as exc:
                log.warning("could not send to %s: %s", room_id, exc)
                return None
            response = await self._send_once(room_id, message)
        if isinstance(response, RoomSendResponse):
            return str(response.event_id)
        if response is not None:
            log.warning("could not send to %s: %s", room_id, describe(response))
        return None

    async def _send_once(self, room_id: str, message: dict[str, Any]) -> RoomSendResponse | ErrorResponse | None:
        client = self.session.client
        try:
            await self.query_keys()
            response: RoomSendResponse | ErrorResponse = await client.room_send(
                room_id, "m.room.message", message, ignore_unverified_devices=True
            )
        except SEND_ERRORS as exc:
            log.warning("could not send to %s (%s)", room_id, type(exc).__name__)
            return None
        return response

    async def reply(
        self, room_id: str, event_id: str, sender: str, reply: Reply, *, thread: str | None = None
    ) -> str | None:
        """A notice replying to `event_id` (in its thread, if any) and mentioning its sender."""
        return await self.send(room_id, content.notice(reply, reply_to=event_id, mention=sender, thread=thread))

    async def edit(self, room_id: str, original: str, reply: Reply) -> str | None:
        """Replace the text of our notice `original`."""
        return await self.send(room_id, content.edit(original, reply))

    async def notice(self, room: str, reply: Reply) -> str | None:
        """A plain notice to a room id or alias."""
        room_id = await self.resolve(room)
        if room_id is None:
            log.warning("cannot send to %s: unknown room", room)
            return None
        return await self.send(room_id, content.notice(reply))

"""From one new message in a configured room to exactly one reply (or deliberate silence).

`Commands.handle` runs in the bot's single dispatcher: parse with the sender's word map, then refuse
or skip what must not run (strangers: silent; too old: one "I was offline" notice; unencrypted in a
`require_encryption` room; untrusted device), echo when configured, execute, reply. A `start` reply is
edited in the background once the target is ready (or not). `undecryptable` handles Megolm events the
bot has no key for: allowlisted senders get a key request and, at most once per 10 min, a request to resend.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from nio import AsyncClient, LocalProtocolError, MegolmEvent, RoomKeyRequestResponse, RoomMessageText
from nio.exceptions import EncryptionError

from toggler.commands import Command, ParseContext, UsageError, parse, strip_reply_fallback
from toggler.config import Config, RoomConfig
from toggler.matrix import content
from toggler.matrix.outbox import Outbox
from toggler.matrix.session import NETWORK_ERRORS, Session, describe
from toggler.matrix.tasks import TaskGroup
from toggler.matrix.trust import Trust, Verdict
from toggler.outcomes import Failed, Outcome, Refused, Started, Usage
from toggler.policy import Policy
from toggler.replies_text import Reply
from toggler.service import Context, Service

log = logging.getLogger(__name__)
RESEND_EVERY = 600.0
DECRYPT_GRACE = 2.0


@dataclass(frozen=True)
class Inbound:
    """A new text message, decrypted if it was encrypted, in a room the bot listens in."""

    room_id: str
    event: RoomMessageText


def event_time(event: RoomMessageText | MegolmEvent) -> datetime:
    """When the homeserver received the event."""
    return datetime.fromtimestamp(event.server_timestamp / 1000, UTC)


class Commands:
    """Turns messages into service calls and replies."""

    def __init__(
        self, config: Config, *, service: Service, session: Session, outbox: Outbox, trust: Trust, tasks: TaskGroup
    ) -> None:
        self.config = config
        self.service = service
        self.session = session
        self.outbox = outbox
        self.trust = trust
        self.tasks = tasks
        self._asked: dict[str, float] = {}

    @property
    def policy(self) -> Policy:
        return self.service.policy

    @property
    def client(self) -> AsyncClient:
        return self.session.client

    def _age(self, event: RoomMessageText | MegolmEvent) -> timedelta:
        return self.service.clock.now() - event_time(event)

    def _too_old(self, event: RoomMessageText | MegolmEvent) -> bool:
        return self._age(event) > self.config.defaults.max_command_age

    def _parse_context(self, sender: str, room_id: str, room: RoomConfig) -> ParseContext:
        user_id = self.session.user_id
        names = [user_id, user_id[1:].split(":", 1)[0]]
        nio_room = self.client.rooms.get(room_id)
        display = nio_room.user_name(user_id) if nio_room is not None else None
        if display:
            names.append(display)
        direct = nio_room is not None and nio_room.member_count <= 2
        return ParseContext(
            targets=self.policy.word_map(sender, room_id),
            prefix=room.command_prefix,
            bot_names=tuple(dict.fromkeys(names)),
            addressed=direct,
        )

    async def _answer(self, room_id: str, event: RoomMessageText | MegolmEvent, reply: Reply) -> str | None:
        """Reply to `event` (in its thread, if it has one)."""
        thread = content.thread_root(event.source.get("content") or {})
        return await self.outbox.reply(room_id, event.event_id, event.sender, reply, thread=thread)

    async def handle(self, item: Inbound) -> None:
        """Handle one message; every failure is logged with the event id, never shown raw in chat."""
        event, room_id = item.event, item.room_id
        try:
            await self._handle(room_id, event)
        except Exception:
            log.exception("handling event %s from %s in %s failed", event.event_id, event.sender, room_id)
            reply = self.outbox.render(Failed(None, content.INTERNAL_ERROR))
            await self._answer(room_id, event, reply)

    async def _handle(self, room_id: str, event: RoomMessageText) -> None:
        room = self.policy.room(room_id)
        sender = event.sender
        if room is None or not self.policy.usable_targets(sender, room_id):
            log.debug("ignoring %s from %s in %s: not allowlisted there", event.event_id, sender, room_id)
            return
        parsed = parse(event.body, self._parse_context(sender, room_id, room))
        if parsed is None:
            return
        if not await self._may_run(room_id, event, room):
            return
        if self.config.matrix.echo:
            await self.outbox.notice(room_id, content.echo(event.body))
        outcome = await self._execute(parsed, Context(sender, room_id, event.event_id))
        reply_id = await self._answer(room_id, event, self.outbox.render(outcome))
        if reply_id is not None and isinstance(outcome, Started) and _needs_follow_up(outcome):
            self.tasks.spawn(
                self._follow_start(room_id, reply_id, outcome.status.ref.target),
                name=f"ready:{outcome.status.ref.target}:{event.event_id}",
            )

    async def _may_run(self, room_id: str, event: RoomMessageText, room: RoomConfig) -> bool:
        """Refuse (with one reply) what is too old, unencrypted where encryption is required, or untrusted."""
        sender, event_id = event.sender, event.event_id
        if self._too_old(event):
            log.info("not running %s from %s in %s: sent %s ago", event_id, sender, room_id, self._age(event))
            await self._answer(room_id, event, content.offline(strip_reply_fallback(event.body), self._age(event)))
            return False
        if room.require_encryption and not event.decrypted:
            log.info("refusing unencrypted command %s from %s in %s", event_id, sender, room_id)
            await self._answer(room_id, event, content.needs_encryption())
            return False
        if event.decrypted:
            verdict = await self._verdict(room_id, event)
            if verdict is not Verdict.TRUSTED:
                log.warning("refusing command %s from %s in %s: %s", event_id, sender, room_id, verdict)
                reply = self.outbox.render(Refused(content.UNTRUSTED_DEVICE))
                await self._answer(room_id, event, reply)
                return False
        return True

    async def _verdict(self, room_id: str, event: RoomMessageText) -> Verdict:
        verdict = self.trust.check(event, room_id)
        if verdict is Verdict.UNKNOWN_DEVICE:
            await self.outbox.query_keys()
            verdict = self.trust.check(event, room_id)
        return verdict

    async def _execute(self, parsed: Command | UsageError, ctx: Context) -> Outcome:
        if isinstance(parsed, UsageError):
            return Usage(parsed)
        log.info(
            "%s asks %s %s in %s (event %s)", ctx.sender, parsed.action, parsed.target or "", ctx.room_id, ctx.event_id
        )
        return await self.service.execute(parsed, ctx)

    async def _follow_start(self, room_id: str, reply_id: str, target: str) -> None:
        result = await self.service.wait_ready(target)
        log.info("%s after start: %s", target, type(result).__name__)
        await self.outbox.edit(room_id, reply_id, self.outbox.render(result))

    # --- messages the bot cannot read ----------------------------------------------------------------
    async def undecryptable(self, room_id: str, event: MegolmEvent, enqueue: Callable[[Inbound], None]) -> None:
        """Key request, a short wait for the key, then (rate-limited) ask an allowlisted sender to resend."""
        sender = event.sender
        if not self.policy.usable_targets(sender, room_id):
            log.debug("ignoring undecryptable %s from %s: not allowlisted in %s", event.event_id, sender, room_id)
            return
        if self._too_old(event):
            log.info("ignoring old undecryptable %s from %s in %s", event.event_id, sender, room_id)
            return
        if self.trust.key_changed(event):
            reply = self.outbox.render(Refused(content.UNTRUSTED_DEVICE))
            await self._answer(room_id, event, reply)
            return
        await self._request_key(event)
        await asyncio.sleep(DECRYPT_GRACE)
        decrypted = self._decrypt(room_id, event)
        if decrypted is not None:
            enqueue(Inbound(room_id, decrypted))
            return
        await self._ask_resend(room_id, event)

    async def _request_key(self, event: MegolmEvent) -> None:
        try:
            response = await self.client.request_room_key(event)
        except LocalProtocolError:
            return  # already requested for this session
        except NETWORK_ERRORS as exc:
            log.warning("room key request for %s failed (%s)", event.event_id, type(exc).__name__)
            return
        if not isinstance(response, RoomKeyRequestResponse):
            log.warning("room key request for %s failed: %s", event.event_id, describe(response))

    def _decrypt(self, room_id: str, event: MegolmEvent) -> RoomMessageText | None:
        olm = self.client.olm
        if olm is None:
            return None
        try:
            decrypted = olm.decrypt_megolm_event(event, room_id)
        except EncryptionError:
            return None
        return decrypted if isinstance(decrypted, RoomMessageText) else None

    async def _ask_resend(self, room_id: str, event: MegolmEvent) -> None:
        now = time.monotonic()
        last = self._asked.get(event.sender)
        if last is not None and now - last < RESEND_EVERY:
            log.info("undecryptable %s from %s: asked to resend recently, staying quiet", event.event_id, event.sender)
            return
        self._asked[event.sender] = now
        log.info("could not decrypt %s from %s in %s: asking to resend", event.event_id, event.sender, room_id)
        await self._answer(room_id, event, content.resend())


def _needs_follow_up(outcome: Started) -> bool:
    if outcome.dry_run or outcome.replicas <= 0:
        return False
    return not outcome.already_on or outcome.status.ready < outcome.replicas

"""The Matrix bot: session, sync loop, event filtering, invites, and the `Notifier` the service talks to.

`MatrixBot.run()` logs in (restoring the one device), resolves configured room aliases, then long-polls
`/sync` with a filter that asks only for what the bot needs. Each response is taken in hand in order:
invites are accepted or rejected by policy, timeline messages are filtered (own, notices, edits, other
rooms, already handled, room history of a fresh store) and queued for the single dispatcher, then the sync
token and handled event ids are saved. Errors back off exponentially with jitter (cap 60 s, reset after a
good sync); a dead or soft-logged-out token means logging in again on the same device.
`close()` stops syncing, lets the command in flight finish, cancels the rest and closes the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from nio import (
    ErrorResponse,
    InviteMemberEvent,
    JoinResponse,
    KeysClaimResponse,
    KeysUploadResponse,
    LocalProtocolError,
    MegolmEvent,
    RoomLeaveResponse,
    RoomMemberEvent,
    RoomMessageText,
    SyncResponse,
    ToDeviceResponse,
    UploadFilterResponse,
)
from nio.responses import InviteInfo

from toggler.config import Config
from toggler.matrix.backoff import Backoff
from toggler.matrix.inbound import Commands, Inbound
from toggler.matrix.outbox import Outbox
from toggler.matrix.session import NETWORK_ERRORS, UNKNOWN_TOKEN, LoginFailed, Session, describe
from toggler.matrix.state import SyncState
from toggler.matrix.tasks import TaskGroup
from toggler.matrix.trust import Trust
from toggler.outcomes import Outcome
from toggler.policy import Policy
from toggler.service import Service

log = logging.getLogger(__name__)
SYNC_TIMEOUT_MS = 30_000
DRAIN_SECONDS = 3.0
TIMELINE_LIMIT = 30
SYNC_FILTER: dict[str, Any] = {
    "presence": {"not_types": ["*"]},
    "account_data": {"not_types": ["*"]},
    "room": {
        "timeline": {
            "limit": TIMELINE_LIMIT,
            "types": ["m.room.message", "m.room.encrypted", "m.room.member", "m.room.encryption"],
        },
        "state": {
            "types": ["m.room.member", "m.room.encryption", "m.room.name", "m.room.canonical_alias"],
            "lazy_load_members": False,
        },
        "ephemeral": {"not_types": ["*"]},
        "account_data": {"not_types": ["*"]},
    },
}


def is_edit(event: Any) -> bool:
    """An `m.replace` edit of an earlier message."""
    relates = (event.source.get("content") or {}).get("m.relates_to") or {}
    return isinstance(relates, dict) and relates.get("rel_type") == "m.replace"


class MatrixBot:
    """Owns the Matrix side of toggler; implements `toggler.ports.Notifier`."""

    def __init__(
        self,
        config: Config,
        *,
        service: Service,
        session: Session | None = None,
        sync_timeout_ms: int = SYNC_TIMEOUT_MS,
    ) -> None:
        self.config = config
        self.service = service
        self.session = session or Session(config.matrix)
        self.sync_timeout_ms = sync_timeout_ms
        self.trust = Trust(lambda: self.session.client, self._known_users)
        self.outbox = Outbox(config, session=self.session, trust=self.trust, clock=service.clock)
        self.tasks = TaskGroup()
        self.commands = Commands(
            config, service=service, session=self.session, outbox=self.outbox, trust=self.trust, tasks=self.tasks
        )
        self.state = SyncState.load(self.session.store)
        self.last_sync_ok: float | None = None
        """`time.monotonic()` of the last successful sync (for readiness checks)."""
        self._queue: asyncio.Queue[Inbound | None] = asyncio.Queue()
        self._stop = asyncio.Event()
        self._done = asyncio.Event()
        self._running = False
        self._filter: str | dict[str, Any] = SYNC_FILTER
        self._backoff = Backoff()
        self._keys_task: asyncio.Task[None] | None = None

    @property
    def logged_in(self) -> bool:
        """Whether the bot holds a (believed) valid access token."""
        return self.session.logged_in

    @property
    def policy(self) -> Policy:
        return self.service.policy

    def _known_users(self) -> frozenset[str]:
        return self.service.policy.known_users()  # the policy is replaced once aliases are resolved

    # --- lifecycle -----------------------------------------------------------------------------------
    async def run(self) -> None:
        """Log in and sync until `close()`. Raises `LoginFailed` only for a permanent initial login error."""
        self._running = True
        dispatcher = asyncio.create_task(self._dispatch(), name="matrix-dispatcher")
        main = asyncio.create_task(self._main(), name="matrix-sync")
        stop = asyncio.create_task(self._stop.wait(), name="matrix-stop")
        try:
            await asyncio.wait({main, stop}, return_when=asyncio.FIRST_COMPLETED)
            if main.done():
                main.result()
        finally:
            stop.cancel()
            if not main.done():  # close() (or run() cancelled): cut the long-poll or back-off short
                main.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await main
            await self._finish_keys()
            await self._shutdown(dispatcher)

    async def _main(self) -> None:
        await self._start()
        await self._sync_loop()

    async def close(self) -> None:
        """Stop syncing, finish the command in flight, close the client. Safe to call more than once."""
        self._stop.set()
        if self._running:
            await self._done.wait()
        else:
            await self.session.close()

    async def _start(self) -> None:
        while True:
            try:
                await self.session.open()
                break
            except LoginFailed as exc:
                if exc.permanent:
                    log.error("cannot log in to %s: %s", self.config.matrix.homeserver, exc)
                    raise
                await self._pause(f"cannot log in yet: {exc}")
        await self._resolve_rooms()
        await self._upload_filter()

    async def _shutdown(self, dispatcher: asyncio.Task[None]) -> None:
        self._stop.set()
        self._queue.put_nowait(None)
        done, _ = await asyncio.wait({dispatcher}, timeout=DRAIN_SECONDS)
        if not done:
            log.warning("dropping %d queued command(s) at shutdown", self._queue.qsize())
            dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await dispatcher
        await self.tasks.cancel_all()
        self.state.save()
        await self.session.close()
        self._running = False
        self._done.set()
        log.info("matrix bot stopped")

    async def _pause(self, why: str) -> None:
        delay = self._backoff.next_delay()
        log.warning("%s; retrying in %.1f s", why, delay)
        await asyncio.sleep(delay)

    async def _resolve_rooms(self) -> None:
        """Resolve configured room aliases not resolved yet; rebuild the policy when one more resolves."""
        missing = [key for key in self.config.rooms if key.startswith("#") and key not in self.outbox.aliases]
        resolved = False
        for alias in missing:
            if await self.outbox.resolve(alias) is None:
                log.warning("room alias %s could not be resolved; its rules apply to no room for now", alias)
            else:
                resolved = True
        if resolved:
            self.service.policy = Policy(self.config, resolved_aliases=dict(self.outbox.aliases))

    async def _upload_filter(self) -> None:
        try:
            response = await self.session.client.upload_filter(
                presence=SYNC_FILTER["presence"], account_data=SYNC_FILTER["account_data"], room=SYNC_FILTER["room"]
            )
        except NETWORK_ERRORS as exc:
            log.warning("could not upload the sync filter (%s); sending it inline", type(exc).__name__)
            return
        if isinstance(response, UploadFilterResponse):
            self._filter = response.filter_id
        else:
            log.warning("could not upload the sync filter: %s", describe(response))

    # --- the sync loop -------------------------------------------------------------------------------
    async def _sync_loop(self) -> None:
        first = True
        while True:
            token = self.session.client.access_token
            response = await self._sync(first)
            if response is None:
                continue
            if isinstance(response, SyncResponse):
                await self._take(response, first=first)
                first = False
                continue
            if response.status_code == UNKNOWN_TOKEN or response.soft_logout:
                await self._relogin(token)
            else:
                await self._pause(f"sync failed: {describe(response)}")

    async def _sync(self, first: bool) -> SyncResponse | ErrorResponse | None:
        """One sync request (the first one returns at once); None after handling an exception."""
        client = self.session.client
        if not client.access_token:
            await self._relogin()
            return None
        since = self.state.token
        try:
            response: SyncResponse | ErrorResponse = await client.sync(
                timeout=0 if first else self.sync_timeout_ms,
                sync_filter=self._filter,
                since=since,
                full_state=True if first and since else None,
            )
        except LocalProtocolError:
            await self._relogin()
            return None
        except NETWORK_ERRORS as exc:
            await self._pause(f"homeserver unreachable ({type(exc).__name__})")
            return None
        except Exception:
            log.exception("sync failed unexpectedly")
            await self._pause("sync failed")
            return None
        return response

    async def _relogin(self, dead_token: str | None = None) -> None:
        try:
            await self.session.relogin(dead_token)
        except LoginFailed as exc:
            await self._pause(str(exc))

    async def _take(self, response: SyncResponse, *, first: bool) -> None:
        """Take one sync response in hand, then remember how far we got."""
        fresh = self.state.fresh
        for room_id, info in response.rooms.invite.items():
            try:
                await self._invite(room_id, info)
            except Exception:
                log.exception("answering the invite to %s failed", room_id)
        for room_id, room_info in response.rooms.join.items():
            events = room_info.timeline.events
            joined_at = 0 if fresh else self._own_join(events)
            for index, event in enumerate(events):
                try:
                    self._timeline(room_id, event, fresh=fresh, before_join=index < joined_at)
                except Exception:
                    log.exception("skipping event %s in %s", getattr(event, "event_id", "?"), room_id)
        self.state.advance(response.next_batch)
        self.state.save()
        self._backoff.reset()
        self.last_sync_ok = time.monotonic()
        if first:
            log.info(
                "first sync done (%d joined, %d invited rooms)", len(response.rooms.join), len(response.rooms.invite)
            )
        # shielded: a stop must not cut a key upload short (see `_finish_keys`)
        self._keys_task = asyncio.create_task(self._keys(), name="matrix-keys")
        await asyncio.shield(self._keys_task)

    def _own_join(self, events: list[Any]) -> int:
        """Index just after the bot's own join in a timeline (0 if it did not join here)."""
        own = self.session.user_id
        for index in range(len(events) - 1, -1, -1):
            event = events[index]
            if (
                isinstance(event, RoomMemberEvent)
                and event.state_key == own
                and event.membership == "join"
                and event.prev_membership != "join"
            ):
                return index + 1
        return 0

    def _timeline(self, room_id: str, event: Any, *, fresh: bool, before_join: bool) -> None:
        if not isinstance(event, RoomMessageText | MegolmEvent) or event.sender == self.session.user_id:
            return
        if is_edit(event) or not self.policy.is_configured(room_id):
            return
        if fresh:  # the first sync of a fresh store: all of it is history
            self.state.note_history(event.server_timestamp)
            return
        if self.state.is_history(event.server_timestamp) or not self.state.mark_handled(event.event_id):
            return
        if before_join:  # sent before the bot was in the room
            return
        if isinstance(event, MegolmEvent):
            self.tasks.spawn(
                self.commands.undecryptable(room_id, event, self._queue.put_nowait),
                name=f"undecryptable:{event.event_id}",
            )
        else:
            self._queue.put_nowait(Inbound(room_id, event))

    async def _keys(self) -> None:
        """Send queued to-device messages, upload/query/claim keys as nio asks; then apply trust rules."""
        client = self.session.client
        try:
            if client.outgoing_to_device_messages:
                for sent in await client.send_to_device_messages():
                    _check(sent, ToDeviceResponse, "to-device message")
            if client.should_upload_keys:
                _check(await client.keys_upload(), KeysUploadResponse, "key upload")
            await self.outbox.query_keys()
            if client.should_claim_keys:
                _check(await client.keys_claim(client.get_users_for_key_claiming()), KeysClaimResponse, "key claim")
        except (LocalProtocolError, *NETWORK_ERRORS) as exc:
            log.warning("key maintenance failed (%s)", type(exc).__name__)

    async def _finish_keys(self) -> None:
        """Let key maintenance in flight finish. nio saves the Olm account, with its one-time keys marked
        published, only when the upload's answer arrives: cut short, the server keeps keys that the stored
        account generates again under the same ids, and messages encrypted to them never decrypt."""
        task = self._keys_task
        if task is None or task.done():
            return
        done, _ = await asyncio.wait({task}, timeout=DRAIN_SECONDS)
        if not done:
            log.warning("key maintenance still running at shutdown; cancelling it")
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _dispatch(self) -> None:
        """The single dispatcher: one command at a time, in arrival order."""
        while (item := await self._queue.get()) is not None:
            await self.commands.handle(item)

    # --- invites -------------------------------------------------------------------------------------
    async def _invite(self, room_id: str, info: InviteInfo) -> None:
        own = self.session.user_id
        inviter = next(
            (
                event.sender
                for event in info.invite_state
                if isinstance(event, InviteMemberEvent) and event.state_key == own and event.membership == "invite"
            ),
            None,
        )
        if inviter is not None and not self.policy.may_invite(inviter, room_id):
            await self._resolve_rooms()  # the room may have got a configured alias since start-up
        client = self.session.client
        try:
            if inviter is not None and self.policy.may_invite(inviter, room_id):
                _check(await client.join(room_id), JoinResponse, f"joining {room_id}")
                log.info("accepted the invite of %s to %s", inviter, room_id)
            else:
                _check(await client.room_leave(room_id), RoomLeaveResponse, f"rejecting {room_id}")
                log.info("rejected the invite of %s to %s", inviter or "someone", room_id)
        except NETWORK_ERRORS as exc:
            log.warning("could not answer the invite to %s (%s)", room_id, type(exc).__name__)

    # --- Notifier --------------------------------------------------------------------------------------
    async def notify(self, room: str | None, outcome: Outcome) -> None:
        """Tell `room` (id or alias) about `outcome`; logs and drops it when there is nowhere to send it."""
        if room is None:
            log.info("no room to tell about %s", type(outcome).__name__)
            return
        if await self.outbox.notice(room, self.outbox.render(outcome)) is None:
            log.warning("could not tell %s about %s", room, type(outcome).__name__)


def _check(response: Any, expected: type, what: str) -> bool:
    if isinstance(response, expected):
        return True
    detail = describe(response) if isinstance(response, ErrorResponse) else type(response).__name__
    log.warning("%s failed: %s", what, detail)
    return False

"""Device trust: trust on first use for allowlisted users only, and refuse devices whose keys changed.

After every key query the bot (1) blacklists any stored device whose Ed25519 key the server now reports
differently (nio keeps the old key; we also stop sharing room keys with it) and (2) verifies devices of
`known_users` seen for the first time. Devices of everyone else stay unverified (replies still reach them
through `ignore_unverified_devices`). `check(event)` decides whether an encrypted command may be obeyed:
it must come from a verified, non-blacklisted device of the sender whose keys match the Megolm session.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from nio import AsyncClient, KeysQueryResponse, MegolmEvent
from nio.crypto import OlmDevice

log = logging.getLogger(__name__)


class Verdict(StrEnum):
    """What `Trust.check` concluded about the device behind an encrypted event."""

    TRUSTED = "trusted"
    UNKNOWN_DEVICE = "unknown device"
    BLACKLISTED = "blacklisted device"
    KEY_MISMATCH = "key mismatch"


class Trust:
    """Applies the bot's trust rules to the nio device store."""

    def __init__(self, client: Callable[[], AsyncClient], known_users: Callable[[], frozenset[str]]) -> None:
        self._client = client
        self._known = known_users

    def after_key_query(self, response: KeysQueryResponse) -> None:
        """Blacklist devices whose key changed, then trust new devices of allowlisted users."""
        self._blacklist_changed(response.device_keys or {})
        self.trust_known_devices()

    def _blacklist_changed(self, device_keys: dict[str, Any]) -> None:
        client = self._client()
        for user_id, devices in device_keys.items():
            stored = client.device_store[user_id] if user_id in client.device_store.users else {}
            for device_id, payload in (devices or {}).items():
                device = stored.get(device_id)
                reported = ((payload or {}).get("keys") or {}).get(f"ed25519:{device_id}")
                if device is None or reported is None or reported == device.ed25519:
                    continue
                if not device.blacklisted:
                    client.blacklist_device(device)
                    log.warning(
                        "the key of device %s of %s changed: blacklisted, its commands are refused", device_id, user_id
                    )

    def trust_known_devices(self) -> None:
        """Verify (trust on first use) every not-yet-judged device of an allowlisted user."""
        client = self._client()
        if client.olm is None:
            return
        for user_id in self._known():
            for device in list(client.device_store.active_user_devices(user_id)):
                if not device.verified and not device.blacklisted:
                    client.verify_device(device)
                    log.info("trusting device %s of %s on first use", device.id, user_id)

    def key_changed(self, event: MegolmEvent) -> bool:
        """An undecryptable event from a stored device id whose keys are not the ones we know."""
        client = self._client()
        device_id = getattr(event, "device_id", None)
        if client.olm is None or not device_id or event.sender not in client.device_store.users:
            return False
        device = client.device_store[event.sender].get(device_id)
        if device is None or device.deleted:
            return False
        if device.curve25519 == event.sender_key:
            return False
        if not device.blacklisted:
            client.blacklist_device(device)
            log.warning(
                "device %s of %s now sends with another key: blacklisted, its commands are refused",
                device_id,
                event.sender,
            )
        return True

    def device_of(self, sender: str, sender_key: str | None) -> OlmDevice | None:
        """The stored, non-deleted device of `sender` that owns the Curve25519 `sender_key`."""
        client = self._client()
        if client.olm is None or not sender_key:
            return None
        device: OlmDevice | None = client.device_store.device_from_sender_key(sender, sender_key)
        return device

    def check(self, event: Any, room_id: str) -> Verdict:
        """Whether a decrypted event comes from a device the bot trusts (TOFU for allowlisted senders)."""
        client = self._client()
        device = self.device_of(event.sender, getattr(event, "sender_key", None))
        if device is None:
            return Verdict.UNKNOWN_DEVICE
        if device.blacklisted:
            return Verdict.BLACKLISTED
        session = None
        if client.olm is not None and getattr(event, "session_id", None):
            session = client.olm.inbound_group_store.get(room_id, event.sender_key, event.session_id)
        if session is not None and session.ed25519 != device.ed25519:
            return Verdict.KEY_MISMATCH
        if not device.verified:
            if event.sender not in self._known():
                return Verdict.UNKNOWN_DEVICE
            client.verify_device(device)
            log.info("trusting device %s of %s on first use", device.id, event.sender)
        return Verdict.TRUSTED

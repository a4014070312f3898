"""The whole of toggler (`App`: Matrix bot + kmock-backed cluster + APScheduler timers + health server)
against a real Synapse and the Kubernetes emulator, driven by a real nio user in an encrypted room."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kubernetes import client

from tests.support.kube import eventually
from tests.support.synapse import Account, Synapse, UserClient, ask, open_room
from toggler.app import App
from toggler.config import Config
from toggler.devenv.kube import KubeServer

pytestmark = [pytest.mark.synapse, pytest.mark.timeout(120)]


def app_config(synapse: Synapse, bot: Account, store: Path, alias: str, alice: str, **defaults: Any) -> Config:
    return Config(
        matrix={"homeserver": synapse.base_url, "user_id": bot.user_id, "password": bot.password,
                "store_path": store, "sync_timeout": "2s"},
        defaults={"warn_before": "2s", "auto_stop_after": "1h", **defaults},
        targets={"web": {"namespace": "apps", "replicas": 2, "aliases": ["site"]},
                 "db": {"namespace": "apps", "kind": "StatefulSet", "auto_stop_after": None}},
        rooms={alias: {"users": [alice], "targets": ["*"]}},
        health={"port": 0},
    )


@contextlib.asynccontextmanager
async def running(config: Config, kube: KubeServer) -> AsyncIterator[App]:
    app = App(config, kube_configuration=kube.configuration())
    task = asyncio.create_task(app.run())
    try:
        await eventually(lambda: app.bot.last_sync_ok is not None or task.done(), timeout=30, what="first sync")
        assert not task.done(), task
        yield app
    finally:
        app.stop()
        await asyncio.wait_for(task, 15)


async def http(app: App, path: str) -> tuple[int, str]:
    assert app.health is not None
    url = f"http://127.0.0.1:{app.health.port}{path}"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


@pytest.fixture
def seeded(kube: KubeServer) -> KubeServer:
    kube.emulator.controller_delay = 0.8
    kube.seed("Deployment", "apps", "web", replicas=0)
    kube.seed("StatefulSet", "apps", "db", replicas=0)
    return kube


async def test_start_is_edited_to_ready_then_warned_and_auto_stopped(
    people: dict[str, UserClient], running_synapse: Synapse, bot_account: Account, seeded: KubeServer, tmp_path: Path
) -> None:
    alice = people["alice"]
    room_id, alias = await open_room(alice, bot_account)
    config = app_config(running_synapse, bot_account, tmp_path / "store", alias, alice.user_id)
    async with running(config, seeded) as app:
        await alice.wait_member(room_id, bot_account.user_id, timeout=30)
        event_id = await alice.send(room_id, "start site for 5s")
        reply = await alice.reply_to(room_id, event_id, 15)
        assert "starting `web` (0/2 ready)" in reply.body
        edit = await alice.edit_of(reply.event.event_id, 20)
        assert "`web` is on — 2/2 ready after" in edit.body
        assert seeded.get("Deployment", "apps", "web")["metadata"]["annotations"]["toggler/started-by"] == alice.user_id

        warning = await alice.wait_for(lambda s: s.room_id == room_id and "stops in" in s.body, 15)
        assert "extend web" in warning.body
        report = await alice.wait_for(lambda s: s.room_id == room_id and "auto-stopped `web`" in s.body, 15)
        assert "timer ran out" in report.body
        await eventually(lambda: seeded.get("Deployment", "apps", "web")["spec"]["replicas"] == 0, what="web at 0")
        notes = seeded.get("Deployment", "apps", "web")["metadata"]["annotations"]
        assert "toggler/stop-at" not in notes and notes["toggler/restore-replicas"] == "2"

        status, metrics = await http(app, "/metrics")
        assert status == 200
        assert 'toggler_commands_total{action="start",outcome="ok",target="web"} 1.0' in metrics
        assert 'toggler_auto_stops_total{reason="deadline",target="web"} 1.0' in metrics
        assert 'toggler_target_replicas{target="web"} 0.0' in metrics


async def test_status_comes_from_the_cache_and_readyz_follows_synapse(
    people: dict[str, UserClient], running_synapse: Synapse, bot_account: Account, seeded: KubeServer, tmp_path: Path
) -> None:
    alice = people["alice"]
    room_id, alias = await open_room(alice, bot_account)
    config = app_config(running_synapse, bot_account, tmp_path / "store", alias, alice.user_id)
    async with running(config, seeded) as app:
        await alice.wait_member(room_id, bot_account.user_id, timeout=30)
        assert (await http(app, "/readyz"))[0] == 200
        before = len(seeded.api_requests())
        body = await ask(alice, room_id, "status", timeout=15)
        assert "`web` is off" in body and "`db` is off" in body
        assert len(seeded.api_requests()) == before, "status must be answered from the watch cache"

        running_synapse.stop()
        try:
            status, text = await readyz_until(app, 503, timeout=30)
            assert "FAIL matrix sync" in text and "ok kubernetes watches" in text
        finally:
            running_synapse.start()
        status, text = await readyz_until(app, 200, timeout=60)
        assert "ok matrix sync" in text
        assert "`web` is off" in await ask(alice, room_id, "status web", timeout=30)
        status, text = await http(app, "/healthz")
        assert (status, text) == (200, "ok\n")


async def readyz_until(app: App, wanted: int, *, timeout: float) -> tuple[int, str]:
    """Poll `/readyz` over HTTP until it answers `wanted`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        status, text = await http(app, "/readyz")
        if status == wanted or loop.time() > deadline:
            assert status == wanted, f"/readyz still {status} after {timeout} s:\n{text}"
            return status, text
        await asyncio.sleep(0.2)


async def test_outside_start_is_adopted_and_told(
    people: dict[str, UserClient], running_synapse: Synapse, bot_account: Account, seeded: KubeServer, tmp_path: Path,
    other_apps: client.AppsV1Api,
) -> None:
    alice = people["alice"]
    room_id, alias = await open_room(alice, bot_account)
    config = app_config(running_synapse, bot_account, tmp_path / "store", alias, alice.user_id)
    web = config.targets["web"].model_copy(update={"notify_room": alias})
    config = config.model_copy(update={"targets": {**config.targets, "web": web}})
    async with running(config, seeded):
        await alice.wait_member(room_id, bot_account.user_id, timeout=30)
        assert "`web` is off" in await ask(alice, room_id, "status web", timeout=15)  # the bot is in the room
        await asyncio.to_thread(other_apps.patch_namespaced_deployment_scale, "web", "apps", {"spec": {"replicas": 1}})
        notice = await alice.wait_for(lambda s: s.room_id == room_id and "outside toggler" in s.body, 20)
        assert "`web` was started outside toggler" in notice.body
        notes = await eventually(
            lambda: seeded.get("Deployment", "apps", "web")["metadata"].get("annotations", {}).get("toggler/stop-at"),
            what="stop-at annotated")
        assert notes.endswith("Z")

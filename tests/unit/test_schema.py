"""The committed JSON Schema is current and documented; every example config is valid."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from toggler import legacy
from toggler.cli import main
from toggler.loader import load_config

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "schemas" / "toggler.schema.json"
EXAMPLES = [ROOT / "config" / "example.yaml", ROOT / "config" / "minimal.yaml"]
ENV_EXAMPLE = ROOT / "config" / "legacy.env.example"
MODELINE = re.compile(r"^# yaml-language-server: \$schema=(\S+)$")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [*legacy.VARIABLES, *(key for key in os.environ if key.startswith("TOGGLER_"))]:
        monkeypatch.delenv(name, raising=False)


def generated_schema(capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["schema"]) == 0
    return capsys.readouterr().out


def test_committed_schema_is_current(capsys: pytest.CaptureFixture[str]) -> None:
    committed = SCHEMA.read_text(encoding="utf-8") if SCHEMA.exists() else ""
    assert generated_schema(capsys) == committed, f"{SCHEMA} is stale: run `make schema` and commit it"


def test_schema_output_is_stable(capsys: pytest.CaptureFixture[str]) -> None:
    assert generated_schema(capsys) == generated_schema(capsys)


def properties(schema: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(model, field, field schema) for the root model and every model in `$defs`."""
    models = {schema.get("title", "(root)"): schema, **schema.get("$defs", {})}
    for model, body in models.items():
        for field, spec in body.get("properties", {}).items():
            yield model, field, spec


def test_every_field_has_a_description() -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    fields = list(properties(schema))
    assert len(fields) > 40
    undocumented = [f"{model}.{field}" for model, field, spec in fields if not spec.get("description", "").strip()]
    assert undocumented == []


def test_every_model_has_a_description() -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    assert schema["description"]
    assert [name for name, body in schema["$defs"].items() if not body.get("description")] == []


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_points_at_the_schema(path: Path) -> None:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    match = MODELINE.match(first)
    assert match, f"{path.name} must start with '# yaml-language-server: $schema=…'"
    assert (path.parent / match.group(1)).resolve() == SCHEMA


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_validates_against_the_model(path: Path) -> None:
    loaded = load_config(path, read_secrets=False)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert list(loaded.config.targets) == list(data["targets"])
    assert list(loaded.config.rooms) == list(data["rooms"])
    assert loaded.warnings == []


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_validates_against_the_json_schema(path: Path) -> None:
    import jsonschema  # noqa: PLC0415
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    jsonschema.validate(yaml.safe_load(path.read_text(encoding="utf-8")), schema)


def env_file(text: str, *, commented: bool = False) -> dict[str, str]:
    """KEY=VALUE lines of an env file; with `commented`, also the `# KEY=VALUE` lines."""
    pairs = {}
    for raw in text.splitlines():
        line = raw.removeprefix("# ") if commented else raw
        if re.match(r"^[A-Z_]+=", line):
            key, _, value = line.partition("=")
            pairs[key] = value
    return pairs


def test_legacy_env_example_builds_a_valid_config() -> None:
    env = env_file(ENV_EXAMPLE.read_text(encoding="utf-8"))
    assert set(env) <= set(legacy.VARIABLES)
    loaded = load_config(env={**env, "TOGGLER_DEFAULT_CONFIG": "/nonexistent/toggler.yaml"})
    assert loaded.source == "legacy environment"
    assert list(loaded.config.targets) == [env["DEPLOYMENT_NAME"]]
    assert loaded.config.rooms["*"].users == ("@alice:matrix.example.com", "@bob:matrix.example.com")


def test_legacy_env_example_documents_every_variable_and_jwt() -> None:
    env = env_file(ENV_EXAMPLE.read_text(encoding="utf-8"), commented=True)
    assert set(env) == set(legacy.VARIABLES)
    loaded = load_config(env={**env, "AUTH_METHOD": "jwt", "TOGGLER_DEFAULT_CONFIG": "/nonexistent/toggler.yaml"})
    assert loaded.config.matrix.auth.keycloak is not None

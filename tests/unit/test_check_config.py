"""`toggler check-config`, `schema`, `version`: summaries, sources, env overrides, secret files, logging."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from toggler import __version__, logs
from toggler.cli import main
from toggler.loader import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "example.yaml"
MINIMAL = ROOT / "config" / "minimal.yaml"


pytestmark = pytest.mark.usefixtures("isolated_env")


def check(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def section(out: str, name: str) -> list[str]:
    """The summary lines of one target or room (its header line and the indented lines below it)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"  {name}:"))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith("    ")), len(lines))
    return lines[start:end]


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_example_summary_names_every_target_and_room(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = check(capsys, "check-config", str(EXAMPLE))
    assert (code, err) == (0, "")
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    for target in data["targets"]:
        assert section(out, target)
    for room in data["rooms"]:
        assert section(out, room)
    assert out.splitlines()[0] == f"config OK: {EXAMPLE}"


def test_example_summary_details(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = check(capsys, "check-config", str(EXAMPLE))
    gpu = section(out, "gpu")
    assert gpu[0] == "  gpu: StatefulSet ml/gpu-box — the A100 inference box"
    assert "    aliases: cuda, box" in gpu
    assert "    replicas: 1, auto-stop: 1h, max duration: 8h" in gpu
    staging = section(out, "staging")
    assert "    replicas: 2, auto-stop: never, max duration: 12h" in staging
    assert "    schedule: stop '0 20 * * *', start '0 8 * * mon-fri' (Europe/Berlin)" in staging
    ml = section(out, "!ml-team:example.org")
    assert "    require encryption: no, prefix: !t, actions: start, stop, extend, status" in ml
    assert "    @carol:example.org may use: gpu" in ml
    assert "    @alice:example.org may use: gpu, agent" in ml
    assert "    @alice:example.org may use: gpu, agent, staging" in section(out, "#ops:example.org")
    assert "login: jwt (com.famedly.login.token.oauth) via Keycloak" in out


def test_minimal_summary(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = check(capsys, "check-config", str(MINIMAL))
    assert code == 0
    assert section(out, "web")[:3] == [
        "  web: Deployment apps/web",
        "    aliases: -",
        "    replicas: 1, auto-stop: 2h, max duration: 12h",
    ]
    assert "    @alice:example.org may use: web" in section(out, "!ops:example.org")
    assert "warnings" not in out


def test_env_override_changes_summary(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOGGLER_DEFAULTS__AUTO_STOP_AFTER", "3h")
    _, out, _ = check(capsys, "check-config", str(MINIMAL))
    assert "    replicas: 1, auto-stop: 3h, max duration: 12h" in section(out, "web")
    assert out.count("auto-stop 3h") == 1  # the defaults line


def test_invalid_env_override_exits_2(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOGGLER_DEFAULTS__WARN_BEFORE", "soon")
    code, out, err = check(capsys, "check-config", str(MINIMAL))
    assert (code, out) == (2, "")
    assert "defaults.warn_before: invalid duration 'soon'" in err


def test_config_sources_in_order(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOGGLER_CONFIG", str(MINIMAL))
    assert check(capsys, "check-config")[1].startswith(f"config OK: {MINIMAL}")
    assert check(capsys, "--config", str(EXAMPLE), "check-config")[1].startswith(f"config OK: {EXAMPLE}")
    code, out, _ = check(capsys, "--config", str(EXAMPLE), "check-config", str(MINIMAL))
    assert (code, out.splitlines()[0]) == (0, f"config OK: {MINIMAL}")


def test_missing_explicit_file_is_an_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TOGGLER_CONFIG", str(tmp_path / "nope.yaml"))
    code, _, err = check(capsys, "check-config")
    assert code == 2
    assert f"{tmp_path / 'nope.yaml'}: file not found" in err.splitlines()


def test_default_file_is_used_when_present(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOGGLER_DEFAULT_CONFIG", str(MINIMAL))
    assert check(capsys, "check-config")[1].startswith(f"config OK: {MINIMAL}")


def test_password_file_is_read(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret-from-file\n", encoding="utf-8")
    path = write_config(
        tmp_path, MINIMAL.read_text(encoding="utf-8").replace("/run/secrets/toggler/password", str(secret))
    )
    cfg = load_config(path).config
    assert cfg.matrix.password is not None
    assert cfg.matrix.password.get_secret_value() == "s3cret-from-file"


def test_missing_password_file_names_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(MINIMAL, read_secrets=True)
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith("matrix.password_file: cannot read /run/secrets/toggler/password")


def test_keycloak_client_secret_file_is_read(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("pw", encoding="utf-8")
    (tmp_path / "cs").write_text("client-secret", encoding="utf-8")
    text = EXAMPLE.read_text(encoding="utf-8").replace("/run/secrets/toggler/password", str(tmp_path / "pw"))
    text = text.replace("/run/secrets/toggler/client-secret", str(tmp_path / "cs"))
    keycloak = load_config(write_config(tmp_path, text)).config.matrix.auth.keycloak
    assert keycloak is not None and keycloak.client_secret is not None
    assert keycloak.client_secret.get_secret_value() == "client-secret"


def test_inline_password_beats_file(tmp_path: Path) -> None:
    text = MINIMAL.read_text(encoding="utf-8").replace("  password_file:", "  password: inline-pw\n  password_file:")
    cfg = load_config(write_config(tmp_path, text)).config  # the (absent) file is never read
    assert cfg.matrix.password is not None
    assert cfg.matrix.password.get_secret_value() == "inline-pw"


def test_env_password_beats_yaml_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOGGLER_MATRIX__PASSWORD", "env-pw")
    text = MINIMAL.read_text(encoding="utf-8").replace("  password_file:", "  password: inline-pw\n  password_file:")
    cfg = load_config(write_config(tmp_path, text)).config
    assert cfg.matrix.password is not None
    assert cfg.matrix.password.get_secret_value() == "env-pw"


def test_check_config_never_prints_or_logs_secrets(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOGGLER_MATRIX__PASSWORD", "very-secret-pw")
    code, out, _ = check(capsys, "--log-level", "debug", "check-config", str(MINIMAL))
    assert code == 0
    assert "very-secret-pw" not in out
    assert "  password: set inline or from the environment" in out
    logging.getLogger("toggler.test").warning("login with %s failed", "very-secret-pw")
    assert capsys.readouterr().err.rstrip().endswith("toggler.test: login with *** failed")


def test_json_log_lines_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    logs.register_secret("tok-123")
    logs.setup_logging("info", "json")
    try:
        raise ValueError("bad token tok-123")
    except ValueError:
        logging.getLogger("toggler.x").exception("sync failed for %s", "tok-123", extra={"event_id": "$ev"})
    record = json.loads(capsys.readouterr().err)
    assert record["message"] == "sync failed for ***"
    assert record["level"] == "ERROR" and record["logger"] == "toggler.x" and record["event_id"] == "$ev"
    assert record["exc"].endswith("ValueError: bad token ***")


def test_setup_logging_rejects_unknown_level() -> None:
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        logs.setup_logging("loud")


def test_schema_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = check(capsys, "schema")
    assert code == 0 and out.endswith("}\n")
    assert json.loads(out)["title"] == "Config"
    assert check(capsys, "version") == (0, f"toggler {__version__}\n", "")


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = check(capsys, "frobnicate")
    assert code == 2 and "invalid choice: 'frobnicate'" in err
    assert check(capsys)[0] == 2
    assert check(capsys, "--log-level", "loud", "version")[0] == 2


def test_console_script(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "toggler"
    env = {key: value for key, value in os.environ.items() if not key.startswith("TOGGLER_")}
    good = subprocess.run(
        [script, "check-config", str(EXAMPLE)], capture_output=True, text=True, env=env, check=False, timeout=60
    )
    assert (good.returncode, good.stderr) == (0, "")
    assert good.stdout.startswith(f"config OK: {EXAMPLE}")
    broken = write_config(tmp_path, "targets: [\n")
    bad = subprocess.run(
        [script, "check-config", str(broken)], capture_output=True, text=True, env=env, check=False, timeout=60
    )
    assert bad.returncode == 2
    assert bad.stderr.splitlines()[1].startswith("(yaml): ")
    assert "Traceback" not in bad.stderr

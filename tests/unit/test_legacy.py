"""The predecessor's env variables as a one-target config, through `load_config` and `toggler check-config`."""

from __future__ import annotations

from pathlib import Path

import pytest

from toggler import legacy
from toggler.cli import main
from toggler.loader import ConfigError, Loaded, load_config
from toggler.policy import Policy

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = ROOT / "config" / "minimal.yaml"
BASE = {
    "MATRIX_USER": "clawdbot-operator",
    "MATRIX_PASSWORD": "legacy-pw",
    "ALLOWED_USERS": "@alice:matrix.example.com, @bob:matrix.example.com",
}
JWT = {
    "AUTH_METHOD": "jwt",
    "KEYCLOAK_URL": "https://sso.example.org",
    "KEYCLOAK_REALM": "matrix",
    "KEYCLOAK_CLIENT_ID": "toggler",
}


pytestmark = pytest.mark.usefixtures("isolated_env")


def set_env(monkeypatch: pytest.MonkeyPatch, variables: dict[str, str]) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)


def load(**variables: str) -> Loaded:
    """Load from a legacy environment: BASE updated with `variables` ('' removes one)."""
    env = {**BASE, **variables, "TOGGLER_DEFAULT_CONFIG": "/nonexistent/toggler.yaml"}
    return load_config(env={key: value for key, value in env.items() if value})


def problems(**variables: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(**variables)
    return caught.value.problems


def check(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["check-config", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_check_config_shows_the_one_legacy_target(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    set_env(monkeypatch, BASE)
    code, out, err = check(capsys)
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == "config OK: legacy environment"
    assert "targets (1):\n  clawdbot: Deployment clawdbot/clawdbot\n" in out
    assert "    replicas: 1, auto-stop: never, max duration: 12h\n" in out
    assert "  * (any room):\n" in out
    assert "    @alice:matrix.example.com may use: clawdbot\n" in out
    assert "    @bob:matrix.example.com may use: clawdbot\n" in out


def test_legacy_target_is_usable_in_any_room_with_no_auto_stop() -> None:
    cfg = load().config
    assert list(cfg.targets) == ["clawdbot"]
    assert cfg.targets["clawdbot"].namespace == "clawdbot"
    assert cfg.auto_stop_after("clawdbot") is None
    policy = Policy(cfg)
    assert policy.usable_targets("@alice:matrix.example.com", "!any:example.org") == ("clawdbot",)
    assert policy.usable_targets("@mallory:matrix.example.com", "!any:example.org") == ()


def test_defaults_match_the_predecessor() -> None:
    loaded = load()
    cfg = loaded.config
    assert loaded.source == "legacy environment"
    assert cfg.matrix.homeserver == legacy.DEFAULT_HOMESERVER
    assert cfg.matrix.user_id == "clawdbot-operator"
    assert cfg.matrix.password is not None and cfg.matrix.password.get_secret_value() == "legacy-pw"
    assert cfg.matrix.store_path == Path("/data/crypto_store")
    assert cfg.matrix.auth.method == "password"
    assert cfg.matrix.echo is True
    assert cfg.logging.level == "DEBUG"


def test_deployment_and_paths_are_taken_from_env() -> None:
    cfg = load(
        DEPLOYMENT_NAME="openclaw",
        DEPLOYMENT_NAMESPACE="agents",
        CRYPTO_STORE_PATH="/var/store",
        MATRIX_USER="@bot:example.org",
        MATRIX_HOMESERVER="https://hs.example.org",
    ).config
    assert list(cfg.targets) == ["openclaw"]
    assert (cfg.targets["openclaw"].namespace, cfg.object_name("openclaw")) == ("agents", "openclaw")
    assert (cfg.matrix.user_id, cfg.matrix.homeserver) == ("@bot:example.org", "https://hs.example.org")
    assert cfg.matrix.store_path == Path("/var/store")


@pytest.mark.parametrize(("value", "expected"), [("false", False), ("0", False), ("true", True), ("yes", True)])
def test_echo_mode(value: str, expected: bool) -> None:
    assert load(ECHO_MODE=value).config.matrix.echo is expected


@pytest.mark.parametrize(("value", "expected"), [("INFO", "INFO"), ("warning", "WARNING"), ("TRACE", "DEBUG")])
def test_loguru_level(value: str, expected: str) -> None:
    assert load(LOGURU_LEVEL=value).config.logging.level == expected


def test_allowed_users_unset_exits_2_naming_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    set_env(monkeypatch, {key: value for key, value in BASE.items() if key != "ALLOWED_USERS"})
    code, out, err = check(capsys)
    assert (code, out) == (2, "")
    assert "ALLOWED_USERS: required environment variable is not set" in err.splitlines()
    assert "Traceback" not in err


def test_missing_user_and_password_are_both_named() -> None:
    lines = problems(MATRIX_USER="", MATRIX_PASSWORD="")
    assert "MATRIX_USER: required environment variable is not set" in lines
    assert "MATRIX_PASSWORD: required environment variable is not set" in lines
    assert not any(line.startswith("ALLOWED_USERS") for line in lines)


def test_jwt_without_keycloak_names_each_variable() -> None:
    lines = problems(AUTH_METHOD="jwt")
    for name in ("KEYCLOAK_URL", "KEYCLOAK_REALM", "KEYCLOAK_CLIENT_ID"):
        assert f"{name}: required environment variable is not set" in lines


def test_jwt_with_everything() -> None:
    auth = load(**JWT, KEYCLOAK_CLIENT_SECRET="cs", JWT_LOGIN_TYPE="org.matrix.login.jwt").config.matrix.auth
    assert auth.method == "jwt" and auth.login_type == "org.matrix.login.jwt"
    assert auth.keycloak is not None
    assert (auth.keycloak.url, auth.keycloak.realm, auth.keycloak.client_id) == (
        "https://sso.example.org",
        "matrix",
        "toggler",
    )
    assert auth.keycloak.client_secret is not None and auth.keycloak.client_secret.get_secret_value() == "cs"
    assert auth.keycloak.effective_token_url == "https://sso.example.org/realms/matrix/protocol/openid-connect/token"


def test_jwt_login_type_defaults_to_oauth() -> None:
    auth = load(**JWT).config.matrix.auth
    assert auth.login_type == "com.famedly.login.token.oauth"
    assert auth.keycloak is not None and auth.keycloak.client_secret is None


def test_bad_values_name_their_variable() -> None:
    assert problems(AUTH_METHOD="kerberos") == [
        "no config file found; legacy environment variables are incomplete:",
        "AUTH_METHOD: must be 'password' or 'jwt', got 'kerberos'",
    ]
    assert problems(JWT_LOGIN_TYPE="m.login.sso", **JWT)[0].startswith("JWT_LOGIN_TYPE: ")
    assert problems(DEPLOYMENT_NAMESPACE="Bad_NS")[0].startswith("DEPLOYMENT_NAMESPACE: ")
    assert problems(MATRIX_HOMESERVER="synapse:8008")[0].startswith("MATRIX_HOMESERVER: ")
    assert problems(MATRIX_USER="Clawd Bot")[0].startswith("MATRIX_USER: ")
    assert problems(DEPLOYMENT_NAME="Claw_Bot")[0].startswith("DEPLOYMENT_NAME: ")


def test_invalid_allowed_user_names_the_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    set_env(monkeypatch, {**BASE, "ALLOWED_USERS": "@alice:matrix.example.com,bob"})
    code, _, err = check(capsys)
    assert code == 2
    assert "ALLOWED_USERS: 'bob' is not a full Matrix user ID like @alice:example.org" in err.splitlines()


def test_config_file_wins_with_one_warning(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, {**BASE, "DEPLOYMENT_NAME": "other"})
    monkeypatch.setenv("TOGGLER_DEFAULT_CONFIG", str(MINIMAL))
    loaded = load_config(read_secrets=False)
    assert list(loaded.config.targets) == ["web"]
    assert loaded.warnings == [
        f"config file {MINIMAL} wins; ignoring legacy variables: "
        "MATRIX_USER, MATRIX_PASSWORD, ALLOWED_USERS, DEPLOYMENT_NAME"
    ]
    code, out, _ = check(capsys)
    assert code == 0
    assert out.count("ignoring legacy variables") == 1
    assert f"warnings (1):\n  {loaded.warnings[0]}\n" in out


def test_no_warning_without_legacy_variables() -> None:
    assert load_config(env={"TOGGLER_DEFAULT_CONFIG": str(MINIMAL)}, read_secrets=False).warnings == []

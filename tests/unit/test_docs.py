"""The README's config reference is generated from the model and must not go stale."""

from pathlib import Path

from toggler.configdoc import END, START, markdown_reference, refresh

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_reference_is_fresh() -> None:
    text = README.read_text(encoding="utf-8")
    assert START in text and END in text
    assert refresh(text) == text, "README config reference is stale: run `make docs`"


def test_reference_documents_every_field() -> None:
    reference = markdown_reference()
    for key in ("homeserver", "password_file", "auto_stop_after", "max_command_age", "require_encryption",
                "command_prefix", "grants", "schedule", "notify_room", "login_type", "token_url"):
        assert f"| `{key}` |" in reference
    assert "|  |" not in reference.replace("| — |", ""), "a field has no description"


def test_readme_starts_with_the_two_commands() -> None:
    head = README.read_text(encoding="utf-8").splitlines()[:10]
    assert any(line.startswith("make demo") for line in head)
    assert any(line.startswith("make test") for line in head)

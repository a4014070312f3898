"""Event contents the bot sends (notices, replies, edits) and the few texts only the Matrix side says.

Every message is an `m.notice` with a plain `body` and an HTML `formatted_body`; replies carry an
`m.relates_to` / `m.in_reply_to` relation (no quoted fallback, as Matrix 1.13 recommends), edits an
`m.replace` relation with `m.new_content`. Pure: no I/O, no nio.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from toggler.durations import humanize
from toggler.replies_text import Code, Reply, lines_reply

HTML = "org.matrix.custom.html"
ECHO_PREFIX = "🦞 "
MAX_QUOTE = 60


def notice(
    reply: Reply, *, reply_to: str | None = None, mention: str | None = None, thread: str | None = None
) -> dict[str, Any]:
    """An `m.notice`, optionally replying to `reply_to` (inside `thread`, a thread root) and mentioning someone."""
    content: dict[str, Any] = {"msgtype": "m.notice", "body": reply.plain, "format": HTML, "formatted_body": reply.html}
    if reply_to is not None:
        relation: dict[str, Any] = {"m.in_reply_to": {"event_id": reply_to}}
        if thread is not None:
            relation.update({"rel_type": "m.thread", "event_id": thread, "is_falling_back": False})
        content["m.relates_to"] = relation
    content["m.mentions"] = {"user_ids": [mention]} if mention else {}
    return content


def thread_root(event_content: dict[str, Any]) -> str | None:
    """The thread a message was sent in, if any."""
    relates = event_content.get("m.relates_to")
    if isinstance(relates, dict) and relates.get("rel_type") == "m.thread":
        root = relates.get("event_id")
        return root if isinstance(root, str) else None
    return None


def edit(original: str, reply: Reply) -> dict[str, Any]:
    """Replace the text of our own notice `original` with `reply`."""
    new = {"msgtype": "m.notice", "body": reply.plain, "format": HTML, "formatted_body": reply.html, "m.mentions": {}}
    return {
        "msgtype": "m.notice",
        "body": f"* {reply.plain}",
        "format": HTML,
        "formatted_body": f"* {reply.html}",
        "m.new_content": new,
        "m.relates_to": {"rel_type": "m.replace", "event_id": original},
        "m.mentions": {},
    }


def echo(body: str) -> Reply:
    """The legacy `ECHO_MODE` echo: `🦞 <body>`."""
    return lines_reply([ECHO_PREFIX + body])


def _quote(body: str) -> str:
    flat = " ".join(body.split())
    return flat if len(flat) <= MAX_QUOTE else flat[: MAX_QUOTE - 1] + "…"


def offline(body: str, age: timedelta) -> Reply:
    """A command that waited too long while the bot was away."""
    return lines_reply(
        [
            "I was offline when you sent ",
            Code(_quote(body)),
            f" {humanize(age)} ago; send it again if you still want it",
        ]
    )


def resend() -> Reply:
    """An encrypted message the bot could not decrypt."""
    return lines_reply(["I couldn't decrypt your message (I have asked your client for the key); please send it again"])


def needs_encryption() -> Reply:
    """A command sent unencrypted in a room that requires encryption."""
    return lines_reply(
        ["This room only takes encrypted commands, so I ignored that one; turn on encryption here to use me"]
    )


UNTRUSTED_DEVICE = "I don't trust the device you sent that from"
INTERNAL_ERROR = "something went wrong on my side; the details are in my log"

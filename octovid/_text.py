"""Small text helpers for messages: one-line snippets of bodies, and blotting out the key."""

from __future__ import annotations

__all__ = ["redact", "snippet"]


def snippet(body: bytes | str, limit: int = 200) -> str:
    """Return the start of a body as one readable line, for messages and reports."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def redact(body: bytes, secret: str | None) -> bytes:
    """``body`` with every occurrence of ``secret`` (the API key) blotted out."""
    return body.replace(secret.encode(), b"***") if secret else body

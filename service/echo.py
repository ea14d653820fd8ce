"""How a client's own values appear in an error body or a log line: bounded, and escaped for logs.

A client controls the names, paths and keys it sends; an error that quotes them back must not grow
with them (a 4 MB model name is not worth an 8 MB 404), and a log line that quotes them must stay
one line (a `%0a` in a path must not forge a second log record).
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice
from typing import Final

MAX_ECHOED_CHARACTERS: Final = 64
MAX_ECHOED_ITEMS: Final = 10
MAX_LOGGED_CHARACTERS: Final = 200


def shown(text: str, limit: int = MAX_ECHOED_CHARACTERS) -> str:
    """`text`, cut to `limit` characters with a note of how many were left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


def first_items(items: Iterable[str], limit: int = MAX_ECHOED_ITEMS) -> list[str]:
    """At most `limit` of `items`, each `shown`: the part of a list an error quotes back."""
    return [shown(item) for item in islice(items, limit)]


def loggable(text: str, limit: int = MAX_LOGGED_CHARACTERS) -> str:
    """`text` for a log line: non-ASCII and control characters escaped (a newline becomes `\\n`),
    cut to `limit` characters."""
    escaped = ascii(text)[1:-1]
    return escaped if len(escaped) <= limit else f"{escaped[:limit]}...({len(escaped)} chars)"

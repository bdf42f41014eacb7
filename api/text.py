"""Text that no column can hold: PostgreSQL refuses a NUL character in any text value,
and UTF-8 (every column, hash and answer) a lone UTF-16 surrogate."""

from __future__ import annotations

import re

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def unstorable(text: str) -> str | None:
    """What keeps ``text`` out of a text column, or ``None`` when nothing does.

    >>> unstorable("a\\x00b"), unstorable("a\\ud800"), unstorable("café 😀")
    ('a NUL character', 'a lone UTF-16 surrogate', None)
    """
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    return "a NUL character" if found.group() == "\x00" else "a lone UTF-16 surrogate"

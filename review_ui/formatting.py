"""Turn API values into calm, readable text for the review UI."""

from __future__ import annotations

import html
import json
import math
import re
from datetime import UTC, datetime
from typing import Any

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")
# Where GitHub-flavoured markdown starts a bare link (``http:``, ``https:``, ``www.``, the
# domain after an e-mail's ``@``): an invisible word joiner there keeps it text.
_AUTOLINK = re.compile(r"(?i)(?<=http)(?=s?:)|(?<=www)(?=\.)|(?<=@)")
_WORD_JOINER = "\u2060"
# Characters that reorder the text around them (a right-to-left override shows
# "\u202egnp.exe" as "exe.png"): shown as their code instead, so what a reviewer reads is
# what was sent.
_DIRECTION = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def reveal_direction(text: str) -> str:
    """``text`` with its direction controls shown as ``⟨U+202E⟩``.

    >>> reveal_direction("\u202egnp.exe")
    '⟨U+202E⟩gnp.exe'
    """
    return _DIRECTION.sub(lambda m: f"⟨U+{ord(m.group()):04X}⟩", text)


LONG_TEXT = 80
#: How a missing value reads, in text and in tables.
MISSING = "—"
#: How every table of rows is shown: no index column, the page's width, missing values
#: as :data:`MISSING` (Streamlit writes "None"): ``st.dataframe(rows, **TABLE)``.
TABLE: dict[str, Any] = {"hide_index": True, "width": "stretch", "placeholder": MISSING}


def escape_markdown(text: str) -> str:
    r"""Escape text so Streamlit markdown shows it literally (no links, LaTeX or HTML).

    Markdown's syntax is escaped, bare addresses, which Streamlit's markdown turns into
    links by itself, get an invisible word joiner (U+2060) where a link would start, and
    direction controls are shown (:func:`reveal_direction`).

    >>> escape_markdown("*big* $5 [x](y)")
    '\\*big\\* \\$5 \\[x\\]\\(y\\)'
    >>> escape_markdown("https://x.example a@b.example").replace("\u2060", "<wj>")
    'http<wj>s\\://x\\.example a@<wj>b\\.example'
    """
    return _MD_SPECIAL.sub(r"\\\1", _AUTOLINK.sub(_WORD_JOINER, reveal_direction(text)))


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, an ellipsis marking the cut.

    >>> clip("approve", 24), clip("x" * 30, 10)
    ('approve', 'xxxxxxxxx…')
    """
    return text if len(text) <= limit else text[: limit - 1] + "…"


def plain_html(text: str, *, bold: bool = False) -> str:
    """HTML (for ``st.html``) that shows ``text`` as it is: escaped, its line breaks kept,
    direction controls shown (:func:`reveal_direction`), and no address turned into a
    link. Streamlit's markdown links every URL and e-mail address it finds, and a case's
    text may carry the very link it is about (a phishing mail, a fraudulent shop): a
    reviewer must be able to read and copy it, not open it with a stray click.

    >>> plain_html("visit https://bank.example <now>").split(">", 1)[1]
    'visit https://bank.example &lt;now&gt;</div>'
    """
    weight = "; font-weight: 600" if bold else ""
    style = f"white-space: pre-wrap; overflow-wrap: anywhere{weight}"
    return f'<div style="{style}">{html.escape(reveal_direction(text))}</div>'


def format_number(value: float | int) -> str:
    """Thousands separators and sensible decimals.

    >>> format_number(1234567)
    '1,234,567'
    >>> format_number(12345.678)
    '12,345.68'
    >>> format_number(3.14159)
    '3.142'
    >>> format_number(0.000123456)
    '0.0001235'
    >>> format_number(2.0)
    '2'
    >>> format_number(1e99), format_number(10**20)
    ('1e+99', '1e+20')
    """
    if math.isnan(value) or math.isinf(value):
        return str(value)
    if abs(value) >= 1e15:  # beyond a quadrillion, digits stop being readable
        return f"{value:.6g}"
    if isinstance(value, int):
        return f"{value:,}"
    if value.is_integer():
        return f"{int(value):,}"
    size = abs(value)
    if size >= 100:
        text = f"{value:,.2f}"
    elif size >= 1:
        text = f"{value:,.3f}"
    else:
        return f"{value:.4g}"
    return text.rstrip("0").rstrip(".")


def format_exact(value: float | int) -> str:
    """Every digit of a number as sent, with thousands separators (a value a rule compares
    must not be rounded across the rule's edge: 10,000.004 is not 10,000).

    >>> format_exact(10000.004), format_exact(7800.123456), format_exact(2.0), format_exact(-3)
    ('10,000.004', '7,800.123456', '2', '-3')
    >>> format_exact(0.000123456), format_exact(1e99)
    ('0.000123456', '1e+99')
    """
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:,}"


def format_value(value: Any) -> str:
    """A feature value as plain text: yes/no, numbers exactly as sent, a dash for missing.

    >>> [format_value(v) for v in (True, None, 1500, 99999.999, "fr", [1, 2])]
    ['yes', '—', '1,500', '99,999.999', 'fr', '[1, 2]']
    """
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return format_exact(value)
    if isinstance(value, str):
        return value if value.strip() else "(empty)"
    return json.dumps(value, ensure_ascii=False, default=str)


def is_long(value: Any, kind: str | None = None) -> bool:
    """Whether a feature deserves a full-width row (text features and long strings)."""
    return kind == "text" or (isinstance(value, str) and len(value) > LONG_TEXT)


def format_percent(value: float | None, digits: int = 1) -> str:
    """A share as a percentage, or a dash.

    >>> format_percent(0.1234), format_percent(None)
    ('12.3%', '—')
    """
    return MISSING if value is None else f"{value * 100:.{digits}f}%"


def table_rows(rows: list[dict[str, Any]], times: tuple[str, ...] = ("at",)) -> list[dict]:
    """Rows as a table shows them: the ``times`` columns to the second, in UTC (a table
    printed ``2030-01-01T10:02:24.252601+00:00``).

    >>> table_rows([{"at": "2030-01-01T12:02:24.252601+02:00", "mode": "assist"}])
    [{'at': '2030-01-01 10:02:24 UTC', 'mode': 'assist'}]
    """
    shown = []
    for row in rows:
        out = dict(row)
        for name in times:
            moment = parse_time(out[name]) if isinstance(out.get(name), str) else None
            if moment is not None:
                out[name] = moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        shown.append(out)
    return shown


def parse_time(text: str | None) -> datetime | None:
    """An ISO 8601 timestamp from the API (naive means UTC), or ``None``."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def seconds_left(expires_at: str | None, now: datetime | None = None) -> float | None:
    """Seconds until ``expires_at`` (negative once past), or ``None`` if unknown."""
    moment = parse_time(expires_at)
    if moment is None:
        return None
    return (moment - (now or datetime.now(UTC))).total_seconds()


def format_duration(seconds: float) -> str:
    """A short countdown.

    >>> format_duration(372), format_duration(42.4), format_duration(-3)
    ('6 min 12 s', '42 s', '0 s')
    """
    whole = max(0, int(seconds))
    minutes, secs = divmod(whole, 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def format_contribution(value: float) -> str:
    """A signed contribution with a true minus sign.

    >>> format_contribution(0.4213), format_contribution(-0.05)
    ('+0.421', '−0.050')
    """
    return f"{'+' if value >= 0 else '−'}{abs(value):.3f}"

"""Readable values on the review card."""

from __future__ import annotations

import doctest

import pytest

from review_ui import formatting
from review_ui.formatting import escape_markdown, format_value, is_long, seconds_left
from review_ui.views import dashboard, review


@pytest.mark.parametrize("module", [formatting, review, dashboard], ids=lambda m: m.__name__)
def test_formatting_doctests(module) -> None:  # type: ignore[no-untyped-def]
    """The review UI's examples: ``make test`` collects doctests from learner and api only."""
    assert doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE).failed == 0


def test_values_read_naturally() -> None:
    assert format_value(False) == "no"
    assert format_value(-1234.5) == "-1,234.5"
    assert format_value(0.5) == "0.5"
    assert format_value(float("nan")) == "nan"
    assert format_value("  ") == "(empty)"
    assert format_value(10000.004) == "10,000.004"  # not 10,000: a rule says amount > 10000
    assert format_value({"a": "é"}) == '{"a": "é"}'


def test_markdown_in_features_is_shown_literally() -> None:
    assert escape_markdown("# $x$ <b>") == "\\# \\$x\\$ \\<b\\>"


def test_long_text_gets_a_full_row() -> None:
    assert is_long("x" * 81) and not is_long("x" * 80)
    assert is_long("short", "text")


def test_seconds_left_handles_missing_and_naive_times() -> None:
    assert seconds_left(None) is None and seconds_left("not a time") is None
    assert seconds_left("2000-01-01T00:00:00") < 0

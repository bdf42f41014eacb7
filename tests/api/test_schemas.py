"""The answers' building blocks."""

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from api.schemas import iso


@given(
    st.one_of(
        st.floats(min_value=-1e10, max_value=1e11, allow_nan=False),
        st.integers(0, 4 * 10**15).map(lambda us: us / 1e6),  # times at whole microseconds
        st.integers(0, 4 * 10**15).map(lambda us: (2 * us + 1) / 2e6),  # halfway between
    )
)
def test_iso_writes_a_time_exactly_as_datetime_does(ts):
    """The batch's fast formatter is the same function as ``datetime``'s, rounding
    included: a case answered from a batch and read back later shows one time."""
    assert iso(ts) == datetime.fromtimestamp(ts, UTC).isoformat()


def test_iso_keeps_none():
    assert iso(None) is None

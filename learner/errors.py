"""Errors raised by the learner.

Every error derives from :class:`LearnerError`, so the API can turn all of them into
HTTP answers in one place.
"""

from __future__ import annotations

__all__ = ["InvalidFeatures", "InvalidLabel", "InvalidSchema", "LearnerError"]


class LearnerError(Exception):
    """Root of every error the learner raises."""


class _FieldError(LearnerError):
    """An error about one named field; ``str(e) == f"{field}: {reason}"``. An empty
    ``field`` is the whole object (the features, the schema): ``str(e) == reason``."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field = field
        self.reason = reason

    @property
    def loc(self) -> tuple[str, ...]:
        """Where, below the object: ``(field,)``, or ``()`` for the object itself."""
        return (self.field,) if self.field else ()

    def __reduce__(self):  # keep pickling (e.g. across processes) working
        return (type(self), (self.field, self.reason))


class InvalidSchema(_FieldError):
    """A task schema is malformed.

    Examples
    --------
    >>> e = InvalidSchema("amount", "unknown kind 'money'")
    >>> str(e), e.field
    ("amount: unknown kind 'money'", 'amount')
    """


class InvalidFeatures(_FieldError):
    """A case's features do not match the task schema.

    Examples
    --------
    >>> str(InvalidFeatures("amount", "missing required feature"))
    'amount: missing required feature'
    """


class InvalidLabel(LearnerError):
    """A label is not one of the task's labels.

    Examples
    --------
    >>> e = InvalidLabel("maybe", "unknown label; expected one of 'no', 'yes'")
    >>> e.label, str(e)
    ('maybe', "maybe: unknown label; expected one of 'no', 'yes'")
    """

    def __init__(self, label: object, reason: str) -> None:
        super().__init__(f"{label}: {reason}")
        self.label = label
        self.reason = reason

    def __reduce__(self):
        return (type(self), (self.label, self.reason))

"""API keys: generated once, stored as SHA-256 hashes, checked in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

KEY_PREFIX = "tl_"

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "admin": frozenset({"*"}),
    "service": frozenset({"cases:write", "cases:read"}),
    "reviewer": frozenset({"review", "cases:read", "tasks:read"}),
    "analyst": frozenset(
        {
            "cases:read",
            "tasks:read",
            "metrics:read",
            "data:export",
            "audit:read",
            "models:read",
            "quality:read",
        }
    ),
}


#: Permissions over every task at once: keys (a key may be given any scope).
UNSCOPED_ONLY = frozenset({"keys:manage"})


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's id, name and role."""

    id: str
    name: str
    role: str
    lead: bool = False  # may decide cases whose reviewers disagreed
    tasks: frozenset[str] | None = None  # scope: the only tasks it may act on (None: all)
    former: tuple[str, ...] = ()  # the keys this one replaced (rotations): the same person

    @property
    def identities(self) -> list[str]:
        """The key ids this caller has answered under: its own and those it replaced."""
        return [self.id, *self.former]

    def can(self, permission: str) -> bool:
        """Whether the role grants ``permission``; a scoped key never holds one that reaches
        past its tasks (:data:`UNSCOPED_ONLY`: a scoped admin administers its tasks, and
        cannot mint itself a wider key).

        >>> Principal("k", "a", "admin").can("keys:manage")
        True
        >>> Principal("k", "a", "admin", tasks=frozenset({"claims"})).can("keys:manage")
        False
        """
        if self.tasks is not None and permission in UNSCOPED_ONLY:
            return False
        granted = ROLE_PERMISSIONS.get(self.role, frozenset())
        return "*" in granted or permission in granted

    def may_use(self, task: str) -> bool:
        """True when the key's scope includes ``task`` (an unscoped key: every task)."""
        return self.tasks is None or task in self.tasks


def new_key() -> str:
    """A fresh 256-bit key with a recognisable prefix."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def same_secret(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def sign(data: bytes, secret: bytes) -> str:
    return hmac.new(secret, data, hashlib.sha256).hexdigest()


def verify(data: bytes, signature: str, secret: bytes) -> bool:
    return hmac.compare_digest(sign(data, secret), signature)

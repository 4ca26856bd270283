"""Password hashing for web accounts: argon2id through ``argon2-cffi`` (a maintained binding of the
reference implementation).

Parameters: OWASP's argon2id baseline (19 MiB, 2 passes, 1 lane), about 50 ms on these 2-core machines.
argon2-cffi's default (64 MiB, 3 passes, 4 lanes) costs ~300 ms of both cores per sign-in here, which
would let a burst of sign-in attempts starve the hub's verification pool.

Hashes are self-describing strings (``$argon2id$v=19$m=…``), so parameters can be raised later:
:func:`needs_rehash` tells the sign-in handler to store a fresh hash after a successful check.
Hashing costs tens of milliseconds of CPU on purpose; async callers run it in a thread.
"""

from __future__ import annotations

from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH = 10
"""Shortest password accepted by ``gateway users add`` (length beats composition rules)."""


@cache
def _hasher() -> PasswordHasher:
    return PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


@cache
def _dummy_hash() -> str:
    return _hasher().hash("not a password of anyone")


def hash_password(password: str) -> str:
    if len(password) < MIN_LENGTH:
        raise ValueError(f"a password needs at least {MIN_LENGTH} characters")
    return _hasher().hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches. ``None`` (no such user) still spends the time of one check, so the
    answer's timing does not reveal which usernames exist."""
    try:
        return _hasher().verify(password_hash or _dummy_hash(), password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher().check_needs_rehash(password_hash)

"""Errors of the consent domain, mapped to problem documents at the HTTP edge."""

from __future__ import annotations


class ConsentError(Exception):
    """Base class: something the caller asked cannot be done."""


class NotFound(ConsentError):
    """The consent, request or holding does not exist for this caller."""


class Conflict(ConsentError):
    """The thing exists but is not in a state that allows the change (e.g. already
    answered)."""


class Invalid(ConsentError):
    """The request names something unknown or inconsistent; ``errors`` lists the fields."""

    def __init__(self, message: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []

"""Server-side sessions of signed-in people."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class WebSession(Model):
    """A signed-in person's session. The cookie holds a random token, and only its
    SHA-256 is stored, so a copy of the database cannot be used to take over sessions.

    ``pseudonym`` is who signed in (never their raw identifier), ``role`` is
    ``citizen`` or ``auditor``. A session ends at ``expires_at`` (absolute timeout) or
    after ``idle_until`` passes without activity.
    """

    id = fields.BigIntField(primary_key=True)
    token_hash = fields.CharField(max_length=64, unique=True)
    pseudonym = fields.CharField(max_length=64, db_index=True)
    role = fields.CharField(max_length=16)
    display_name = fields.CharField(max_length=200, null=True)
    csrf_token = fields.CharField(max_length=64)
    id_token_hint = fields.TextField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    idle_until = fields.DatetimeField()
    expires_at = fields.DatetimeField()
    ended_at = fields.DatetimeField(null=True)

    class Meta:
        table = "web_session"


class Dispute(Model):
    """A person's question about a ledger entry, for the ministry's privacy office and
    the commissioner."""

    id = fields.BigIntField(primary_key=True)
    pseudonym = fields.CharField(max_length=64, db_index=True)
    entry_index = fields.BigIntField(db_index=True)
    ministry = fields.CharField(max_length=32)
    message = fields.TextField()
    status = fields.CharField(max_length=16, default="open")
    answer = fields.TextField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    answered_at = fields.DatetimeField(null=True)

    class Meta:
        table = "dispute"


class AlertSubscription(Model):
    """A person's wish to get an e-mail when a ministry accesses their data."""

    id = fields.BigIntField(primary_key=True)
    pseudonym = fields.CharField(max_length=64, unique=True)
    email = fields.CharField(max_length=254)
    language = fields.CharField(max_length=2, default="en")
    created_at = fields.DatetimeField(auto_now_add=True)
    last_notified_index = fields.BigIntField(null=True)

    class Meta:
        table = "alert_subscription"

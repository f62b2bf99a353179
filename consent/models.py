"""Tables of the consent domain: who holds what, under which authority, with which consent.

People appear only as keyed pseudonyms (see ``ledger.entry.pseudonym``); no raw
identifier is ever stored.
"""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model


class Ministry(Model):
    """A ministry or agency of the province (e.g. MTO, the Ministry of Transportation)."""

    id = fields.IntField(primary_key=True)
    code = fields.CharField(max_length=32, unique=True)
    name_en = fields.CharField(max_length=200)
    name_fr = fields.CharField(max_length=200)
    created_at = fields.DatetimeField(auto_now_add=True)

    systems: fields.ReverseRelation[System]

    class Meta:
        table = "ministry"
        ordering = ("code",)


class System(Model):
    """A service or information system run by a ministry (e.g. OHIP, ServiceOntario)."""

    id = fields.IntField(primary_key=True)
    ministry: fields.ForeignKeyRelation[Ministry] = fields.ForeignKeyField(
        "onceonly.Ministry", related_name="systems", on_delete=fields.RESTRICT
    )
    code = fields.CharField(max_length=64, unique=True)
    name_en = fields.CharField(max_length=200)
    name_fr = fields.CharField(max_length=200)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "system"
        ordering = ("code",)


class DataCategory(Model):
    """A category of personal data, with its W3C DPV term where one exists."""

    code = fields.CharField(max_length=64, primary_key=True)
    dpv_term = fields.CharField(max_length=200, null=True)
    label_en = fields.CharField(max_length=200)
    label_fr = fields.CharField(max_length=200)

    class Meta:
        table = "data_category"
        ordering = ("code",)


class Purpose(Model):
    """A purpose of processing, with its W3C DPV term where one exists."""

    code = fields.CharField(max_length=64, primary_key=True)
    dpv_term = fields.CharField(max_length=200, null=True)
    label_en = fields.CharField(max_length=200)
    label_fr = fields.CharField(max_length=200)

    class Meta:
        table = "purpose"
        ordering = ("code",)


class LegalAuthority(Model):
    """An act and section, and the sharing it permits.

    ``permits`` is ``{"sources": [...], "recipients": [...], "categories": [...],
    "purposes": [...]}`` (ministry, category and purpose codes; ``"*"`` means any).
    ``consent_required`` says whether the person must still consent.
    """

    code = fields.CharField(max_length=64, primary_key=True)
    act = fields.CharField(max_length=200)
    section = fields.CharField(max_length=64)
    title_en = fields.CharField(max_length=300)
    title_fr = fields.CharField(max_length=300)
    permits = fields.JSONField(default=dict)
    consent_required = fields.BooleanField(default=False)

    class Meta:
        table = "legal_authority"
        ordering = ("code",)


class Holding(Model):
    """A ministry system declares it holds a category of data about a person."""

    id = fields.BigIntField(primary_key=True)
    pseudonym = fields.CharField(max_length=64, db_index=True)
    system: fields.ForeignKeyRelation[System] = fields.ForeignKeyField(
        "onceonly.System", related_name="holdings", on_delete=fields.RESTRICT
    )
    category: fields.ForeignKeyRelation[DataCategory] = fields.ForeignKeyField(
        "onceonly.DataCategory", related_name="holdings", on_delete=fields.RESTRICT
    )
    authority: fields.ForeignKeyNullableRelation[LegalAuthority] = fields.ForeignKeyField(
        "onceonly.LegalAuthority", related_name="holdings", null=True, on_delete=fields.RESTRICT
    )
    retention = fields.CharField(max_length=32, description="ISO 8601 duration, e.g. P7Y")
    registered_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "holding"
        unique_together = (("pseudonym", "system", "category"),)


class ConsentStatus(StrEnum):
    REQUESTED = "requested"
    ACTIVE = "active"
    REFUSED = "refused"
    WITHDRAWN = "withdrawn"
    EXPIRED = "expired"


class Consent(Model):
    """A person's consent to reuse data: who may receive which categories from whom, why.

    ``notice_hash`` is the SHA-256 of the exact notice text the person was shown.
    """

    id = fields.UUIDField(primary_key=True)
    pseudonym = fields.CharField(max_length=64, db_index=True)
    recipient: fields.ForeignKeyRelation[Ministry] = fields.ForeignKeyField(
        "onceonly.Ministry", related_name="consents_received", on_delete=fields.RESTRICT
    )
    sources = fields.JSONField(default=list, description="source ministry codes")
    categories = fields.JSONField(default=list, description="data category codes")
    purpose: fields.ForeignKeyRelation[Purpose] = fields.ForeignKeyField(
        "onceonly.Purpose", related_name="consents", on_delete=fields.RESTRICT
    )
    status = fields.CharEnumField(ConsentStatus, max_length=16, db_index=True)
    one_time = fields.BooleanField(default=False)
    valid_from = fields.DatetimeField()
    valid_until = fields.DatetimeField()
    notice_text = fields.TextField()
    notice_hash = fields.CharField(max_length=64)
    created_at = fields.DatetimeField(auto_now_add=True)
    decided_at = fields.DatetimeField(null=True)
    withdrawn_at = fields.DatetimeField(null=True)
    used_at = fields.DatetimeField(null=True)
    # The once-only request flow: who asked, where to send the person back, the client's
    # opaque state, and until when the person may answer.
    requested_by = fields.CharField(max_length=100, null=True, description="API client id")
    return_url = fields.CharField(max_length=500, null=True)
    state = fields.CharField(max_length=500, null=True)
    request_expires_at = fields.DatetimeField(null=True)

    class Meta:
        table = "consent"
        ordering = ("-created_at",)


class IdempotencyRecord(Model):
    """The first answer to a POST with an Idempotency-Key, replayed for retries."""

    id = fields.BigIntField(primary_key=True)
    client_id = fields.CharField(max_length=100)
    key = fields.CharField(max_length=200)
    request_hash = fields.CharField(max_length=64)
    status_code = fields.SmallIntField(null=True, description="null while in progress")
    response = fields.TextField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "idempotency_record"
        unique_together = (("client_id", "key"),)


class Notification(Model):
    """A revocation notice to a ministry (the durable outbox behind signed webhooks).

    Delivered by webhook with retries and backoff until acknowledged; ministries can
    also poll for them.
    """

    id = fields.BigIntField(primary_key=True)
    ministry: fields.ForeignKeyRelation[Ministry] = fields.ForeignKeyField(
        "onceonly.Ministry", related_name="notifications", on_delete=fields.RESTRICT
    )
    event = fields.CharField(max_length=32)
    consent: fields.ForeignKeyRelation[Consent] = fields.ForeignKeyField(
        "onceonly.Consent", related_name="notifications", on_delete=fields.RESTRICT
    )
    payload = fields.JSONField()
    created_at = fields.DatetimeField(auto_now_add=True)
    attempts = fields.IntField(default=0)
    next_attempt_at = fields.DatetimeField(null=True, db_index=True)
    last_status = fields.IntField(null=True)
    last_error = fields.CharField(max_length=300, null=True)
    acknowledged_at = fields.DatetimeField(null=True)

    class Meta:
        table = "notification"
        ordering = ("id",)

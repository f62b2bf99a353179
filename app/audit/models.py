"""What the audit portal records: every auditor search, verification runs, reviews."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class AuditAccess(Model):
    """One look by an auditor (who looked at what), as data integration units must keep."""

    id = fields.BigIntField(primary_key=True)
    auditor = fields.CharField(max_length=64, db_index=True, description="auditor pseudonym")
    action = fields.CharField(max_length=32)
    query = fields.JSONField(default=dict)
    created_at = fields.DatetimeField(auto_now_add=True, db_index=True)

    class Meta:
        table = "audit_access"


class VerificationRun(Model):
    """A full verification of the ledger started from the audit portal, and its result."""

    id = fields.BigIntField(primary_key=True)
    requested_by = fields.CharField(max_length=64)
    status = fields.CharField(max_length=16, default="running")
    checked = fields.BigIntField(default=0)
    total = fields.BigIntField(default=0)
    report = fields.JSONField(null=True)
    started_at = fields.DatetimeField(auto_now_add=True)
    finished_at = fields.DatetimeField(null=True)

    class Meta:
        table = "verification_run"


class HiddenReview(Model):
    """An auditor requires the ministry to review a hidden entry by a date."""

    id = fields.BigIntField(primary_key=True)
    entry_index = fields.BigIntField(db_index=True)
    required_by = fields.CharField(max_length=64)
    review_by = fields.DateField()
    note = fields.TextField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "hidden_review"

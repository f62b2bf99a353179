from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from tortoise import fields


class Migration(migrations.Migration):
    dependencies = [("onceonly", "0004_portal")]

    initial = False

    operations = [
        ops.CreateModel(
            name="AuditAccess",
            fields=[
                (
                    "id",
                    fields.BigIntField(
                        generated=True, primary_key=True, unique=True, db_index=True
                    ),
                ),
                (
                    "auditor",
                    fields.CharField(db_index=True, description="auditor pseudonym", max_length=64),
                ),
                ("action", fields.CharField(max_length=32)),
                (
                    "query",
                    fields.JSONField(
                        default=dict,
                        encoder=functools.partial(dumps, separators=(",", ":")),
                        decoder=loads,
                    ),
                ),
                (
                    "created_at",
                    fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=True),
                ),
            ],
            options={
                "table": "audit_access",
                "app": "onceonly",
                "pk_attr": "id",
                "table_description": "One look by an auditor (who looked at what), as data integration units must keep.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="HiddenReview",
            fields=[
                (
                    "id",
                    fields.BigIntField(
                        generated=True, primary_key=True, unique=True, db_index=True
                    ),
                ),
                ("entry_index", fields.BigIntField(db_index=True)),
                ("required_by", fields.CharField(max_length=64)),
                ("review_by", fields.DateField()),
                ("note", fields.TextField(null=True, unique=False)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "hidden_review",
                "app": "onceonly",
                "pk_attr": "id",
                "table_description": "An auditor requires the ministry to review a hidden entry by a date.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="LedgerCosignature",
            fields=[
                (
                    "id",
                    fields.BigIntField(
                        generated=True, primary_key=True, unique=True, db_index=True
                    ),
                ),
                ("size", fields.BigIntField(db_index=True)),
                ("witness", fields.CharField(max_length=200)),
                ("line", fields.TextField(unique=False)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "ledger_cosignature",
                "app": "onceonly",
                "unique_together": (("size", "witness"),),
                "pk_attr": "id",
                "table_description": "A witness's cosignature (C2SP tlog-cosignature) of the checkpoint of ``size``,",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="VerificationRun",
            fields=[
                (
                    "id",
                    fields.BigIntField(
                        generated=True, primary_key=True, unique=True, db_index=True
                    ),
                ),
                ("requested_by", fields.CharField(max_length=64)),
                ("status", fields.CharField(default="running", max_length=16)),
                ("checked", fields.BigIntField(default=0)),
                ("total", fields.BigIntField(default=0)),
                (
                    "report",
                    fields.JSONField(
                        null=True,
                        encoder=functools.partial(dumps, separators=(",", ":")),
                        decoder=loads,
                    ),
                ),
                ("started_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                (
                    "finished_at",
                    fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
                ),
            ],
            options={
                "table": "verification_run",
                "app": "onceonly",
                "pk_attr": "id",
                "table_description": "A full verification of the ledger started from the audit portal, and its result.",
            },
            bases=["Model"],
        ),
    ]

from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from consent.models import ConsentStatus
from json import dumps, loads
from tortoise.fields.base import OnDelete
from uuid import uuid4
from tortoise import fields
from tortoise.indexes import Index


class Migration(migrations.Migration):
    initial = True

    operations = [
        ops.CreateModel(
            name="DataCategory",
            fields=[
                (
                    "code",
                    fields.CharField(primary_key=True, unique=True, db_index=True, max_length=64),
                ),
                ("dpv_term", fields.CharField(null=True, max_length=200)),
                ("label_en", fields.CharField(max_length=200)),
                ("label_fr", fields.CharField(max_length=200)),
            ],
            options={
                "table": "data_category",
                "app": "onceonly",
                "pk_attr": "code",
                "table_description": "A category of personal data, with its W3C DPV term where one exists.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="LedgerCheckpoint",
            fields=[
                ("size", fields.BigIntField(primary_key=True, unique=True, db_index=True)),
                ("root_hash", fields.BinaryField()),
                ("note", fields.TextField(unique=False)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "ledger_checkpoint",
                "app": "onceonly",
                "pk_attr": "size",
                "table_description": "A signed checkpoint (C2SP signed note) of the tree at ``size``.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="LedgerEntry",
            fields=[
                ("idx", fields.BigIntField(primary_key=True, unique=True, db_index=True)),
                ("leaf", fields.BinaryField()),
                ("leaf_hash", fields.BinaryField()),
                ("entry_type", fields.CharField(max_length=32)),
                ("time", fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ("actor_org", fields.CharField(max_length=32)),
                ("actor_system", fields.CharField(max_length=64)),
                ("purpose", fields.CharField(max_length=64)),
                ("basis_kind", fields.CharField(max_length=16)),
                ("basis_ref", fields.CharField(max_length=64)),
                ("query_id", fields.CharField(null=True, max_length=64)),
                ("case_id", fields.CharField(null=True, max_length=64)),
                ("bulk_job_id", fields.CharField(null=True, max_length=64)),
                ("hidden_until", fields.DateField(null=True)),
            ],
            options={
                "table": "ledger_entry",
                "app": "onceonly",
                "indexes": [
                    Index(fields=["actor_org", "idx"]),
                    Index(fields=["time"]),
                    Index(fields=["query_id"]),
                    Index(fields=["case_id"]),
                    Index(fields=["bulk_job_id"]),
                ],
                "pk_attr": "idx",
                "table_description": "One leaf of the log: the exact canonical bytes and a few columns copied out of",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="LedgerOpening",
            fields=[
                ("idx", fields.BigIntField(primary_key=True, unique=True, db_index=True)),
                ("pseudonym", fields.CharField(max_length=64)),
                ("opening", fields.BinaryField()),
            ],
            options={
                "table": "ledger_opening",
                "app": "onceonly",
                "indexes": [Index(fields=["pseudonym", "idx"])],
                "pk_attr": "idx",
                "table_description": "The secret that opens an entry's person commitment, and the person's pseudonym.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="LedgerTile",
            fields=[
                (
                    "id",
                    fields.BigIntField(
                        generated=True, primary_key=True, unique=True, db_index=True
                    ),
                ),
                ("level", fields.SmallIntField()),
                ("number", fields.BigIntField()),
                ("hashes", fields.BinaryField()),
            ],
            options={
                "table": "ledger_tile",
                "app": "onceonly",
                "unique_together": (("level", "number"),),
                "pk_attr": "id",
                "table_description": "Stored hashes of the tree in C2SP tlog-tiles shape (height 8).",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="LegalAuthority",
            fields=[
                (
                    "code",
                    fields.CharField(primary_key=True, unique=True, db_index=True, max_length=64),
                ),
                ("act", fields.CharField(max_length=200)),
                ("section", fields.CharField(max_length=64)),
                ("title_en", fields.CharField(max_length=300)),
                ("title_fr", fields.CharField(max_length=300)),
                (
                    "permits",
                    fields.JSONField(
                        default=dict,
                        encoder=functools.partial(dumps, separators=(",", ":")),
                        decoder=loads,
                    ),
                ),
                ("consent_required", fields.BooleanField(default=False)),
            ],
            options={
                "table": "legal_authority",
                "app": "onceonly",
                "pk_attr": "code",
                "table_description": "An act and section, and the sharing it permits.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="Ministry",
            fields=[
                (
                    "id",
                    fields.IntField(generated=True, primary_key=True, unique=True, db_index=True),
                ),
                ("code", fields.CharField(unique=True, max_length=32)),
                ("name_en", fields.CharField(max_length=200)),
                ("name_fr", fields.CharField(max_length=200)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "ministry",
                "app": "onceonly",
                "pk_attr": "id",
                "table_description": "A ministry or agency of the province (e.g. MTO, the Ministry of Transportation).",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="Purpose",
            fields=[
                (
                    "code",
                    fields.CharField(primary_key=True, unique=True, db_index=True, max_length=64),
                ),
                ("dpv_term", fields.CharField(null=True, max_length=200)),
                ("label_en", fields.CharField(max_length=200)),
                ("label_fr", fields.CharField(max_length=200)),
            ],
            options={
                "table": "purpose",
                "app": "onceonly",
                "pk_attr": "code",
                "table_description": "A purpose of processing, with its W3C DPV term where one exists.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="Consent",
            fields=[
                (
                    "id",
                    fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True),
                ),
                ("pseudonym", fields.CharField(db_index=True, max_length=64)),
                (
                    "recipient",
                    fields.ForeignKeyField(
                        "onceonly.Ministry",
                        source_field="recipient_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="consents_received",
                        on_delete=OnDelete.RESTRICT,
                    ),
                ),
                (
                    "sources",
                    fields.JSONField(
                        default=list,
                        description="source ministry codes",
                        encoder=functools.partial(dumps, separators=(",", ":")),
                        decoder=loads,
                    ),
                ),
                (
                    "categories",
                    fields.JSONField(
                        default=list,
                        description="data category codes",
                        encoder=functools.partial(dumps, separators=(",", ":")),
                        decoder=loads,
                    ),
                ),
                (
                    "purpose",
                    fields.ForeignKeyField(
                        "onceonly.Purpose",
                        source_field="purpose_id",
                        db_constraint=True,
                        to_field="code",
                        related_name="consents",
                        on_delete=OnDelete.RESTRICT,
                    ),
                ),
                (
                    "status",
                    fields.CharEnumField(
                        db_index=True,
                        description="REQUESTED: requested\nACTIVE: active\nREFUSED: refused\nWITHDRAWN: withdrawn\nEXPIRED: expired",
                        enum_type=ConsentStatus,
                        max_length=16,
                    ),
                ),
                ("one_time", fields.BooleanField(default=False)),
                ("valid_from", fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ("valid_until", fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ("notice_text", fields.TextField(unique=False)),
                ("notice_hash", fields.CharField(max_length=64)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("decided_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                (
                    "withdrawn_at",
                    fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
                ),
                ("used_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={
                "table": "consent",
                "app": "onceonly",
                "pk_attr": "id",
                "table_description": "A person's consent to reuse data: who may receive which categories from whom, why.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="System",
            fields=[
                (
                    "id",
                    fields.IntField(generated=True, primary_key=True, unique=True, db_index=True),
                ),
                (
                    "ministry",
                    fields.ForeignKeyField(
                        "onceonly.Ministry",
                        source_field="ministry_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="systems",
                        on_delete=OnDelete.RESTRICT,
                    ),
                ),
                ("code", fields.CharField(unique=True, max_length=64)),
                ("name_en", fields.CharField(max_length=200)),
                ("name_fr", fields.CharField(max_length=200)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "system",
                "app": "onceonly",
                "pk_attr": "id",
                "table_description": "A service or information system run by a ministry (e.g. OHIP, ServiceOntario).",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="Holding",
            fields=[
                (
                    "id",
                    fields.BigIntField(
                        generated=True, primary_key=True, unique=True, db_index=True
                    ),
                ),
                ("pseudonym", fields.CharField(db_index=True, max_length=64)),
                (
                    "system",
                    fields.ForeignKeyField(
                        "onceonly.System",
                        source_field="system_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="holdings",
                        on_delete=OnDelete.RESTRICT,
                    ),
                ),
                (
                    "category",
                    fields.ForeignKeyField(
                        "onceonly.DataCategory",
                        source_field="category_id",
                        db_constraint=True,
                        to_field="code",
                        related_name="holdings",
                        on_delete=OnDelete.RESTRICT,
                    ),
                ),
                (
                    "authority",
                    fields.ForeignKeyField(
                        "onceonly.LegalAuthority",
                        source_field="authority_id",
                        null=True,
                        db_constraint=True,
                        to_field="code",
                        related_name="holdings",
                        on_delete=OnDelete.RESTRICT,
                    ),
                ),
                (
                    "retention",
                    fields.CharField(description="ISO 8601 duration, e.g. P7Y", max_length=32),
                ),
                ("registered_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "holding",
                "app": "onceonly",
                "unique_together": (("pseudonym", "system", "category"),),
                "pk_attr": "id",
                "table_description": "A ministry system declares it holds a category of data about a person.",
            },
            bases=["Model"],
        ),
    ]

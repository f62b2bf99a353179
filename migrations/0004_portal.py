from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields


class Migration(migrations.Migration):
    dependencies = [("onceonly", "0003_consent_api")]

    initial = False

    operations = [
        ops.CreateModel(
            name="AlertSubscription",
            fields=[
                (
                    "id",
                    fields.BigIntField(
                        generated=True, primary_key=True, unique=True, db_index=True
                    ),
                ),
                ("pseudonym", fields.CharField(unique=True, max_length=64)),
                ("email", fields.CharField(max_length=254)),
                ("language", fields.CharField(default="en", max_length=2)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("last_notified_index", fields.BigIntField(null=True)),
            ],
            options={
                "table": "alert_subscription",
                "app": "onceonly",
                "pk_attr": "id",
                "table_description": "A person's wish to get an e-mail when a ministry accesses their data.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="Dispute",
            fields=[
                (
                    "id",
                    fields.BigIntField(
                        generated=True, primary_key=True, unique=True, db_index=True
                    ),
                ),
                ("pseudonym", fields.CharField(db_index=True, max_length=64)),
                ("entry_index", fields.BigIntField(db_index=True)),
                ("ministry", fields.CharField(max_length=32)),
                ("message", fields.TextField(unique=False)),
                ("status", fields.CharField(default="open", max_length=16)),
                ("answer", fields.TextField(null=True, unique=False)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                (
                    "answered_at",
                    fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
                ),
            ],
            options={
                "table": "dispute",
                "app": "onceonly",
                "pk_attr": "id",
                "table_description": "A person's question about a ledger entry, for the ministry's privacy office and",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="WebSession",
            fields=[
                (
                    "id",
                    fields.BigIntField(
                        generated=True, primary_key=True, unique=True, db_index=True
                    ),
                ),
                ("token_hash", fields.CharField(unique=True, max_length=64)),
                ("pseudonym", fields.CharField(db_index=True, max_length=64)),
                ("role", fields.CharField(max_length=16)),
                ("display_name", fields.CharField(null=True, max_length=200)),
                ("csrf_token", fields.CharField(max_length=64)),
                ("id_token_hint", fields.TextField(null=True, unique=False)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("idle_until", fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ("expires_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ("ended_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={
                "table": "web_session",
                "app": "onceonly",
                "pk_attr": "id",
                "table_description": "A signed-in person's session. The cookie holds a random token, and only its",
            },
            bases=["Model"],
        ),
    ]

from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from app.oauth.models import ClientAuthMethod
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields


class Migration(migrations.Migration):
    dependencies = [("onceonly", "0002_ledger_append_only")]

    initial = False

    operations = [
        ops.CreateModel(
            name="ApiClient",
            fields=[
                (
                    "id",
                    fields.IntField(generated=True, primary_key=True, unique=True, db_index=True),
                ),
                ("client_id", fields.CharField(unique=True, max_length=100)),
                ("name", fields.CharField(max_length=200)),
                (
                    "ministry",
                    fields.ForeignKeyField(
                        "onceonly.Ministry",
                        source_field="ministry_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="api_clients",
                        on_delete=OnDelete.RESTRICT,
                    ),
                ),
                (
                    "system",
                    fields.ForeignKeyField(
                        "onceonly.System",
                        source_field="system_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="api_clients",
                        on_delete=OnDelete.RESTRICT,
                    ),
                ),
                (
                    "auth_method",
                    fields.CharEnumField(
                        description="PRIVATE_KEY_JWT: private_key_jwt\nCLIENT_SECRET_BASIC: client_secret_basic",
                        enum_type=ClientAuthMethod,
                        max_length=32,
                    ),
                ),
                ("secret_hash", fields.CharField(null=True, max_length=255)),
                (
                    "jwks",
                    fields.JSONField(
                        null=True,
                        encoder=functools.partial(dumps, separators=(",", ":")),
                        decoder=loads,
                    ),
                ),
                (
                    "scopes",
                    fields.JSONField(
                        default=list,
                        encoder=functools.partial(dumps, separators=(",", ":")),
                        decoder=loads,
                    ),
                ),
                ("webhook_url", fields.CharField(null=True, max_length=500)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                (
                    "disabled_at",
                    fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
                ),
            ],
            options={
                "table": "api_client",
                "app": "onceonly",
                "pk_attr": "id",
                "table_description": "A ministry system allowed to obtain access tokens (client credentials grant).",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="IdempotencyRecord",
            fields=[
                (
                    "id",
                    fields.BigIntField(
                        generated=True, primary_key=True, unique=True, db_index=True
                    ),
                ),
                ("client_id", fields.CharField(max_length=100)),
                ("key", fields.CharField(max_length=200)),
                ("request_hash", fields.CharField(max_length=64)),
                (
                    "status_code",
                    fields.SmallIntField(null=True, description="null while in progress"),
                ),
                ("response", fields.TextField(null=True, unique=False)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "idempotency_record",
                "app": "onceonly",
                "unique_together": (("client_id", "key"),),
                "pk_attr": "id",
                "table_description": "The first answer to a POST with an Idempotency-Key, replayed for retries.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="Notification",
            fields=[
                (
                    "id",
                    fields.BigIntField(
                        generated=True, primary_key=True, unique=True, db_index=True
                    ),
                ),
                (
                    "ministry",
                    fields.ForeignKeyField(
                        "onceonly.Ministry",
                        source_field="ministry_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="notifications",
                        on_delete=OnDelete.RESTRICT,
                    ),
                ),
                ("event", fields.CharField(max_length=32)),
                (
                    "consent",
                    fields.ForeignKeyField(
                        "onceonly.Consent",
                        source_field="consent_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="notifications",
                        on_delete=OnDelete.RESTRICT,
                    ),
                ),
                (
                    "payload",
                    fields.JSONField(
                        encoder=functools.partial(dumps, separators=(",", ":")), decoder=loads
                    ),
                ),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("attempts", fields.IntField(default=0)),
                (
                    "next_attempt_at",
                    fields.DatetimeField(
                        null=True, db_index=True, auto_now=False, auto_now_add=False
                    ),
                ),
                ("last_status", fields.IntField(null=True)),
                ("last_error", fields.CharField(null=True, max_length=300)),
                (
                    "acknowledged_at",
                    fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
                ),
            ],
            options={
                "table": "notification",
                "app": "onceonly",
                "pk_attr": "id",
                "table_description": "A revocation notice to a ministry (the durable outbox behind signed webhooks).",
            },
            bases=["Model"],
        ),
        ops.AddField(
            model_name="Consent",
            name="request_expires_at",
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name="Consent",
            name="requested_by",
            field=fields.CharField(null=True, description="API client id", max_length=100),
        ),
        ops.AddField(
            model_name="Consent",
            name="return_url",
            field=fields.CharField(null=True, max_length=500),
        ),
        ops.AddField(
            model_name="Consent",
            name="state",
            field=fields.CharField(null=True, max_length=500),
        ),
    ]

"""Registered API clients: ministry systems that call the JSON API."""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model

from consent.models import Ministry, System


class ClientAuthMethod(StrEnum):
    PRIVATE_KEY_JWT = "private_key_jwt"
    CLIENT_SECRET_BASIC = "client_secret_basic"  # noqa: S105 - a method name, not a secret


class ApiClient(Model):
    """A ministry system allowed to obtain access tokens (client credentials grant).

    ``secret_hash`` is set for client_secret_basic (never the secret itself); ``jwks``
    holds the client's public keys for private_key_jwt. ``scopes`` lists what the client
    may ask for. A disabled client gets no token and its tokens stop working.
    """

    id = fields.IntField(primary_key=True)
    client_id = fields.CharField(max_length=100, unique=True)
    name = fields.CharField(max_length=200)
    ministry: fields.ForeignKeyRelation[Ministry] = fields.ForeignKeyField(
        "onceonly.Ministry", related_name="api_clients", on_delete=fields.RESTRICT
    )
    system: fields.ForeignKeyRelation[System] = fields.ForeignKeyField(
        "onceonly.System", related_name="api_clients", on_delete=fields.RESTRICT
    )
    auth_method = fields.CharEnumField(ClientAuthMethod, max_length=32)
    secret_hash = fields.CharField(max_length=255, null=True)
    jwks = fields.JSONField(null=True)
    scopes = fields.JSONField(default=list)
    webhook_url = fields.CharField(max_length=500, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    disabled_at = fields.DatetimeField(null=True)

    class Meta:
        table = "api_client"
        ordering = ("client_id",)

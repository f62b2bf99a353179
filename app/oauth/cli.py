"""``onceonly clients``: register, list and disable the ministry systems that call the API.

    onceonly clients add --ministry MTO --system driver-licensing --name "..." \\
        --scopes access:check,consent:request \\
        [--auth private_key_jwt --jwks FILE | --auth client_secret_basic] [--webhook-url URL]
    onceonly clients list
    onceonly clients disable CLIENT_ID

``add`` prints what the ministry configures on its side: the client_id, the secret
(``client_secret_basic`` only, shown this once and stored only as a hash), the token
endpoint, the issuer and audience of the tokens, and the JWK Set URL.

A mistake ends with one ``onceonly: error: ...`` line and exit 1. These handlers print
that line themselves rather than raise ``app.cli.CommandError``: under
``python -m app.cli`` the running module is ``__main__``, and an ``app.cli`` imported
from here would be a second module whose CommandError ``main`` does not catch.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from app.oauth.models import ApiClient
    from app.settings import Settings

EXIT_OK = 0
EXIT_FAILURE = 1
MAX_JWKS_FILE = 64 * 1024

T = TypeVar("T")
Handler = Callable[["Settings", argparse.Namespace], int]


class _Stop(Exception):
    """A clients command cannot go on; the message is the one line to print."""


def add_commands(commands: argparse._SubParsersAction[Any]) -> None:
    """Register ``clients`` and its subcommands on the ``onceonly`` command's subparsers."""
    clients = commands.add_parser("clients", help="register, list and disable API clients")
    actions = clients.add_subparsers(dest="clients_command", metavar="ACTION", required=True)

    add = actions.add_parser(
        "add",
        help="register a ministry system as an API client",
        description="Register a client for the OAuth 2.0 client credentials grant and print "
        "what the ministry needs to configure.",
    )
    add.add_argument("--ministry", required=True, help="ministry code, e.g. MTO")
    add.add_argument("--system", required=True, help="system code, e.g. driver-licensing")
    add.add_argument("--name", required=True, help="a name people recognise")
    add.add_argument(
        "--scopes", required=True, help="comma-separated scopes, e.g. access:check,consent:request"
    )
    add.add_argument(
        "--auth",
        choices=["private_key_jwt", "client_secret_basic"],
        default="private_key_jwt",
        help="client authentication (default private_key_jwt, which needs --jwks)",
    )
    add.add_argument(
        "--jwks", type=Path, metavar="FILE", help="JWK Set of the client's public keys"
    )
    add.add_argument("--webhook-url", help="where revocation notices are delivered (https)")
    add.set_defaults(handler=_guarded(_add))

    listing = actions.add_parser("list", help="list every client")
    listing.set_defaults(handler=_guarded(_list))

    disable = actions.add_parser("disable", help="disable a client and its tokens")
    disable.add_argument("client_id", metavar="CLIENT_ID")
    disable.set_defaults(handler=_guarded(_disable))


def _guarded(handler: Handler) -> Handler:
    """Run a handler; turn the errors a person can act on into one line and exit 1."""

    def run(settings: Settings, args: argparse.Namespace) -> int:
        from app.oauth.clients import ClientError

        try:
            return handler(settings, args)
        except (_Stop, ClientError) as exc:
            print(f"onceonly: error: {exc}", file=sys.stderr)
            return EXIT_FAILURE

    return run


def _with_database(settings: Settings, work: Callable[[], Awaitable[T]]) -> T:
    """Open the (migrated) database, run ``work``, close it."""
    from app.db import close_database, open_database
    from app.schema import pending_migrations

    async def go() -> T:
        await open_database(settings, global_fallback=False)
        try:
            pending = await pending_migrations()
            if pending:
                raise _Stop(
                    f"the database is not migrated ({len(pending)} pending); "
                    "run `onceonly migrate` first"
                )
            return await work()
        finally:
            await close_database()

    return asyncio.run(go())


def _add(settings: Settings, args: argparse.Namespace) -> int:
    from app.oauth.clients import register_client

    if args.auth == "private_key_jwt" and args.jwks is None:
        raise _Stop("--auth private_key_jwt needs --jwks FILE (the client's public keys)")
    if args.auth == "client_secret_basic" and args.jwks is not None:
        raise _Stop("--jwks is for --auth private_key_jwt; client_secret_basic has no keys")
    jwks = _read_jwks(args.jwks) if args.jwks is not None else None

    async def add() -> tuple[ApiClient, str | None]:
        return await register_client(
            args.ministry,
            args.system,
            args.name,
            args.auth,
            args.scopes.split(","),
            jwks=jwks,
            webhook_url=args.webhook_url,
        )

    client, secret = _with_database(settings, add)
    _print_configuration(settings, client, secret)
    return EXIT_OK


def _read_jwks(path: Path) -> Any:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_JWKS_FILE + 1)
    except OSError as exc:
        raise _Stop(f"cannot read the JWK Set {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_JWKS_FILE:
        raise _Stop(f"the JWK Set {path} is larger than {MAX_JWKS_FILE} bytes")
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _Stop(f"the JWK Set {path} is not JSON: {exc}") from None


def _print_configuration(settings: Settings, client: ApiClient, secret: str | None) -> None:
    from app.oauth.server import issuer_url, jwks_url, metadata_url, token_endpoint_url
    from app.oauth.tokens import api_audience

    rows = [
        ("client_id", client.client_id),
        ("client_secret", secret),
        ("auth method", client.auth_method.value),
        ("ministry", client.ministry.code),
        ("system", client.system.code),
        ("scopes", " ".join(client.scopes)),
        ("token endpoint", token_endpoint_url(settings)),
        ("issuer", issuer_url(settings)),
        ("audience", api_audience(settings)),
        ("jwks_uri", jwks_url(settings)),
        ("metadata", metadata_url(settings)),
    ]
    if client.webhook_url:
        rows.append(("webhook", client.webhook_url))
    print(f"registered client {client.client_id}")
    for label, value in rows:
        if value is not None:
            print(f"  {label + ':':<16}{value}")
    if secret is not None:
        print("The client secret is shown this once; Onceonly keeps only a hash of it.")
        print("Send it with HTTP Basic (client_secret_basic) to the token endpoint.")


def _list(settings: Settings, args: argparse.Namespace) -> int:
    from app.oauth.clients import list_clients

    clients = _with_database(settings, list_clients)
    if not clients:
        print("no clients")
        return EXIT_OK
    header = ("CLIENT_ID", "MINISTRY", "SYSTEM", "AUTH", "SCOPES", "STATUS")
    rows = [header] + [
        (
            c.client_id,
            c.ministry.code,
            c.system.code,
            c.auth_method.value,
            ",".join(c.scopes),
            "active" if c.disabled_at is None else f"disabled {c.disabled_at:%Y-%m-%d}",
        )
        for c in clients
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    return EXIT_OK


def _disable(settings: Settings, args: argparse.Namespace) -> int:
    from app.oauth.clients import disable_client

    async def disable() -> ApiClient:
        return await disable_client(args.client_id)

    client = _with_database(settings, disable)
    print(f"disabled {client.client_id} (since {client.disabled_at:%Y-%m-%d %H:%M:%S} UTC)")
    return EXIT_OK

"""The ``onceonly`` command: serve, migrate, seed, and the operator's other tools.

A user mistake (bad setting, unreachable database, port in use) ends with one line on
standard error and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
import socket
import sys
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any

from app import backup_cli, keys_cli, ledger_cli, witness_cli
from app.db import DatabaseError, close_database, open_database
from app.keyfiles import KeyFileError
from app.logs import configure_logging, logging_config
from app.oauth import cli as clients_cli
from app.settings import Settings, SettingsError

EXIT_USAGE = 2
EXIT_FAILURE = 1


class CommandError(Exception):
    """A command failed for a reason the user can act on; the message says which."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="onceonly",
        description="Onceonly: once-only consent and data-use transparency.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser("serve", help="serve the web application")
    serve.add_argument("--host", help="address to listen on (default ONCEONLY_HOST)")
    serve.add_argument("--port", type=int, help="port to listen on (default ONCEONLY_PORT)")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes (default 1; the demo sign-in provider needs 1)",
    )
    serve.set_defaults(handler=_serve)

    migrate = commands.add_parser("migrate", help="apply database migrations")
    migrate.set_defaults(handler=_migrate)

    seed = commands.add_parser("seed", help="load reference or demo data")
    seed.add_argument(
        "--demo", action="store_true", help="also load demo residents and their activity"
    )
    seed.set_defaults(handler=_seed)
    ledger_cli.add_commands(commands)
    clients_cli.add_commands(commands)
    witness_cli.add_commands(commands)
    keys_cli.add_commands(commands)
    backup_cli.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env(os.environ if environ is None else environ)
        configure_logging(settings, "json" if args.command == "serve" else "text")
        return args.handler(settings, args)
    except (SettingsError, DatabaseError, KeyFileError, CommandError) as exc:
        print(f"onceonly: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130


def run(coro_fn: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return asyncio.run(coro_fn())


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    from app.schema import apply_migrations

    applied = run(lambda: apply_migrations(settings))
    if applied:
        for name in applied:
            print(f"applied {name}")
    else:
        print("database is up to date")
    return 0


def _seed(settings: Settings, args: argparse.Namespace) -> int:
    from app.seed import seed_demo, seed_reference
    from app.services import open_services

    async def go() -> dict[str, int]:
        await open_database(settings, global_fallback=False)
        try:
            await _require_migrated()
        finally:
            await close_database()
        services = await open_services(settings)
        try:
            counts = await seed_reference()
            if args.demo:
                counts.update(await seed_demo(settings, services.ledger))
            return counts
        finally:
            await services.close()

    counts = run(go)
    print("seeded: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


async def _require_migrated() -> None:
    from app.schema import pending_migrations

    pending = await pending_migrations()
    if pending:
        raise CommandError(
            f"the database is not migrated ({len(pending)} pending); run `onceonly migrate` first"
        )


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    host = args.host or settings.host
    port = args.port if args.port is not None else settings.port
    if not 0 < port < 65536:
        raise CommandError(f"--port must be from 1 to 65535, not {port}")

    from app.keys import ledger_keys, receipt_key
    from app.oauth.keys import token_key_ring

    # A key that is missing its file permissions or does not fit the log stops us here,
    # with one line, rather than in the middle of start-up or at the first request.
    ledger_keys(settings)  # with keys.json, the keys a rotation retired
    token_key_ring(settings)
    receipt_key(settings)

    async def check() -> None:
        await open_database(settings, global_fallback=False)
        try:
            await _require_migrated()
        finally:
            await close_database()

    run(check)
    if settings.metrics_multiprocess_dir is not None:
        _clear_metrics(settings.metrics_multiprocess_dir)
    sock = _bind(host, port)
    settings_env = {"ONCEONLY_HOST": host, "ONCEONLY_PORT": str(port)}
    os.environ.update(settings_env)
    from app.limits import ServerConfig

    # The header, keep-alive, connection and proxy limits of settings.limits.
    config = ServerConfig(
        "app.asgi:app",
        limits=settings.limits,
        # JSON lines with request ids in this process and every worker (app.logs);
        # app.request_context writes the access lines instead of uvicorn.
        log_config=logging_config(settings, "json"),
        log_level=None,
        access_log=False,
        workers=args.workers,
        proxy_headers=True,
        server_header=False,
        lifespan="on",
    )
    print(f"Onceonly is serving on http://{_url_host(host)}:{port}/", flush=True)
    if args.workers > 1:
        # The ledger's database lock keeps the workers' appends in one order.
        _serve_workers(config, sock)
    else:
        uvicorn.Server(config).run(sockets=[sock])
    return 0


def _serve_workers(config: Any, sock: socket.socket) -> None:
    from uvicorn.supervisors import Multiprocess

    from app.workers import BalancedWorkers, bind_shared, reuse_port_supported

    if not reuse_port_supported():
        Multiprocess(config, sockets=[sock]).run()  # every worker accepts on one socket
        return
    # The port was bound above without SO_REUSEPORT, so one that another server already
    # uses was refused; now each worker gets a socket of its own (app.workers).
    family, address = sock.family, sock.getsockname()
    sock.close()
    try:
        first = bind_shared(family, address, config.backlog)
    except OSError as exc:
        raise CommandError(f"cannot listen on {_url_host(address[0])}: {exc.strerror}") from None
    BalancedWorkers(config, first).run()


def _clear_metrics(directory: Path) -> None:
    from app.metrics import clear_multiprocess_dir

    if not directory.is_dir():
        raise CommandError(
            f"PROMETHEUS_MULTIPROC_DIR must be an existing folder the server can write to, "
            f"not {str(directory)!r}"
        )
    try:
        clear_multiprocess_dir(directory)  # the counters of an earlier run
    except OSError as exc:
        raise CommandError(f"cannot empty PROMETHEUS_MULTIPROC_DIR: {exc.strerror}") from None


def _bind(host: str, port: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise CommandError(f"cannot listen on {host}: unknown host") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise CommandError(f"port {port} on {host} is already in use") from None
        raise CommandError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


if __name__ == "__main__":
    # Run the imported module's main, not this __main__ copy, so that subcommand modules
    # importing app.cli share its exception classes.
    from app.cli import main as cli_main

    sys.exit(cli_main())

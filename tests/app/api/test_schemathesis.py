"""The OpenAPI document against the running API: schemathesis fuzzes every operation.

A real uvicorn server runs the app in a thread with its own event loop (the ledger and
the ORM belong to that loop). Schemathesis sends it valid and invalid requests with a
token granting every ministry scope (the audit API gets the commissioner's token, as an
audit client holds no other scope) and checks each answer against the document served
at /api/v1/openapi.json: no server error, and a documented status code, content type,
headers and body; invalid requests must be refused. Valid requests are steered towards
codes and ids that exist, so they get past the lookups and reach the ledger too.

Every request also checks that a refused request wrote nothing: the ledger and the
domain tables only grow for a 200 or 201 answer.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import hypothesis
import pytest
import requests
import schemathesis
import uvicorn
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from schemathesis import Case, CheckContext, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.main import create_app
from app.oauth.clients import register_client
from app.seed import seed_reference
from app.services import Services, open_services
from consent.identity import Actor
from consent.lifecycle import ConsentTerms, answer_request, create_request, withdraw
from consent.models import Consent, Holding, Notification
from ledger.models import LedgerEntry
from tests.app.api.conftest import ALL_SCOPES
from tests.conftest import Database
from tests.support import make_settings

#: Examples per operation and generation mode: as many valid as invalid requests.
EXAMPLES = 25
#: Codes of the seeded reference data that a valid request may be steered to.
KNOWN_CODES: dict[str, list[Any]] = {
    "recipient": ["MTO", "MPBSDP"],
    "purpose": ["licence-renewal", "service-provision"],
    "category": ["address", "name"],
    "authority": ["FIPPA-42-1-b", "HTA-205"],
    "sources": [["MPBSDP"], ["MPBSDP", "FIN"]],
    "categories": [["address"], ["address", "name"]],
}
MOMENTS = ("valid_from", "valid_until", "answer_by")
#: Invalid data must be refused with one of the client errors the document declares
#: (413 included: a body over the size limit is refused before it is read).
REFUSALS = ["400", "401", "403", "404", "409", "413", "415", "422", "429"]
T = TypeVar("T")


@dataclass(frozen=True)
class Snapshot:
    """What a refused request must leave as it was."""

    ledger_size: int
    ledger_entries: int
    holdings: int
    consents: int
    notifications: int


@dataclass
class Known:
    """Ids that exist in the seeded database (some not visible to the caller)."""

    consent_ids: list[str] = field(default_factory=list)
    notification_ids: list[int] = field(default_factory=list)
    entry_indices: list[int] = field(default_factory=list)


class ApiServer:
    """The app under uvicorn on 127.0.0.1, in a thread with its own event loop.

    The services are opened in that loop (they are bound to it), the reference data is
    seeded, and a client of MTO's driver-licensing system with every API scope is
    registered, and the commissioner's client with the audit scope. MTO has a withdrawn
    consent (so a notice) and a pending one; MOH has a consent MTO may not see.
    """

    def __init__(self, database_url: str, var_dir: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.settings = make_settings(database_url, var_dir=var_dir, ONCEONLY_BASE_URL=self.url)
        self.client_id = ""
        self.secret = ""
        self.auditor: tuple[str, str] = ("", "")
        self.known = Known()
        self.services: Services | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.server: uvicorn.Server | None = None
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="schemathesis-api", daemon=True)

    def __enter__(self) -> ApiServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not (self.server and self.server.started):
            if self.failure is not None:
                raise RuntimeError("the API server did not start") from self.failure
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the API server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.server is not None:
            self.server.should_exit = True
        self.thread.join(timeout=30)

    def run(self, work: Callable[[], Awaitable[T]]) -> T:
        """Run ``work()`` on the server's loop (where the ORM and the ledger live)."""
        assert self.loop is not None

        async def call() -> T:
            return await work()

        future: Future[T] = asyncio.run_coroutine_threadsafe(call(), self.loop)
        return future.result(timeout=30)

    def snapshot(self) -> Snapshot:
        services = self.services
        assert services is not None

        async def take() -> Snapshot:
            return Snapshot(
                ledger_size=await services.ledger.size(),
                ledger_entries=await LedgerEntry.all().count(),
                holdings=await Holding.all().count(),
                consents=await Consent.all().count(),
                notifications=await Notification.all().count(),
            )

        return self.run(take)

    def token(self, audit: bool = False) -> str:
        """An access token for the registered ministry client (or, with ``audit``, the
        commissioner's client), from the real token endpoint."""
        response = requests.post(
            f"{self.url}/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=self.auditor if audit else (self.client_id, self.secret),
            timeout=10,
        )
        assert response.status_code == 200, response.text
        return response.json()["access_token"]

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            self.failure = exc

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        services = await open_services(self.settings)
        try:
            self.services = services
            await self._prepare(services)
            app = create_app(self.settings, manage_services=False)
            app.state.services = services
            config = uvicorn.Config(
                app, host="127.0.0.1", port=self.port, log_level="critical", lifespan="off"
            )
            self.server = uvicorn.Server(config)
            await self.server.serve()
        finally:
            await services.close()

    async def _prepare(self, services: Services) -> None:
        await seed_reference()
        client, secret = await register_client(
            "MTO", "driver-licensing", "schemathesis", "client_secret_basic", ALL_SCOPES
        )
        self.client_id, self.secret = client.client_id, secret or ""
        auditor, audit_secret = await register_client(
            "IPC", "ipc-audit", "schemathesis audit", "client_secret_basic", ["audit"]
        )
        self.auditor = (auditor.client_id, audit_secret or "")
        now = datetime.now(UTC)
        terms = ConsentTerms(
            person_id="resident-42",
            sources=frozenset({"MPBSDP"}),
            categories=frozenset({"address"}),
            purpose="licence-renewal",
            valid_from=now,
            valid_until=now + timedelta(days=90),
            one_time=False,
            notice_text="The Ministry of Transportation asks for your address.",
            return_url="https://mto.example/done",
        )
        mto = Actor("MTO", "driver-licensing", client.client_id)
        moh = Actor("MOH", "ohip", "ohip-test")
        pseudonym = services.people.person("resident-42")
        withdrawn, _ = await create_request(services.ledger, services.people, mto, terms, now=now)
        await answer_request(services.ledger, pseudonym, withdrawn.id, approve=True)
        await withdraw(services.ledger, pseudonym, withdrawn.id)
        pending, _ = await create_request(services.ledger, services.people, mto, terms, now=now)
        hidden, _ = await create_request(services.ledger, services.people, moh, terms, now=now)
        self.known.consent_ids = [str(c.id) for c in (withdrawn, pending, hidden)]
        self.known.notification_ids = [n.id for n in await Notification.all()]
        self.known.entry_indices = list(range(await services.ledger.size()))


class Conformance:
    """Sends cases to the server and checks each answer against the document."""

    def __init__(self, server: ApiServer, session: requests.Session) -> None:
        self.server = server
        self.session = session
        self.headers = {"Authorization": f"Bearer {server.token()}"}
        self.audit_headers = {"Authorization": f"Bearer {server.token(audit=True)}"}
        url = f"{server.url}/api/v1/openapi.json"
        self.document = session.get(url, timeout=10).json()
        config = {"checks": {"negative_data_rejection": {"expected-statuses": REFUSALS}}}
        self.schema = schemathesis.openapi.from_url(
            url, config=schemathesis.Config.from_dict(config)
        )
        self.checks = [
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_headers_conformance,
            self.response_schema_conformance,
            negative_data_rejection,
        ]
        self.answered: Counter[tuple[str, int]] = Counter()

    def operation(self, method: str, path: str) -> Any:
        return self.schema[path][method]

    def exchange(self, case: Case, raw: bytes | None = None) -> schemathesis.Response:
        """Send ``case`` (with ``raw`` as its JSON body if given), check the answer, and
        check that a refusal wrote nothing."""
        before = self.server.snapshot()
        audit = case.operation.path.startswith("/api/v1/audit/")
        headers = self.audit_headers if audit else self.headers
        if raw is None:
            response = case.call_and_validate(
                base_url=self.server.url,
                session=self.session,
                headers=headers,
                checks=self.checks,
                timeout=30,
            )
        else:
            sent = self.session.request(
                case.method,
                self.server.url + case.formatted_path,
                data=raw,
                headers={**headers, "Content-Type": "application/json"},
                timeout=30,
            )
            case.validate_response(sent, checks=self.checks)
            response = schemathesis.Response.from_any(sent)
        self.answered[case.operation.label, response.status_code] += 1
        if response.status_code not in (200, 201):
            after = self.server.snapshot()
            assert after == before, (
                f"{case.operation.label} answered {response.status_code} but wrote "
                f"{before} -> {after}:\n{response.text}"
            )
        return response

    def response_schema_conformance(
        self, ctx: CheckContext, response: schemathesis.Response, case: Case
    ) -> bool | None:
        """Schemathesis's check, except for a compact JWS: it counts application/jwt as
        JSON and would parse it, so its text is checked against the documented schema."""
        if response.headers.get("content-type", [""])[0] != "application/jwt":
            return response_schema_conformance(ctx, response, case)
        responses = self.document["paths"][case.operation.path][case.method.lower()]["responses"]
        schema = responses[str(response.status_code)]["content"]["application/jwt"]["schema"]
        errors = [e.message for e in Draft202012Validator(schema).iter_errors(response.text)]
        assert not errors, f"the application/jwt body does not match its schema: {errors}"
        return None


def steer(case: Case, data: st.DataObject, known: Known) -> None:
    """Point some fields of a valid request at codes, ids and moments that exist.

    Random codes are valid for the document but unknown to the database; without this,
    valid requests would stop at the lookups and never reach the ledger. Each field is
    left random now and then (None is last: Hypothesis leans towards the first values).
    """

    def pick(values: list[Any]) -> Any:
        return data.draw(st.sampled_from([*values, *values, *values, None]))

    def moment() -> str:
        later = datetime.now(UTC) + timedelta(days=data.draw(st.integers(1, 29)))
        return later.isoformat().replace("+00:00", "Z")

    def fields(document: dict[str, Any]) -> None:
        for name, values in KNOWN_CODES.items():
            if name in document and (value := pick(values)) is not None:
                document[name] = list(value) if isinstance(value, list) else value
        for name in MOMENTS:
            if name in document and pick([True]):
                document[name] = moment()

    if isinstance(case.body, dict):
        fields(case.body)
        for item in case.body.get("holdings", []):
            fields(item)
        if {"hidden_until", "hidden_reason"} & case.body.keys() and pick([True]):
            case.body.pop("hidden_until", None)
            case.body.pop("hidden_reason", None)
    path = case.path_parameters or {}
    if "consent_id" in path and (consent_id := pick(known.consent_ids)) is not None:
        path["consent_id"] = consent_id
    if "notification_id" in path and (notice := pick(known.notification_ids)) is not None:
        path["notification_id"] = notice
    if "index" in path and (index := pick(known.entry_indices)) is not None:
        path["index"] = index


@pytest.fixture
def api_server(database: Database, tmp_path: Path) -> Iterator[ApiServer]:
    with ApiServer(database.url, tmp_path / "var") as server:
        yield server


@pytest.fixture
def conformance(api_server: ApiServer) -> Iterator[Conformance]:
    with requests.Session() as session:
        yield Conformance(api_server, session)


@pytest.mark.fuzz
def test_the_api_behaves_as_its_openapi_document_says(conformance: Conformance) -> None:
    operations = [result.ok() for result in conformance.schema.get_all_operations()]
    assert len(operations) == 17
    failures = []
    for operation in operations:
        for mode in GenerationMode:

            @hypothesis.settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                suppress_health_check=list(hypothesis.HealthCheck),
                phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
            )
            @hypothesis.given(case=operation.as_strategy(mode), data=st.data())
            def fuzz(case: Case, data: st.DataObject) -> None:
                if case.meta is not None and case.meta.generation.mode.is_positive:
                    steer(case, data, conformance.server.known)
                conformance.exchange(case)

            try:
                fuzz()
            except (Exception, schemathesis.errors.FailureGroup) as exc:
                failures.append(f"{operation.label} ({mode}):\n{exc}")
    assert not failures, "\n\n".join(failures)
    answered = conformance.answered
    succeeded = {label for (label, status) in answered if status in (200, 201)}
    assert succeeded == {operation.label for operation in operations}, answered


CONSENT_REQUEST = {
    "person_id": "resident-7",
    "sources": ["MPBSDP"],
    "categories": ["address"],
    "purpose": "licence-renewal",
    "valid_until": "2030-01-01T00:00:00Z",
    "notice_text": "May we use your address?",
    "return_url": "https://mto.example/done",
}
ACCESS_CHECK = {
    "person_id": "resident-7",
    "recipient": "MTO",
    "categories": ["address"],
    "purpose": "licence-renewal",
    "query_id": "q-1",
}


def _cursor(after: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": after}).encode()).decode().rstrip("=")


#: Requests that once answered 500 (or were not refused), and what they must answer now.
HOSTILE = [
    ("POST", "/api/v1/consent-requests", {"body": {**CONSENT_REQUEST, "notice_text": "a\0b"}}, 422),
    ("POST", "/api/v1/consent-requests", {"body": {**CONSENT_REQUEST, "state": "\0"}}, 422),
    ("POST", "/api/v1/consent-requests", {"body": {**CONSENT_REQUEST, "state": "\ud800"}}, 400),
    (
        "POST",
        "/api/v1/consent-requests",
        {"body": {**CONSENT_REQUEST, "valid_from": "0001-01-01T00:00:00+05:00"}},
        422,
    ),
    (
        "POST",
        "/api/v1/consent-requests",
        {"body": {**CONSENT_REQUEST, "valid_until": "9999-12-31T23:59:59-05:00"}},
        422,
    ),
    ("POST", "/api/v1/access-checks", {"body": {**ACCESS_CHECK, "query_id": "q" * 65}}, 422),
    (
        "POST",
        "/api/v1/access-checks",
        {"body": {**ACCESS_CHECK, "authority": "HTA-205", "case_id": "c" * 65}},
        422,
    ),
    (
        "GET",
        "/api/v1/consents",
        {"query": {"cursor": _cursor(["0001-01-01T00:00:00+05:00", "0" * 32])}},
        400,
    ),
    ("GET", "/api/v1/consents", {"query": {"cursor": _cursor(["2020-01-01", "0" * 32])}}, 400),
    ("GET", "/api/v1/notifications", {"query": {"unacknowledged": "yes"}}, 400),
    ("GET", "/api/v1/holdings", {"query": {"limit": "9" * 5000}}, 400),
    ("GET", "/api/v1/holdings", {"query": {"limit": "\u0665"}}, 400),  # an Arabic-Indic 5
    ("GET", "/api/v1/audit/entries", {"query": {"since": "2025-02-30"}}, 422),
    ("GET", "/api/v1/audit/entries", {"query": {"cursor": _cursor(-1)}}, 400),
    ("GET", "/api/v1/audit/export", {"query": {"from": "2025-03-02", "to": "2025-03-01"}}, 422),
    (
        "POST",
        "/api/v1/access-checks",
        {"raw": b'{"person_id":' + b"[" * 500 + b"]" * 500 + b"}"},
        400,
    ),
]


@pytest.mark.fuzz
def test_hostile_requests_are_refused_and_write_nothing(conformance: Conformance) -> None:
    failures = []
    for method, path, parts, status in HOSTILE:
        raw = parts.get("raw")
        case = conformance.operation(method, path).Case(
            **{k: v for k, v in parts.items() if k != "raw"}
        )
        try:
            answer = conformance.exchange(case, raw).status_code
        except (AssertionError, schemathesis.errors.FailureGroup) as exc:
            failures.append(f"{method} {path} {parts}:\n{exc}"[:3000])
            continue
        if answer != status:
            failures.append(f"{method} {path} {parts}: {answer} instead of {status}")
    assert not failures, "\n\n".join(failures)


@pytest.mark.fuzz
def test_a_replayed_consent_request_is_the_first_answer(conformance: Conformance) -> None:
    operation = conformance.operation("POST", "/api/v1/consent-requests")
    headers = {"Idempotency-Key": "replay-1"}
    first = conformance.exchange(operation.Case(body=CONSENT_REQUEST, headers=headers))
    size = conformance.server.snapshot().ledger_size
    again = conformance.exchange(operation.Case(body=CONSENT_REQUEST, headers=headers))
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.content == first.content
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["idempotency-replayed"] == ["true"]
    assert conformance.server.snapshot().ledger_size == size

"""The decision rule on its own: every permit path and every deny reason."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from consent import decision as d
from consent.decision import AccessRequest, AuthorityState, ConsentState, decide

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def consent(**overrides) -> ConsentState:
    fields = {
        "id": "c1",
        "status": "active",
        "recipient": "MTO",
        "sources": frozenset({"MPBSDP"}),
        "categories": frozenset({"address", "name"}),
        "purpose": "licence-renewal",
        "valid_from": NOW - timedelta(days=1),
        "valid_until": NOW + timedelta(days=30),
        "one_time": False,
        "used": False,
    }
    fields.update(overrides)
    return ConsentState(**fields)


def request(**overrides) -> AccessRequest:
    fields = {
        "source": "MPBSDP",
        "recipient": "MTO",
        "categories": frozenset({"address"}),
        "purpose": "licence-renewal",
        "at": NOW,
    }
    fields.update(overrides)
    return AccessRequest(**fields)


def authority(**overrides) -> AuthorityState:
    fields = {
        "code": "HTA-205",
        "sources": frozenset({"MTO"}),
        "recipients": frozenset({"SOLGEN"}),
        "categories": frozenset({"driver-licence"}),
        "purposes": frozenset({"law-enforcement"}),
        "consent_required": False,
    }
    fields.update(overrides)
    return AuthorityState(**fields)


def test_permit_by_a_covering_consent() -> None:
    result = decide(request(), [consent()], None)
    assert result.permit
    assert (result.basis_kind, result.basis_ref) == ("consent", "c1")
    assert result.reasons == ()
    assert not result.uses_one_time_consent


def test_no_consents_at_all() -> None:
    result = decide(request(), [], None)
    assert not result.permit
    assert result.reasons == (d.NO_CONSENT,)


def test_consents_only_for_other_recipients() -> None:
    result = decide(request(), [consent(recipient="MCCSS")], None)
    assert result.reasons == (d.RECIPIENT_MISMATCH,)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"status": "withdrawn"}, d.CONSENT_WITHDRAWN),
        ({"status": "refused"}, d.CONSENT_REFUSED),
        ({"status": "requested"}, d.CONSENT_PENDING),
        ({"status": "expired"}, d.CONSENT_EXPIRED),
        ({"valid_until": NOW}, d.CONSENT_EXPIRED),
        ({"valid_from": NOW + timedelta(seconds=1)}, d.CONSENT_NOT_YET_VALID),
        ({"purpose": "research"}, d.PURPOSE_MISMATCH),
        ({"categories": frozenset({"name"})}, d.CATEGORY_NOT_COVERED),
        ({"sources": frozenset({"FIN"})}, d.SOURCE_NOT_COVERED),
        ({"one_time": True, "used": True}, d.ONE_TIME_CONSENT_USED),
    ],
)
def test_each_deny_reason(change: dict, reason: str) -> None:
    result = decide(request(), [consent(**change)], None)
    assert not result.permit
    assert result.reasons == (reason,)
    assert result.basis_ref == "c1"


def test_one_time_consent_is_marked_for_use() -> None:
    result = decide(request(), [consent(one_time=True)], None)
    assert result.permit and result.uses_one_time_consent


def test_standing_consent_preferred_over_one_time() -> None:
    standing = consent(id="standing", valid_until=NOW + timedelta(days=2))
    once = consent(id="once", one_time=True, valid_until=NOW + timedelta(days=300))
    result = decide(request(), [once, standing], None)
    assert result.basis_ref == "standing"
    assert not result.uses_one_time_consent


def test_deny_names_the_closest_consent() -> None:
    far = consent(id="far", purpose="research", categories=frozenset({"name"}))
    near = consent(id="near", status="withdrawn")
    result = decide(request(), [far, near], None)
    assert (result.basis_ref, result.reasons) == ("near", (d.CONSENT_WITHDRAWN,))


def test_named_consent_is_the_only_one_considered() -> None:
    good = consent(id="good")
    named = consent(id="named", status="withdrawn")
    result = decide(request(consent_id="named"), [good, named], None)
    assert (result.permit, result.reasons) == (False, (d.CONSENT_WITHDRAWN,))
    missing = decide(request(consent_id="other"), [good], None)
    assert missing.reasons == (d.NO_CONSENT,)


def law_request(**overrides) -> AccessRequest:
    fields = {
        "source": "MTO",
        "recipient": "SOLGEN",
        "categories": frozenset({"driver-licence"}),
        "purpose": "law-enforcement",
        "authority": "HTA-205",
    }
    fields.update(overrides)
    return request(**fields)


def test_permit_by_statute_without_consent() -> None:
    result = decide(law_request(), [], authority())
    assert result.permit
    assert (result.basis_kind, result.basis_ref) == ("authority", "HTA-205")


def test_unknown_authority() -> None:
    result = decide(law_request(authority="NOPE-1"), [], None)
    assert (result.permit, result.reasons) == (False, (d.UNKNOWN_AUTHORITY,))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"source": "MOH"}, d.SOURCE_NOT_COVERED),
        ({"recipient": "MCCSS"}, d.RECIPIENT_MISMATCH),
        ({"categories": frozenset({"health-record"})}, d.CATEGORY_NOT_COVERED),
        ({"purpose": "research"}, d.PURPOSE_MISMATCH),
    ],
)
def test_authority_that_does_not_apply(change: dict, reason: str) -> None:
    result = decide(law_request(**change), [], authority())
    assert not result.permit
    assert result.reasons == (d.AUTHORITY_NOT_APPLICABLE, reason)


def test_wildcard_authority_applies_to_anyone() -> None:
    anything = authority(
        code="FIPPA-42-1-g",
        sources=frozenset({"*"}),
        categories=frozenset({"*"}),
    )
    assert decide(law_request(authority="FIPPA-42-1-g"), [], anything).permit


def test_authority_that_still_needs_consent() -> None:
    needs = authority(
        code="TTA-172",
        sources=frozenset({"MPBSDP"}),
        recipients=frozenset({"MTO"}),
        categories=frozenset({"address"}),
        purposes=frozenset({"licence-renewal"}),
        consent_required=True,
    )
    denied = decide(request(authority="TTA-172"), [], needs)
    assert denied.reasons == (d.NO_CONSENT,)
    permitted = decide(request(authority="TTA-172"), [consent()], needs)
    assert permitted.permit and permitted.basis_kind == "consent"


def test_decision_is_pure() -> None:
    state = [consent(), replace(consent(), id="c2", status="withdrawn")]
    first = decide(request(), state, None)
    assert decide(request(), state, None) == first

"""Consent receipts: what the person agreed to, signed so anyone can check it.

The fields follow the Kantara Consent Receipt Specification 1.1 and the record of
ISO/IEC TS 27560 (consent record information structure): who the controller is, the
person (here only by pseudonym), the purposes with their data categories, the
lawful basis, the notice the person saw (by hash), the validity window and the state
of the consent, plus where the event is in Onceonly's ledger. The receipt is a JWS
(compact JWT, ES256) signed with Onceonly's receipt key; its ``kid`` names the key in
the published key set (``/api/v1/jwks``), which keeps the keys of receipts signed
before a key rotation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt

RECEIPT_VERSION = "KI-CR-v1.1.0"
JWS_TYPE = "consent-receipt+jwt"


@dataclass(frozen=True)
class ReceiptFacts:
    """What a receipt says, gathered by the caller from the consent and the ledger."""

    consent_id: str
    status: str
    pseudonym: str
    recipient_code: str
    recipient_name: str
    sources: tuple[str, ...]
    categories: tuple[str, ...]
    purpose_code: str
    purpose_label: str
    purpose_dpv: str | None
    one_time: bool
    valid_from: datetime
    valid_until: datetime
    decided_at: datetime | None
    notice_hash: str
    ledger_index: int | None
    language: str = "en"


def receipt_claims(facts: ReceiptFacts, issuer: str, issued_at: datetime) -> dict[str, Any]:
    """The receipt's JSON claims (Kantara 1.1 field names, ISO/IEC TS 27560 concepts)."""
    consent_time = facts.decided_at or facts.valid_from
    return {
        "iss": issuer,
        "iat": int(issued_at.timestamp()),
        "jti": f"receipt-{facts.consent_id}-{facts.status}",
        "version": RECEIPT_VERSION,
        "jurisdiction": "CA-ON",
        "consentTimestamp": int(consent_time.timestamp()),
        "collectionMethod": "Onceonly portal, once-only consent request",
        "consentReceiptID": facts.consent_id,
        "language": facts.language,
        "piiPrincipalId": facts.pseudonym,
        "piiControllers": [
            {"piiController": facts.recipient_name, "piiControllerId": facts.recipient_code}
        ],
        "policyUrl": "https://www.ontario.ca/page/privacy-statement",
        "services": [
            {
                "service": f"Reuse of data from {', '.join(facts.sources)}",
                "purposes": [
                    {
                        "purpose": facts.purpose_label,
                        "purposeCode": facts.purpose_code,
                        "purposeCategory": [facts.purpose_dpv or facts.purpose_code],
                        "consentType": "EXPLICIT",
                        "piiCategory": list(facts.categories),
                        "primaryPurpose": True,
                        "termination": facts.valid_until.isoformat(),
                        "thirdPartyDisclosure": True,
                        "thirdPartyName": facts.recipient_name,
                    }
                ],
            }
        ],
        "sensitive": False,
        "spiCat": [],
        # ISO/IEC TS 27560 record details Kantara 1.1 has no field for.
        "consentStatus": facts.status,
        "legalBasis": "dpv:Consent",
        "validity": {
            "from": facts.valid_from.isoformat(),
            "until": facts.valid_until.isoformat(),
            "oneTime": facts.one_time,
        },
        "sources": list(facts.sources),
        "noticeHash": {"alg": "sha-256", "value": facts.notice_hash},
        "ledgerIndex": facts.ledger_index,
    }


def sign_receipt(claims: dict[str, Any], private_key: Any, kid: str) -> str:
    """Sign receipt claims as a compact JWS (ES256)."""
    return jwt.encode(claims, private_key, algorithm="ES256", headers={"kid": kid, "typ": JWS_TYPE})


def read_receipt(token: str, public_key: Any, issuer: str) -> dict[str, Any]:
    """Verify a receipt's signature and issuer; return its claims.

    Raises jwt.InvalidTokenError when the receipt does not verify.
    """
    header = jwt.get_unverified_header(token)
    if header.get("typ") != JWS_TYPE:
        raise jwt.InvalidTokenError("not a consent receipt")
    return jwt.decode(
        token, public_key, algorithms=["ES256"], issuer=issuer, options={"require": ["iss"]}
    )


def read_receipt_with_key_set(token: str, key_set: dict[str, Any], issuer: str) -> dict[str, Any]:
    """Verify a receipt with the key its ``kid`` names in a JWK Set; return its claims.

    ``key_set`` is a JWK Set document (``{"keys": [...]}``) such as ``/api/v1/jwks``.
    Raises jwt.InvalidTokenError when the receipt does not verify or its key is not in
    the set.
    """
    kid = jwt.get_unverified_header(token).get("kid")
    keys = key_set.get("keys") if isinstance(key_set, dict) else None
    for jwk in keys if isinstance(keys, list) else []:
        if isinstance(jwk, dict) and isinstance(kid, str) and jwk.get("kid") == kid:
            try:
                public_key = jwt.algorithms.ECAlgorithm.from_jwk(jwk)
            except jwt.InvalidKeyError:
                break
            return read_receipt(token, public_key, issuer)
    raise jwt.InvalidTokenError("the receipt is signed by a key that is not in the key set")


async def facts_of(consent: Any, language: str = "en") -> ReceiptFacts:
    """Gather a stored consent's receipt facts (fetches its recipient and purpose)."""
    await consent.fetch_related("recipient", "purpose")
    recipient, purpose = consent.recipient, consent.purpose
    return ReceiptFacts(
        consent_id=str(consent.id),
        status=str(consent.status),
        pseudonym=consent.pseudonym,
        recipient_code=recipient.code,
        recipient_name=recipient.name_fr if language == "fr" else recipient.name_en,
        sources=tuple(consent.sources),
        categories=tuple(consent.categories),
        purpose_code=purpose.code,
        purpose_label=purpose.label_fr if language == "fr" else purpose.label_en,
        purpose_dpv=purpose.dpv_term,
        one_time=consent.one_time,
        valid_from=consent.valid_from,
        valid_until=consent.valid_until,
        decided_at=consent.decided_at,
        notice_hash=consent.notice_hash,
        ledger_index=None,
        language=language,
    )


async def signed_receipt(
    consent: Any, issuer: str, private_key: Any, kid: str, language: str = "en"
) -> str:
    """The consent's receipt as a compact JWS, issued now, in ``language``."""
    facts = await facts_of(consent, language)
    claims = receipt_claims(facts, issuer, datetime.now(UTC))
    return sign_receipt(claims, private_key, kid)

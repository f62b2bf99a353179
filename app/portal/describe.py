"""Ledger entries in plain language, in the person's language."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from app.i18n import N_
from app.i18n import gettext as _
from ledger.entry import Entry

REASON_TEXT = {
    "no_consent": N_("you had not given consent"),
    "consent_withdrawn": N_("you had withdrawn your consent"),
    "consent_refused": N_("you had refused consent"),
    "consent_pending": N_("you had not yet answered the request"),
    "consent_expired": N_("your consent had expired"),
    "consent_not_yet_valid": N_("your consent had not started yet"),
    "purpose_mismatch": N_("the purpose was not the one you agreed to"),
    "category_not_covered": N_("you had not agreed to share that data"),
    "source_not_covered": N_("you had not agreed that this ministry shares it"),
    "recipient_mismatch": N_("you had not agreed to share with this ministry"),
    "one_time_consent_used": N_("your one-time consent was already used"),
    "unknown_authority": N_("the law named does not exist"),
    "authority_not_applicable": N_("the law named does not allow it"),
}


@dataclass(frozen=True)
class Names:
    """Display names by code, already in the person's language."""

    ministries: Mapping[str, str]
    categories: Mapping[str, str]
    purposes: Mapping[str, str]
    authorities: Mapping[str, str]

    def ministry(self, code: str | None) -> str:
        return self.ministries.get(code or "", code or _("an unknown organisation"))

    def ministry_list(self, codes: Sequence[str]) -> str:
        return ", ".join(self.ministry(c) for c in codes)

    def category_list(self, codes: tuple[str, ...]) -> str:
        return ", ".join(self.categories.get(c, c).lower() for c in codes)

    def purpose(self, code: str) -> str:
        return self.purposes.get(code, code)


def describe(entry: Entry, names: Names, consent_dates: Mapping[str, str]) -> str:
    """One sentence saying what happened, who did it, with what data, on what basis."""
    recipient = names.ministry(entry.recipient_org)
    sources = ", ".join(names.ministry(s) for s in entry.source_orgs) or names.ministry(
        entry.actor_org
    )
    data = names.category_list(entry.categories)
    purpose = names.purpose(entry.purpose)
    if entry.type == "access.permitted":
        if entry.basis.kind == "consent":
            when = consent_dates.get(entry.basis.ref)
            basis = (
                _("with your consent of %(date)s", date=when) if when else _("with your consent")
            )
        else:
            law = names.authorities.get(entry.basis.ref, entry.basis.ref)
            basis = _("as allowed by law (%(law)s)", law=law)
        return _(
            "%(recipient)s received your %(data)s from %(source)s for this purpose: "
            "%(purpose)s, %(basis)s.",
            recipient=recipient,
            data=data,
            source=sources,
            purpose=purpose,
            basis=basis,
        )
    if entry.type == "access.denied":
        reasons = "; ".join(_(REASON_TEXT.get(r, r)) for r in entry.reasons)
        return _(
            "%(source)s was not allowed to share your %(data)s with %(recipient)s: %(reasons)s.",
            source=sources,
            data=data,
            recipient=recipient,
            reasons=reasons,
        )
    templates = {
        "consent.requested": N_(
            "%(recipient)s asked for your consent to receive your %(data)s "
            "from %(source)s for this purpose: %(purpose)s."
        ),
        "consent.given": N_(
            "You gave %(recipient)s your consent to receive your %(data)s from "
            "%(source)s for this purpose: %(purpose)s."
        ),
        "consent.refused": N_(
            "You refused to let %(recipient)s receive your %(data)s from %(source)s."
        ),
        "consent.withdrawn": N_(
            "You withdrew your consent for %(recipient)s to receive your %(data)s from %(source)s."
        ),
        "consent.expired": N_(
            "Your consent for %(recipient)s to receive your %(data)s from %(source)s ended."
        ),
    }
    return _(
        templates[entry.type],
        recipient=recipient,
        data=data,
        source=sources,
        purpose=purpose,
    )

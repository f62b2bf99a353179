"""Holdings: a ministry system declares which categories of a person's data it holds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tortoise.transactions import in_transaction

from consent.errors import Invalid
from consent.identity import Actor, Pseudonymizer
from consent.models import DataCategory, Holding, LegalAuthority, System

MAX_HOLDINGS_PER_CALL = 1000


@dataclass(frozen=True)
class HoldingDeclaration:
    person_id: str
    category: str
    authority: str | None
    retention: str


async def register_holdings(
    pseudonymizer: Pseudonymizer, actor: Actor, items: Sequence[HoldingDeclaration]
) -> dict[str, int]:
    """Declare holdings of the acting system, all or none.

    A declaration that exists already is updated (authority, retention). Raises
    Invalid naming every unknown category or authority (by item position).
    """
    system = await System.get(code=actor.system)
    categories = {
        c.code for c in await DataCategory.filter(code__in=sorted({i.category for i in items}))
    }
    wanted = sorted({i.authority for i in items if i.authority})
    authorities = {a.code for a in await LegalAuthority.filter(code__in=wanted)}
    errors = []
    for n, item in enumerate(items):
        if item.category not in categories:
            errors.append(
                {
                    "field": f"holdings/{n}/category",
                    "message": f"unknown data category {item.category}",
                }
            )
        if item.authority and item.authority not in authorities:
            errors.append(
                {
                    "field": f"holdings/{n}/authority",
                    "message": f"unknown authority {item.authority}",
                }
            )
    if errors:
        raise Invalid("Some holdings name something unknown; none were registered.", errors)
    created = updated = 0
    async with in_transaction():
        for item in items:
            _, was_created = await Holding.update_or_create(
                pseudonym=pseudonymizer.person(item.person_id),
                system=system,
                category_id=item.category,
                defaults={"authority_id": item.authority, "retention": item.retention},
            )
            if was_created:
                created += 1
            else:
                updated += 1
    return {"created": created, "updated": updated}

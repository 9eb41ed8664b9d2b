"""The ledger's own check that a family payer may pay for a patient.

Why a copy and not ``pos_plugin.rules.family``: the ledger is a separate
system that must not trust (or import) the agent's rules; it re-checks every
mutual-aid leg it is asked to commit. The rule (DOMAIN.md, 家庭共济):

1. the binding is active and binds *this* payer to *this* patient;
2. the payer is a close relative: spouse, parent, child, sibling, paternal or
   maternal grandparent, paternal or maternal grandchild; never the spouse's
   parent (``spouse_parent``) nor ``other``;
3. the payer is on employee insurance (310) and has a personal account;
4. the patient is insured in basic insurance (310 or 390) and not terminated;
5. payer and patient are insured in the same province (first two digits of
   the insured region), unless the pair of provinces is opened in the world's
   ``cross_province_pairs`` ("11-13" opens 11<->13 both ways).
"""

from __future__ import annotations

from collections.abc import Iterable

CLOSE_RELATIVES = frozenset(
    {
        "spouse",
        "parent",
        "child",
        "sibling",
        "paternal_grandparent",
        "maternal_grandparent",
        "paternal_grandchild",
        "maternal_grandchild",
    }
)


def opened_pairs(pairs: Iterable[str]) -> frozenset[frozenset[str]]:
    """``["11-13"]`` -> {{"11", "13"}}; malformed entries are ignored (the world validated)."""
    out = set()
    for text in pairs:
        parts = text.split("-")
        if len(parts) == 2 and parts[0] != parts[1]:
            out.add(frozenset(parts))
    return frozenset(out)


def refusal(
    *,
    binding_status: str,
    relation: str,
    payer_insurance_type: str,
    payer_has_account: bool,
    payer_region: str,
    patient_insurance_type: str,
    patient_insurance_status: str,
    patient_region: str,
    pairs: frozenset[frozenset[str]],
) -> str | None:
    """Why this payer may not pay for this patient, in words, or None if it may."""
    if binding_status != "active":
        return f"the binding is {binding_status}, not active"
    if relation not in CLOSE_RELATIVES:
        return f"relation {relation!r} is not a close relative for mutual aid"
    if payer_insurance_type != "310":
        return "the payer is not on employee insurance (310)"
    if not payer_has_account:
        return "the payer has no personal account"
    if patient_insurance_type not in ("310", "390") or patient_insurance_status == "terminated":
        return "the patient is not insured in basic medical insurance"
    a, b = payer_region[:2], patient_region[:2]
    if a != b and frozenset((a, b)) not in pairs:
        return f"payer (province {a}) and patient (province {b}) are in different provinces"
    return None

"""The rule decisions for the example world's scenarios, printed for a cashier.

This is the foundation's demo: it exercises the functional core on the embedded
example world without devices or a ledger. ``pos-plugin demo`` runs the full
sale flow once the agent is in place; ``pos-plugin demo --rules-only`` runs this.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from pos_plugin.models import (
    BasketLine,
    Buyer,
    FamilyBinding,
    IdDocument,
    InsuranceClass,
    Person,
    PersonalAccount,
    RefusalCode,
)
from pos_plugin.money import yuan
from pos_plugin.rules.basket import check_basket
from pos_plugin.rules.cascade import allocate
from pos_plugin.rules.evidence import check_card_status, check_whose_card
from pos_plugin.rules.family import eligible_payers
from pos_plugin.rules.identity import mask_id_number, mask_name
from pos_plugin.world import World, WorldPerson, load_world


@dataclass(frozen=True)
class Outcome:
    refused: RefusalCode | None
    text: list[str]


def _person(w: WorldPerson) -> Person:
    return Person(
        psn_no=w.psn_no,
        name=w.name,
        id_number=w.id_number,
        insurance_type=w.insurance_type,
        insured_region=w.insured_region,
        insurance_status=w.insurance_status,
    )


def _bindings(world: World, patient: WorldPerson) -> list[FamilyBinding]:
    out = []
    for b in world.bindings:
        if b.patient != patient.psn_no:
            continue
        payer = world.person(b.payer)
        out.append(
            FamilyBinding(
                binding_id=b.binding_id,
                payer_psn_no=payer.psn_no,
                payer_name=payer.name,
                payer_account_id=payer.account_id,
                relation=b.relation,
                order=b.order,
                payer_insurance_type=payer.insurance_type,
                payer_region=payer.insured_region,
                status=b.status,
                available_balance=payer.personal_account_balance or 0,
            )
        )
    return out


def decide(
    world: World,
    *,
    card_no: str,
    patient_doc: IdDocument | None,
    buyer: Buyer,
    lines: list[BasketLine],
    today: dt.date,
) -> Outcome:
    """Apply every rule in the order the agent does, and describe the result."""
    holder, card = world.card_owner(card_no)
    text = [f"卡 card: {mask_name(holder.name)} {mask_id_number(holder.id_number)}"]
    refusal = check_card_status(card.status, card.expiry_date, today)
    if refusal is None:
        evidence = check_whose_card(
            holder_id_number=holder.id_number,
            holder_name=holder.name,
            patient=patient_doc,
            buyer=buyer,
            today=today,
        )
        refusal = evidence.refusal
        text += [f"注意 notice: {n.message_zh} / {n.message_en}" for n in evidence.notices]
    if refusal is None:
        registered = (buyer.id_document or patient_doc) is not None
        basket = check_basket(lines, buyer_id_registered=registered)
        refusal = basket.refusal
    if refusal is not None:
        return Outcome(refusal.code, [*text, f"拒绝 REFUSED [{refusal.code}]: {refusal.message}"])
    patient = _person(holder)
    family = eligible_payers(patient, _bindings(world, holder))
    account = (
        PersonalAccount(account_id=holder.account_id, balance=holder.personal_account_balance or 0)
        if holder.account_id
        else None
    )
    alloc = allocate(
        account_payable=basket.account_payable,
        cash_only=basket.cash_only,
        patient_psn_no=patient.psn_no,
        personal_account=account,
        family_payers=family.eligible,
    )
    names = {holder.psn_no: holder.name} | {b.payer_psn_no: b.payer_name for b in family.eligible}
    text.append(f"合计 total {yuan(alloc.total)}; 医保可付 account-payable {yuan(alloc.account_payable)}")
    for leg in alloc.legs:
        who = "本人个人账户 own account" if leg.kind == "personal_account" else "家庭共济 family"
        text.append(f"  {who} {mask_name(names[leg.payer_psn_no])}: {yuan(leg.amount)}")
    for s in family.skipped:
        text.append(f"  跳过 skipped {mask_name(s.payer_name)}: {s.message_zh} / {s.message_en}")
    text.append(f"  现金 cash: {yuan(alloc.cash)} (其中自费 of which cash-only {yuan(alloc.cash_only)})")
    return Outcome(None, text)


def _line(sku: str, name: str, cls: InsuranceClass, qty: int, price: int) -> BasketLine:
    return BasketLine(sku=sku, name=name, insurance_class=cls, quantity=qty, unit_price=price)


def scenarios(world: World) -> list[tuple[str, RefusalCode | None, Callable[[dt.date], Outcome]]]:
    """(title, expected refusal or None, run) for each scenario of the foundation issue."""
    zhang_wei = world.card_owner("B11000001")[0]
    wang_fang = world.card_owner("B11000002")[0]
    xiaoming = world.card_owner("B11000003")[0]
    li_na = world.card_owner("B11000006")[0]
    cold = [_line("6901", "感冒灵颗粒", InsuranceClass.A, 2, 1850)]

    def doc(p: WorldPerson) -> IdDocument:
        return IdDocument(number=p.id_number, name=p.name)

    def run(
        card: str, patient: WorldPerson | None, buyer: Buyer, lines: list[BasketLine]
    ) -> Callable[[dt.date], Outcome]:
        return lambda today: decide(
            world,
            card_no=card,
            patient_doc=doc(patient) if patient else None,
            buyer=buyer,
            lines=lines,
            today=today,
        )

    proxy = Buyer(role="proxy", id_document=doc(li_na))
    big = [_line("8801", "阿莫西林胶囊", InsuranceClass.A, 10, 4500)]
    return [
        ("本人持卡购药 patient pays with own card", None, run("B11000001", zhang_wei, Buyer(), cold)),
        ("冒用他人卡 someone else's card", RefusalCode.CARD_NOT_PATIENTS_OWN,
         run("B11000002", zhang_wei, Buyer(), cold)),
        ("代购（两证齐全）proxy with both documents", None, run("B11000001", zhang_wei, proxy, cold)),
        ("代购缺代购人证件 proxy without buyer's document", RefusalCode.PROXY_EVIDENCE_MISSING,
         run("B11000001", zhang_wei, Buyer(role="proxy"), cold)),
        ("家庭共济两人+现金 cascade over two family payers, cash rest", None,
         run("B11000003", xiaoming, Buyer(), big)),
        ("配偶父母被跳过、跨省被跳过 spouse's parent and cross-province payer skipped", None,
         run("B11000001", zhang_wei, Buyer(), [_line("8802", "胰岛素笔芯", InsuranceClass.B, 10, 5000)])),
        ("丙类及非目录现金 class-C and non-catalogue lines in cash", None,
         run("B11000002", wang_fang, Buyer(), [*cold,
             _line("7701", "维生素C泡腾片", InsuranceClass.C, 1, 3900),
             _line("7702", "护手霜", InsuranceClass.NONE, 1, 2500)])),
        ("挂失卡 lost card", RefusalCode.CARD_REPORTED_LOST,
         run("B11000007", world.card_owner("B11000007")[0], Buyer(), cold)),
    ]  # fmt: skip


def run_rules_demo(today: dt.date | None = None, world: World | None = None) -> int:
    """Print every scenario; return 0 if each came out as expected, 1 otherwise."""
    world = world or load_world()
    today = today or dt.date.today()
    failures = 0
    for i, (title, expected, run) in enumerate(scenarios(world), 1):
        outcome = run(today)
        ok = outcome.refused == expected
        failures += not ok
        print(f"\n[{i}] {title} {'✓' if ok else '✗ UNEXPECTED'}")
        for line in outcome.text:
            print(f"    {line}")
    print(f"\n{len(scenarios(world)) - failures} scenarios as expected, {failures} unexpected")
    return 1 if failures else 0

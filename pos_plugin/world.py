"""The world file: one JSON document that both the sandbox ledger and the device
simulator read, so a test's cards and a test's accounts can never disagree.

It is a **contract** (documented in docs/world.md, example in
docs/world.example.json, shipped as the embedded default in
pos_plugin/data/world.example.json). It holds sandbox secrets only: the
pharmacies' sandbox API tokens and the chips' PINs, which only the simulated chip
reads. The ledger ignores ``pin``; no agent code ever reads it.
"""

from __future__ import annotations

import datetime as dt
import json
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pos_plugin.config import ConfigError
from pos_plugin.models import (
    BindingStatus,
    CardStatus,
    Fen,
    InsuranceStatus,
    InsuranceType,
    RegionCode,
    Relation,
)
from pos_plugin.rules.identity import mask_name


class _W(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WorldPharmacy(_W):
    code: Annotated[str, Field(pattern=r"^[A-Z0-9]{12}$")]  # 12-character pharmacy code
    name: str
    region: RegionCode
    api_token: Annotated[str, Field(min_length=8)]  # sandbox bearer token for this pharmacy


class WorldCard(_W):
    card_no: Annotated[str, Field(min_length=1, max_length=32)]
    card_sn: Annotated[str, Field(min_length=1, max_length=32)]
    status: CardStatus = CardStatus.ACTIVE
    issue_date: dt.date
    expiry_date: dt.date
    pin: Annotated[str, Field(pattern=r"^\d{6}$")]  # the chip's PIN: simulator only
    pin_tries_left: Annotated[int, Field(ge=0, le=3)] = 3
    spec_version: str = "3.00"


class WorldPerson(_W):
    psn_no: str
    name: str
    id_number: str
    insurance_type: InsuranceType
    insured_region: RegionCode
    insurance_status: InsuranceStatus = InsuranceStatus.ACTIVE
    # Employee insurance only; residents' insurance has no personal account.
    personal_account_balance: Fen | None = None
    cards: tuple[WorldCard, ...] = ()
    evoucher_tokens: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _residents_have_no_account(self) -> WorldPerson:
        """DOMAIN.md: people on residents' insurance (390) have no personal account.

        A balance for one would make the sandbox open an account that cannot exist,
        and every test run on that world would pass for the wrong reason. The person
        is named by psn_no and masked name (never the ID number).
        """
        if (
            self.insurance_type is InsuranceType.RESIDENTS
            and self.personal_account_balance is not None
        ):
            raise ValueError(
                f"person {self.psn_no} ({mask_name(self.name)}) is on residents' insurance "
                f"(insurance_type 390), which has no personal account (DOMAIN.md), but "
                f"personal_account_balance is {self.personal_account_balance}: set it to null, "
                "or make the person employee insurance (310)"
            )
        return self

    @property
    def account_id(self) -> str | None:
        """Account ids are derived, so the world file cannot contradict itself."""
        return None if self.personal_account_balance is None else f"PA{self.psn_no}"


class WorldBinding(_W):
    binding_id: str
    payer: str  # psn_no of the family payer (共济人)
    patient: str  # psn_no of the person whose costs the payer's account pays
    relation: Relation  # relation of the payer to the patient
    order: Annotated[int, Field(ge=1)]
    status: BindingStatus = BindingStatus.ACTIVE


class WorldCatalogueItem(_W):
    """One entry of the national drug catalogue (医保目录) as the national sandbox knows it.

    Why in the world file: the platform, not the till, classifies each line it is sent
    (甲/乙/丙, the price limit), so the sandbox needs the catalogue the till's codes
    refer to. ``price_limit`` is the unit price the fund recognises (fen); the part
    of a line above it is self-paid (超限价自费).
    """

    med_list_codg: Annotated[str, Field(min_length=1, max_length=50)]  # 医疗目录编码
    name: Annotated[str, Field(min_length=1, max_length=128)]
    insurance_class: Literal["A", "B", "C"]  # 甲类 / 乙类 / 丙类
    price_limit: Fen | None = None  # 定价上限 per unit, fen; None: no limit
    # The packs of this product on the shelf, by their 追溯码 (traceability code), in the
    # order the simulated cashier scans them (drivers.simulator, SCAN_TRACE); each code
    # is one pack, so no code may appear twice in the world.
    trace_codes: tuple[Annotated[str, Field(min_length=1, max_length=100)], ...] = ()


class World(_W):
    version: int = 1
    description: str = ""
    # Pairs of provinces ("11-13") whose cross-province mutual aid is opened.
    cross_province_pairs: tuple[str, ...] = ()
    pharmacies: tuple[WorldPharmacy, ...]
    persons: tuple[WorldPerson, ...]
    bindings: tuple[WorldBinding, ...] = ()
    # The national catalogue the national sandbox classifies lines by (optional).
    catalogue: tuple[WorldCatalogueItem, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> World:
        psns = [p.psn_no for p in self.persons]
        if len(psns) != len(set(psns)):
            raise ValueError("psn_no must be unique")
        cards = [c.card_no for p in self.persons for c in p.cards]
        if len(cards) != len(set(cards)):
            raise ValueError("card_no must be unique")
        tokens = [t for p in self.persons for t in p.evoucher_tokens]
        if len(tokens) != len(set(tokens)):
            raise ValueError("evoucher tokens must be unique")
        known = set(psns)
        for b in self.bindings:
            if b.payer not in known or b.patient not in known:
                raise ValueError(f"binding {b.binding_id} names an unknown person")
            if b.payer == b.patient:
                raise ValueError(f"binding {b.binding_id} binds a person to themself")
        codes = [c.med_list_codg for c in self.catalogue]
        if len(codes) != len(set(codes)):
            raise ValueError("catalogue med_list_codg must be unique")
        packs = [t for c in self.catalogue for t in c.trace_codes]
        if len(packs) != len(set(packs)):
            twice = sorted({t for t in packs if packs.count(t) > 1})
            raise ValueError(
                f"catalogue trace_codes must be unique (one code is one pack): {', '.join(twice)} "
                "appear more than once"
            )
        return self

    def person(self, psn_no: str) -> WorldPerson:
        for p in self.persons:
            if p.psn_no == psn_no:
                return p
        raise KeyError(psn_no)

    def card_owner(self, card_no: str) -> tuple[WorldPerson, WorldCard]:
        for p in self.persons:
            for c in p.cards:
                if c.card_no == card_no:
                    return p, c
        raise KeyError(card_no)

    def voucher_owner(self, token: str) -> WorldPerson:
        for p in self.persons:
            if token in p.evoucher_tokens:
                return p
        raise KeyError(token)

    def total_money(self) -> int:
        """All money the world puts in: the conservation check's reference sum."""
        return sum(p.personal_account_balance or 0 for p in self.persons)


class WorldError(ConfigError):
    """A world file that contradicts itself or the domain, said as plain sentences.

    A ConfigError, so the CLI prints it as one line and exits 2. The sentences carry
    each problem's place and the rule, never the offending input: pydantic's own
    rendering would echo the person's record, ID number included.
    """


def load_world(path: str | Path | None = None) -> World:
    """Load a world file; ``None`` loads the embedded example world.

    Raises :class:`WorldError` (a ValueError) naming the file and the problem."""
    if path is None:
        text = resources.files("pos_plugin.data").joinpath("world.example.json").read_text("utf-8")
    else:
        try:
            text = Path(path).read_text("utf-8")
        except FileNotFoundError:
            raise WorldError(
                f"world file {path} not found: give an existing file (docs/world.example.json)"
            ) from None
        except (OSError, UnicodeDecodeError) as e:
            raise WorldError(f"world file {path} cannot be read: {e}") from None
    try:
        return World.model_validate(json.loads(text))
    except json.JSONDecodeError as e:
        raise WorldError(f"world file {path} is not valid JSON: {e}") from None
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in err['loc']) or 'world'}: "
            f"{err['msg'].removeprefix('Value error, ')}"
            for err in e.errors(include_input=False, include_url=False)
        )
        raise WorldError(f"world file {path or '(embedded example)'}: {problems}") from None

"""``NhsaLedgerClient``: the ``LedgerClient`` the sale flow calls, over the national platform.

Exactly once without a query by msgid. The platform cannot be asked "did msgid X
commit?", so the reasoning is the own-API client's, turned around:
- a 2102 is POSTed exactly once under the journal's msgid (journaled as ``settling``
  before it leaves). If its answer never comes (read timeout, reset, 5xx), the
  outcome is unknown: ``OutcomeUnknown`` is raised and the 2102 is NEVER re-sent (the
  platform is not known to deduplicate by msgid: a second POST could charge twice);
- the sale flow then concludes that msgid with ``void_settlement`` = 2601 {omsgid},
  which is safe to repeat and so retried; a 2102 that lands after its 2601 is caught
  by the day's detail reconciliation (3202, issue 13);
- ``get_settlement`` raises ``LookupUnsupported`` (never "not found": that would read
  as "not charged");
- a connect failure before the 2102 left is ``LedgerUnavailable``: nothing charged;
- an answer that breaks the spec's invariants is ``bad_response``, which the flow
  treats as an unknown outcome, never as a sale.
The platform decides the family cascade and each line's class centrally: the answer's
split (acct_pay, acct_mulaid_pay, psn_cash_pay) is what is returned and journaled.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import requests

from pos_plugin.ledger import errors as e
from pos_plugin.ledger.nhsa import envelope as env
from pos_plugin.ledger.nhsa.amounts import yuan_of
from pos_plugin.ledger.nhsa.answers import (
    cut_rows,
    lookup_from_1101,
    reversal_amounts,
    setlinfo_fen,
)
from pos_plugin.ledger.nhsa.inputs import Insured, cert_fields, drug_input
from pos_plugin.ledger.nhsa.session import ControlMsgids, PlatformSession
from pos_plugin.ledger.nhsa.settings import NhsaSettings
from pos_plugin.ledger.nhsa.signers import make_signer
from pos_plugin.ledger.nhsa.transport import Transport
from pos_plugin.ledger.own.schemas import (
    CompactStatement,
    Credential,
    LineSummary,
    ReversalResult,
    Settlement,
    SettlementRequest,
    Statement,
)
from pos_plugin.models import PersonLookup

log = logging.getLogger("pos_plugin.ledger.nhsa")
_REMEMBERED = 1024  # insured persons kept from their 1101 for the 2102 that follows


class NhsaLedgerClient:
    """``pos_plugin.ledger.backend.LedgerClient`` over the national platform (docs/nhsa.md)."""

    def __init__(
        self,
        url: str,
        settings: NhsaSettings,
        *,
        secrets: Mapping[str, str] | None = None,
        session: requests.Session | None = None,
        msgids: Callable[[], str] | None = None,
        clock: Callable[[], dt.datetime] | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.settings = settings
        self.transport = Transport(
            url, make_signer(settings, secrets or {}),
            timeouts=(settings.connect_timeout, settings.read_timeout),
            content_type=settings.content_type, session=session,
        )  # fmt: skip
        self.clock = clock or (lambda: dt.datetime.now(env.CHINA))
        kw: dict[str, Any] = {"sleep": sleep} if sleep is not None else {}
        self.platform = PlatformSession(
            self.transport, settings,
            msgids=msgids or ControlMsgids(settings.fixmedins_code, settings.msgid_digit,
                                           self.clock),
            clock=self.clock, **kw,
        )  # fmt: skip
        self._insured: OrderedDict[str, Insured] = OrderedDict()
        self._insured_lock = threading.Lock()  # a balance query may run beside a sale

    def close(self) -> None:
        """Sign out (9002) and close the connection pool."""
        self.platform.close()
        self.transport.close()

    # ------------------------------------------------------------------ 1101
    def _remember(self, insured: Insured) -> None:
        with self._insured_lock:
            self._insured[insured.psn_no] = insured
            self._insured.move_to_end(insured.psn_no)
            while len(self._insured) > _REMEMBERED:
                self._insured.popitem(last=False)

    def _known(self, psn_no: str) -> Insured | None:
        with self._insured_lock:
            return self._insured.get(psn_no)

    def _1101(self, credential: Credential) -> tuple[PersonLookup, Insured]:
        cert_type, cert_no, card_sn = cert_fields(credential)
        data = {"data": {
            "mdtrt_cert_type": cert_type, "mdtrt_cert_no": cert_no, "card_sn": card_sn,
            "begntime": "", "psn_cert_type": "01", "certno": "", "psn_name": "",
        }}  # fmt: skip
        answer = self.platform.call("1101", data, opter=self.settings.opter, safe=True)
        lookup, row = lookup_from_1101(answer)
        insured = Insured(
            psn_no=lookup.person.psn_no, insuplc_admdvs=lookup.person.insured_region,
            insutype=row["insutype"], psn_type=row["psn_type"],
            psn_cert_type=row["psn_cert_type"], certno=lookup.person.id_number,
            psn_name=lookup.person.name, mdtrt_cert_type=cert_type, mdtrt_cert_no=cert_no,
            card_sn=card_sn,
            balance=lookup.personal_account.balance if lookup.personal_account else None,
        )  # fmt: skip
        self._remember(insured)
        return lookup, insured

    def lookup(self, credential: Credential) -> PersonLookup:
        """1101: the person, their own balance (employees) and no bindings (the platform
        keeps them). Lost card -> ``CardRefused(card_lost)``, expired -> ``card_expired``,
        unknown -> ``NotFound``."""
        return self._1101(credential)[0]

    # ------------------------------------------------------------------ 2101 / 2102
    def _insured_for(self, request: SettlementRequest) -> Insured:
        insured = self._known(request.patient_psn_no)
        if insured is None or (insured.mdtrt_cert_type, insured.mdtrt_cert_no, insured.card_sn) \
                != cert_fields(request.credential):  # fmt: skip
            insured = self._1101(request.credential)[1]  # after a restart: ask again
            if insured.psn_no != request.patient_psn_no:
                raise e.CardRefused(
                    "凭证不属于本笔交易的参保人 / the credential is not the sale's patient's",
                    code="credential_not_patients_own",
                )
        return insured

    def settle(self, request: SettlementRequest) -> Settlement:
        """Optional 2101, then one 2102 under ``request.msgid`` (module docstring)."""
        insured = self._insured_for(request)
        now = self.clock()
        built = drug_input(request, insured, now=now, trace_key=self.settings.trace_info_key)
        if self.settings.presettle:  # 2101 has no traceability node
            preview_data = {"druginfo": built.data["druginfo"], "drugdetail": [
                {k: v for k, v in row.items() if k != self.settings.trace_info_key}
                for row in built.data["drugdetail"]]}  # fmt: skip
            preview = self.platform.call(
                "2101", preview_data, opter=request.operator, safe=True,
                insuplc_admdvs=insured.insuplc_admdvs,
            )  # fmt: skip
            setlinfo_fen(preview, built.medfee_fen, msgid=None, psn_no=insured.psn_no)
        answer = self.platform.call(
            "2102", built.data, opter=request.operator, safe=False, msgid=request.msgid,
            insuplc_admdvs=insured.insuplc_admdvs,
        )  # fmt: skip
        setl = setlinfo_fen(answer, built.medfee_fen, msgid=request.msgid, psn_no=insured.psn_no)
        created = _setl_time(setl.get("setl_time"), now)
        detail_rows = cut_rows(answer)
        detail: dict[str, Any] = {
            "setlinfo": setl,
            "detlcutinfo": detail_rows,
            "mdtrt_id": setl["mdtrt_id"],
            "noncatalogue_cash": built.noncatalogue_fen,
            "insuplc_admdvs": insured.insuplc_admdvs,
            "msgid": request.msgid,
            "terminal_id": request.terminal_id,
            "total": request.total,
            "acct_used_flag": built.acct_used_flag,
            # the platform's class of each basket line (None: not sent), for the receipt
            "chrgitm_lv": line_levels(request.lines, detail_rows),
        }
        return Settlement(
            settlement_id=setl["setl_id"], msgid=request.msgid,
            pharmacy_code=request.pharmacy_code, terminal_id=request.terminal_id,
            operator=request.operator, patient_psn_no=request.patient_psn_no,
            status="settled", personal_account=setl["acct_pay"] - setl["acct_mulaid_pay"],
            mutual_aid=setl["acct_mulaid_pay"],
            cash=setl["psn_cash_pay"] + built.noncatalogue_fen, total=request.total,
            proxy=request.proxy, created_at=created, business_date=created.date(),
            detail=detail,
        )  # fmt: skip

    def get_settlement(self, msgid: str) -> Settlement | None:
        raise e.LookupUnsupported(
            "the national platform has no query by msgid: an open outcome is concluded by "
            "2601 (void_settlement)"
        )

    # ------------------------------------------------------------------ 2601
    def void_settlement(
        self, msgid: str, *, psn_no: str | None = None, insuplc_admdvs: str | None = None
    ) -> Settlement | None:
        """2601 {psn_no, omsgid, oinfno 2102} under a new msgid: afterwards nothing is
        charged under ``msgid`` (a 2102 that lands later is reconciliation's). Safe to
        repeat, so retried on transport failures; returns None. ``insuplc_admdvs``: the
        insured region when this process has not seen the person's 1101 (the journal's)."""
        if not psn_no:
            raise e.InvalidRequest("2601 needs the patient's psn_no", field="psn_no")
        known = self._known(psn_no)
        region = insuplc_admdvs or (known.insuplc_admdvs if known else
                                    self.settings.mdtrtarea_admvs)  # fmt: skip
        data = {"data": {"psn_no": psn_no, "omsgid": msgid, "oinfno": "2102"}}
        self.platform.call("2601", data, opter=self.settings.opter, safe=True,
                           insuplc_admdvs=region)  # fmt: skip
        log.info("nhsa: msgid %s voided by 2601", msgid)
        return None

    # ------------------------------------------------------------------ 2103
    def reverse(
        self,
        settlement_id: str,
        msgid: str,
        reason: str = "",
        *,
        psn_no: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> ReversalResult:
        """2103 {setl_id, mdtrt_id, psn_no} under ``msgid``, sent once (a second 2103 of
        the same settlement is refused: that refusal is ``AlreadyReversed``)."""
        detail = detail or {}
        setl = detail.get("setlinfo") or {}
        mdtrt_id = str(detail.get("mdtrt_id") or setl.get("mdtrt_id") or "")
        psn_no = psn_no or str(setl.get("psn_no") or "")
        if not mdtrt_id or not psn_no:
            raise e.InvalidRequest(
                "2103 needs the settlement's mdtrt_id and psn_no (its journaled detail)",
                field="mdtrt_id" if not mdtrt_id else "psn_no",
            )
        region = str(detail.get("insuplc_admdvs") or "")
        if not region:
            known = self._known(psn_no)
            region = known.insuplc_admdvs if known else self.settings.mdtrtarea_admvs
        data = {"data": {"setl_id": settlement_id, "mdtrt_id": mdtrt_id, "psn_no": psn_no,
                         "exp_content": ""}}  # fmt: skip
        answer = self.platform.call("2103", data, opter=self.settings.opter, safe=False,
                                    msgid=msgid, insuplc_admdvs=region)  # fmt: skip
        now = self.clock()
        amounts = reversal_amounts(answer, detail)
        created = _setl_time(amounts.pop("setl_time", None), now)
        return ReversalResult(
            reversal_id=str(amounts.pop("setl_id")), msgid=msgid, settlement_id=settlement_id,
            original_msgid=str(detail.get("msgid") or setl.get("medins_setl_id") or ""),
            pharmacy_code=self.settings.fixmedins_code,
            terminal_id=str(detail.get("terminal_id") or ""), legs=(), balances_after={},
            reason=reason, created_at=created, business_date=created.date(), **amounts,
        )  # fmt: skip

    def get_reversal(self, msgid: str) -> ReversalResult | None:
        raise e.LookupUnsupported("the national platform has no query by msgid")

    # ------------------------------------------------------------------ day end
    # The national day-end is driven by ``pos_plugin.reconcile.national`` (the journal's
    # side goes up first); these are its four calls. Each only compares or stores, so
    # each is safe to repeat and retried.
    def totals_check(self, data: Mapping[str, Any]) -> tuple[str, str]:
        """3201 with ``data`` (表146): (stmt_rslt, stmt_rslt_dscr); "0" balanced."""
        answer = self.platform.call("3201", {"data": dict(data)}, opter=self.settings.opter,
                                    safe=True)  # fmt: skip
        node = answer.node("stmtinfo")
        return env.text(node, "stmt_rslt"), env.text(node, "stmt_rslt_dscr")

    def upload_file(self, filename: str, content: bytes) -> str:
        """9101 by ``settings.upload_encoding``; the platform's ``file_qury_no``."""
        node: dict[str, Any] = {"filename": filename,
                                "fixmedins_code": self.settings.fixmedins_code}
        upload = None
        if self.settings.upload_encoding == "multipart":
            upload = (filename, content)
        else:
            node["in"] = base64.b64encode(content).decode("ascii")
        answer = self.platform.call("9101", {"fsUploadIn": node}, opter=self.settings.opter,
                                    safe=True, upload=upload)  # fmt: skip
        no = env.text(answer.output, "file_qury_no") or env.text(answer.node("data"),
                                                                 "file_qury_no")
        if not no:
            raise e.LedgerError("the platform's 9101 answer has no file_qury_no",
                                code="bad_response")  # fmt: skip
        return no

    def detail_check(self, data: Mapping[str, Any]) -> tuple[str, str]:
        """3202 with ``data`` (表148): the result file's (file_qury_no, filename)."""
        answer = self.platform.call("3202", {"data": dict(data)}, opter=self.settings.opter,
                                    safe=True)  # fmt: skip
        node = answer.node("fileinfo")
        no = env.text(node, "file_qury_no")
        if not no:
            raise e.LedgerError("the platform's 3202 answer has no fileinfo.file_qury_no",
                                code="bad_response")  # fmt: skip
        return no, env.text(node, "filename")

    def download_file(self, file_qury_no: str, filename: str = "",
                      fixmedins_code: str | None = None) -> bytes:
        """9102: the file's bytes (``fixmedins_code`` "plc" for the catalogue files)."""
        data = {"fsDownloadIn": {"file_qury_no": file_qury_no, "filename": filename,
                                 "fixmedins_code": fixmedins_code
                                 or self.settings.fixmedins_code}}
        answer = self.platform.call("9102", data, opter=self.settings.opter, safe=True)
        if answer.content is None:
            raise e.LedgerError("the platform answered 9102 without the file",
                                code="bad_response")  # fmt: skip
        return answer.content

    # ------------------------------------------------------------------ 3505 / 3506
    def sales_upload(self, msgid: str, sale_ref: str, detail: Mapping[str, Any],
                     lines: list[dict[str, Any]]) -> None:  # fmt: skip
        """3505 商品销售 for one settled sale under ``msgid`` (journaled before): one
        ``selinfo`` row per catalogue line with its 追溯码 (``drugtracinfo``), the
        receipt number ``rtal_docno`` = ``sale_ref``. Safe to resend (the same msgid and
        receipt number), so retried."""
        when = self.clock().astimezone(env.CHINA).strftime(env.INF_TIME)
        rows = [self._selinfo(line, detail, when) | {"rtal_docno": sale_ref}
                for line in lines if line.get("catalogue_code")]  # fmt: skip
        if rows:
            self.platform.call("3505", {"selinfo": rows}, opter=self.settings.opter,
                               safe=True, msgid=msgid)  # fmt: skip

    def sales_return_upload(self, msgid: str, sale_ref: str, detail: Mapping[str, Any],
                            lines: list[dict[str, Any]], *, reversal_msgid: str,
                            returned_at: dt.datetime) -> None:  # fmt: skip
        """3506 商品销售退货 for one reversed sale under ``msgid`` (journaled before): the
        sale's catalogue lines come back whole (a reversal here is always of the whole
        sale), each with its 追溯码, under the *sale's* ``setl_id`` (the one its 3505
        carried) and ``medins_prod_sel_no`` = the reversal's msgid (the return's own
        number: the platform's key against a second upload of this return). Safe to
        resend, so retried."""
        when = returned_at.astimezone(env.CHINA).strftime(env.INF_TIME)
        rows = [self._selinfo(line, detail, when) | {
                    "medins_prod_sel_no": reversal_msgid, "memo": f"退货 {sale_ref}"[:500],
                    "psn_cert_type": "01", "certno": "", "psn_name": "", "expy_end": ""}
                for line in lines if line.get("catalogue_code")]  # fmt: skip
        if rows:
            self.platform.call("3506", {"selinfo": rows}, opter=self.settings.opter,
                               safe=True, msgid=msgid)  # fmt: skip

    def _selinfo(self, line: Mapping[str, Any], detail: Mapping[str, Any],
                 when: str) -> dict[str, Any]:  # fmt: skip
        """One 3505/3506 ``selinfo`` row of a journaled plan line (表165 / 3506's table)."""
        setl = detail.get("setlinfo") or {}
        return {
            "med_list_codg": line["catalogue_code"], "fixmedins_hilist_id": line["sku"],
            "fixmedins_hilist_name": str(line["name"])[:200], "fixmedins_bchno": "",
            "rx_flag": "1" if line.get("prescription") else "0",
            "trdn_flag": "1" if line.get("split_pack") else "0",
            "finl_trns_pric": yuan_of(int(line["unit_price"])),
            "sel_retn_cnt": int(line["quantity"]), "sel_retn_time": when,
            "sel_retn_opter_name": self.settings.opter_name,
            "mdtrt_sn": str(detail.get("mdtrt_id") or ""),
            "setl_id": str(setl.get("setl_id") or ""), "psn_no": str(setl.get("psn_no") or ""),
            "manu_lotnum": "", "manu_date": "", "drug_prod_barc": "", "mdtrt_setl_type": "1",
            "drugtracinfo": [{"drug_trac_codg": c} for c in line.get("trace_codes") or ()],
        }  # fmt: skip

    # ------------------------------------------------------------------ 3301
    def catalogue_mapping_upload(self, rows: list[dict[str, Any]]) -> None:
        """3301 目录对照上传: ``rows`` (the pharmacy's SKU -> national code, checked by
        ``nhsa.mapping``) in one call, ``{"data": [...]}``. A resend stores the same
        mapping again (the platform keeps one per SKU), so retried."""
        self.platform.call("3301", {"data": rows}, opter=self.settings.opter, safe=True)

    # ------------------------------------------------------------------ 1312
    def catalogue_page(self, page_num: int, page_size: int) -> tuple[list[dict[str, Any]], int]:
        """One page of the platform's drug catalogue (1312): (rows, number of pages)."""
        data = {"data": {"query_date": "", "hilist_code": "", "insu_admdvs":
                         self.settings.mdtrtarea_admvs, "begndate": "", "hilist_name": "",
                         "updt_time": "", "page_num": page_num, "page_size": page_size}}
        answer = self.platform.call("1312", data, opter=self.settings.opter, safe=True)
        rows = answer.node("data")
        if not isinstance(rows, list):
            rows = []
        try:
            pages = int(str(answer.output.get("pages") or 0))
        except ValueError:
            pages = 0
        return [r for r in rows if isinstance(r, dict) and r.get("hilist_code")], pages

    # ------------------------------------------------------------------ statements
    def statement(
        self, pharmacy_code: str, date: dt.date, terminal_id: str | None = None
    ) -> Statement:
        raise e.LedgerError("3201/3202 reconciliation is not built yet (issue 13)",
                            code="statement_unsupported")  # fmt: skip

    def statement_compact(
        self, pharmacy_code: str, date: dt.date, terminal_id: str | None = None
    ) -> CompactStatement:
        raise e.LedgerError("3201/3202 reconciliation is not built yet (issue 13)",
                            code="statement_unsupported")  # fmt: skip


def line_levels(lines: Sequence[LineSummary], cut: Sequence[Mapping[str, Any]]
                ) -> list[str | None]:  # fmt: skip
    """Each basket line's ``chrgitm_lv`` (01 甲 / 02 乙 / 03 丙) from the 2102 answer's
    detlcutinfo, matched by feedetl_sn (the n-th line that had a catalogue code is "n",
    as ``inputs.drug_input`` numbered them); None for a line never sent or not classed."""
    by_sn = {str(r.get("feedetl_sn") or ""): str(r.get("chrgitm_lv") or "") or None for r in cut}
    out: list[str | None] = []
    n = 0
    for line in lines:
        if line.catalogue_code:
            n += 1
            out.append(by_sn.get(str(n)))
        else:
            out.append(None)
    return out


def _setl_time(value: object, fallback: dt.datetime) -> dt.datetime:
    """The answer's ``setl_time`` (China time), or ``fallback`` when absent or unreadable."""
    if isinstance(value, str):
        try:
            return dt.datetime.strptime(value[:19], env.INF_TIME).replace(tzinfo=env.CHINA)
        except ValueError:
            pass
    return fallback.astimezone(env.CHINA)


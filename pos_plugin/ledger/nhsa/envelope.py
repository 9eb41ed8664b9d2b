"""The request envelope (every field of the interface's table) and a tolerant answer parser.

Why tolerant: real answers differ from the tables and from each other: ``infcode``
as ``0`` or ``"0"``, empty values as the strings ``"null"``/``"NULL"``, camelCase keys
(``expContent``), nodes outside ``output``, extra keys (``warn_msg``, ``enctype``).
All of that is normalised here once, so the client reads one shape. What is *not*
tolerated is an answer that is not a JSON object or has no ``infcode``: that is a
fault the caller must treat as "we cannot tell what happened".
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import simplejson

from pos_plugin.ledger.nhsa.settings import NhsaSettings

CHINA = dt.timezone(dt.timedelta(hours=8), "CST")
"""China time: a fixed UTC+8 (no DST since 1991), so no tz database is needed on Windows."""

INF_TIME = "%Y-%m-%d %H:%M:%S"
MSGID_RE = re.compile(r"^[A-Z0-9]{12}\d{14}\d{4}$")
_NULLS = frozenset({"null", "NULL", "Null", "None"})
_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")


class AnswerError(ValueError):
    """The answer cannot be read as an envelope (not JSON, not an object, no infcode)."""


def build(
    infno: str,
    msgid: str,
    data: Mapping[str, Any],
    *,
    settings: NhsaSettings,
    opter: str,
    sign_no: str = "",
    insuplc_admdvs: str = "",
    now: dt.datetime,
) -> dict[str, Any]:
    """One request envelope: every field of the table, in its order; empty ones as "".

    ``insuplc_admdvs`` is the insured's region from their 1101 answer, sent on every
    call whose input carries psn_no (required for 异地 patients, harmless locally).
    """
    return {
        "infno": infno,
        "msgid": msgid,
        "mdtrtarea_admvs": settings.mdtrtarea_admvs,
        "insuplc_admdvs": insuplc_admdvs,
        "recer_sys_code": settings.recer_sys_code,
        "dev_no": settings.dev_no,
        "dev_safe_info": "",
        "cainfo": "",
        "signtype": "",
        "infver": settings.infver,
        "opter_type": settings.opter_type,
        "opter": opter[:30],
        "opter_name": settings.opter_name_of(opter),
        "inf_time": now.astimezone(CHINA).strftime(INF_TIME),
        "fixmedins_code": settings.fixmedins_code,
        "fixmedins_name": settings.fixmedins_name,
        "sign_no": sign_no,
        "input": dict(data),
    }


def encode(envelope: Mapping[str, Any]) -> bytes:
    """UTF-8 JSON; ``Decimal`` amounts as JSON numbers (``12.30``), never via float.

    simplejson's ``use_decimal`` writes a Decimal's own digits; the standard ``json``
    module cannot write a Decimal as a number at all.
    """
    text: str = simplejson.dumps(
        envelope, use_decimal=True, ensure_ascii=False, separators=(",", ":")
    )
    return text.encode("utf-8")


def _key(key: str) -> str:
    """``expContent`` -> ``exp_content``; ``INFCODE`` -> ``infcode``; snake keys unchanged."""
    if key.isupper() or key.islower():
        return key.lower()
    return _CAMEL.sub(r"_\1", key).lower()


def normalise(value: Any) -> Any:
    """Keys to lower snake case, ``"null"``/``"NULL"``/``""`` to None, recursively."""
    if isinstance(value, dict):
        return {_key(str(k)): normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalise(v) for v in value]
    if isinstance(value, str):
        text = value.strip()
        return None if text in _NULLS or text == "" else value
    return value


def _reject_constant(name: str) -> Any:
    raise AnswerError(f"the answer holds {name}, which is no number")


def _loads(body: bytes) -> Any:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = body.decode("gb18030", errors="strict")  # some gateways answer in GBK
    return json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)


@dataclass(frozen=True)
class Answer:
    """A parsed answer: ``ok`` when ``infcode`` is 0; ``output`` always a dict."""

    infcode: int
    err_msg: str = ""
    output: dict[str, Any] = field(default_factory=dict)
    inf_refmsgid: str = ""
    warn_msg: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # nodes outside output (idetinfo)
    content: bytes | None = None  # 9102: the file itself (an application/octet-stream answer)

    @property
    def ok(self) -> bool:
        return self.infcode == 0

    def node(self, name: str) -> Any:
        """An output node, looked for in ``output`` first and then beside it."""
        if self.output.get(name) is not None:
            return self.output[name]
        return self.extra.get(name)


_ENVELOPE_KEYS = frozenset(
    {"infcode", "inf_refmsgid", "refmsg_time", "respond_time", "err_msg", "output",
     "warn_msg", "cainfo", "signtype", "enctype"}
)  # fmt: skip


def parse(body: bytes) -> Answer:
    """Read an answer tolerantly (module docstring); raise ``AnswerError`` if it is none."""
    try:
        raw = _loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise AnswerError(f"the answer is not JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise AnswerError("the answer is not a JSON object")
    doc = normalise(raw)
    code = doc.get("infcode", doc.get("inf_code"))
    try:
        infcode = int(str(code).strip()) if code is not None else None
    except ValueError:
        infcode = None
    if infcode is None:
        raise AnswerError(f"the answer has no readable infcode ({code!r})")
    output = doc.get("output")
    if isinstance(output, str):  # a gateway that sends output as a JSON string
        try:
            output = normalise(_loads(output.encode("utf-8")))
        except ValueError as exc:
            raise AnswerError("the answer's output is a string that is not JSON") from exc
    if output is None:
        output = {}
    if not isinstance(output, dict):
        raise AnswerError("the answer's output is not a JSON object")
    return Answer(
        infcode=infcode,
        err_msg=str(doc.get("err_msg") or ""),
        output=output,
        inf_refmsgid=str(doc.get("inf_refmsgid") or ""),
        warn_msg=str(doc.get("warn_msg") or ""),
        extra={k: v for k, v in doc.items() if k not in _ENVELOPE_KEYS},
    )


def text(node: Any, key: str) -> str:
    """A string field of a node, "" when absent or empty (ints and Decimals as text)."""
    if not isinstance(node, dict):
        return ""
    value = node.get(key)
    return "" if value is None else str(value)

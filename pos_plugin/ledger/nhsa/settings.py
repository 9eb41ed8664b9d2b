"""``NhsaSettings``: what one pharmacy's national-platform connection needs, validated.

Why a model of its own: every province deviates (signer, versions, receiving system,
timeouts), so each choice is a setting, never a constant in the client; and a bad key
is named at start-up (``extra="forbid"``) instead of silently using a default. Secrets
are not here: only the keyring names under which they live (config.toml holds none).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

SignerKind = Literal["plain", "hmac-sha1", "x-tif"]


class NhsaSettings(BaseModel):
    """The ``[nhsa]`` table. Lengths are the envelope table's (docs/nhsa.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    fixmedins_code: Annotated[str, Field(pattern=r"^[A-Z0-9]{12}$")]
    fixmedins_name: Annotated[str, Field(min_length=1, max_length=20)]
    mdtrtarea_admvs: Annotated[str, Field(pattern=r"^\d{6}$")]
    # Hunan's samples send "99"; Inner Mongolia YBXT (LXXT / GSXT for 离休 / 工伤).
    recer_sys_code: Annotated[str, Field(min_length=1, max_length=10)] = "99"
    infver: Annotated[str, Field(min_length=1, max_length=6)] = "V1.0"
    opter_type: Literal["1", "2", "3"] = "1"  # 1 经办人, 2 自助终端, 3 移动终端
    # The operator of calls that have no sale behind them (1101 at card read, 9001).
    opter: Annotated[str, Field(min_length=1, max_length=20)] = "0001"
    opter_name: Annotated[str, Field(min_length=1, max_length=50)] = "收银员"
    # Operator id -> name, for opter_name; an operator not listed is named by its id.
    opter_names: dict[str, Annotated[str, Field(min_length=1, max_length=50)]] = {}
    signer: SignerKind = "plain"
    content_type: str = "application/json"  # Guangdong: "text/plain; charset=utf-8"
    # 9101's file: "json" = Base64 in ``fsUploadIn.in`` (openhis), "multipart" = a
    # ``jsonStr`` + ``file`` form (the Guangdong demo, Hunan appendix A).
    upload_encoding: Literal["json", "multipart"] = "json"
    # The 2102 detail row's traceability node: the table spells it "durg_trac_info", the
    # change log "drug_trac_info" (NHSA.md §2); the province's access document decides.
    trace_info_key: Literal["durg_trac_info", "drug_trac_info"] = "durg_trac_info"
    presettle: bool = False  # 2101 before each 2102 (one more round trip)
    connect_timeout: Annotated[float, Field(gt=0, le=60)] = 3.0
    read_timeout: Annotated[float, Field(gt=0, le=120)] = 15.0
    # Attempts after the first for calls that are safe to repeat (1101, 2101, 2601, 9001).
    retries: Annotated[int, Field(ge=0, le=10)] = 2
    backoff_base: Annotated[float, Field(ge=0, le=10)] = 0.2
    # First sequence digit of the msgids this client makes itself (9001, 1101, 2101,
    # 2601, 9002): a till index no till of the pharmacy uses (docs/nhsa.md).
    msgid_digit: Annotated[int, Field(ge=0, le=9)] = 9
    # 9001's signIn.mac / .ip; empty: this machine's (uuid.getnode, the route to the URL).
    sign_in_mac: Annotated[str, Field(max_length=20)] = ""
    sign_in_ip: Annotated[str, Field(max_length=20)] = ""
    dev_no: Annotated[str, Field(max_length=100)] = ""
    # hmac-sha1 (Hunan gateway): _api_name is this with {infno} filled in.
    api_name: Annotated[str, Field(min_length=1, max_length=100)] = "{infno}"
    api_version: Annotated[str, Field(min_length=1, max_length=100)] = "1.0.0"
    # Keyring names of the secrets (the lead's config reads them into ``secrets``).
    access_key_name: str = "nhsa_access_key"
    secret_key_name: str = "nhsa_secret_key"
    paasid_name: str = "nhsa_paasid"
    paas_token_name: str = "nhsa_paas_token"

    def secret_names(self) -> tuple[str, ...]:
        """The keyring names the chosen signer needs (none for ``plain``)."""
        if self.signer == "hmac-sha1":
            return (self.access_key_name, self.secret_key_name)
        if self.signer == "x-tif":
            return (self.paasid_name, self.paas_token_name)
        return ()

    def opter_name_of(self, opter: str) -> str:
        """The operator's name for ``opter_name`` (50 characters at most)."""
        if opter == self.opter:
            return self.opter_name
        return self.opter_names.get(opter, opter)[:50]

"""Per-province request signing: the headers each gateway checks, from the keyring's secrets.

Why pluggable: the same envelope reaches the platform through different gateways.
- ``plain``: no signature (a platform reached over the pharmacy's private line).
- ``hmac-sha1`` (Hunan's service gateway, 表5): ``_api_name``, ``_api_version``,
  ``_api_timestamp`` (13-digit ms), ``_api_access_key`` and ``_api_signature`` =
  Base64(HmacSHA1(SK, "k=v&..." over the four other headers in natural key order)).
  The gateway refuses a timestamp more than 30 minutes off.
- ``x-tif`` (the TIF gateway): ``x-tif-paasid``, ``x-tif-timestamp`` (s),
  ``x-tif-nonce`` and ``x-tif-signature`` = hex(SHA-256(timestamp + token + nonce +
  timestamp)).
SM2 (``cainfo``) and SM4-encrypted ``input`` (Jilin) need a transform of the envelope
itself, not headers: docs/nhsa.md says where it plugs in; it is not built here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets as _random
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from pos_plugin.ledger.nhsa.settings import NhsaSettings


class Signer(Protocol):
    """Headers to add to one POST of ``infno`` (the body is given for signers that hash it)."""

    def headers(self, infno: str, body: bytes) -> dict[str, str]: ...


class PlainSigner:
    """No signature headers."""

    def headers(self, infno: str, body: bytes) -> dict[str, str]:
        return {}


class HmacSha1Signer:
    """Hunan's ``_api_*`` gateway headers (see the module docstring)."""

    def __init__(
        self,
        access_key: str,
        secret_key: str,
        *,
        api_name: str = "{infno}",
        api_version: str = "1.0.0",
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self.access_key, self._secret = access_key, secret_key.encode("utf-8")
        self.api_name, self.api_version = api_name, api_version
        self._clock_ms = clock_ms

    def headers(self, infno: str, body: bytes) -> dict[str, str]:
        fields = {
            "_api_access_key": self.access_key,
            "_api_name": self.api_name.format(infno=infno),
            "_api_timestamp": str(self._clock_ms()),
            "_api_version": self.api_version,
        }
        plain = "&".join(f"{k}={v}" for k, v in sorted(fields.items()))
        digest = hmac.new(self._secret, plain.encode("utf-8"), hashlib.sha1).digest()
        return {**fields, "_api_signature": base64.b64encode(digest).decode("ascii")}


def _nonce() -> str:
    """Peers send hex(ms) + "-" + hex(random 24 bits); any unique string does."""
    return f"{time.time_ns() // 1_000_000:x}-{_random.randbelow(0xFFFFFF):x}"


class XTifSigner:
    """The TIF gateway's ``x-tif-*`` headers (see the module docstring)."""

    def __init__(
        self,
        paasid: str,
        token: str,
        *,
        clock_s: Callable[[], int] = lambda: int(time.time()),
        nonce: Callable[[], str] = _nonce,
    ) -> None:
        self.paasid, self._token = paasid, token
        self._clock_s, self._nonce = clock_s, nonce

    def headers(self, infno: str, body: bytes) -> dict[str, str]:
        stamp, nonce = str(self._clock_s()), self._nonce()
        digest = hashlib.sha256(f"{stamp}{self._token}{nonce}{stamp}".encode()).hexdigest()
        return {
            "x-tif-paasid": self.paasid,
            "x-tif-timestamp": stamp,
            "x-tif-nonce": nonce,
            "x-tif-signature": digest,
        }


def make_signer(settings: NhsaSettings, secrets: Mapping[str, str]) -> Signer:
    """The configured signer; a secret it needs that is missing is named (never shown)."""
    missing = [name for name in settings.secret_names() if not secrets.get(name)]
    if missing:
        raise ValueError(
            f"the nhsa signer {settings.signer!r} needs the keyring secret(s) "
            f"{', '.join(missing)}: run `pos-plugin secrets set NAME` for each"
        )
    if settings.signer == "hmac-sha1":
        return HmacSha1Signer(
            secrets[settings.access_key_name],
            secrets[settings.secret_key_name],
            api_name=settings.api_name,
            api_version=settings.api_version,
        )
    if settings.signer == "x-tif":
        return XTifSigner(secrets[settings.paasid_name], secrets[settings.paas_token_name])
    return PlainSigner()

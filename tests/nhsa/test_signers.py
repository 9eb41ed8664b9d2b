"""Signers against known vectors: the Hunan gateway's HmacSHA1 as hzg's SDK computes it
(core/gateway_auth.py, GatewayHeaders with a fixed timestamp; openssl agrees) and x-tif's
SHA-256 as sha256sum computes it."""

from __future__ import annotations

import pytest

from pos_plugin.ledger.nhsa.signers import (
    HmacSha1Signer,
    PlainSigner,
    XTifSigner,
    make_signer,
)
from tests.nhsa.conftest import settings


def test_hmac_sha1_matches_the_sdk_vector() -> None:
    signer = HmacSha1Signer("AK-TEST-0001", "SK-test-secret", api_version="1.0.0",
                            clock_ms=lambda: 1700000000123)  # fmt: skip
    assert signer.headers("1101", b"{}") == {
        "_api_name": "1101",
        "_api_version": "1.0.0",
        "_api_timestamp": "1700000000123",
        "_api_access_key": "AK-TEST-0001",
        "_api_signature": "qUkC4yBqEZQLtfmgoRJixKYnQ7g=",
    }


def test_hmac_sha1_api_name_template() -> None:
    signer = HmacSha1Signer("a", "b", api_name="hsa.fsi.{infno}", clock_ms=lambda: 1)
    assert signer.headers("2102", b"")["_api_name"] == "hsa.fsi.2102"


def test_x_tif_matches_sha256sum() -> None:
    signer = XTifSigner("paas-1", "tif-token-0001", clock_s=lambda: 1700000000,
                        nonce=lambda: "abc-123456")  # fmt: skip
    assert signer.headers("1101", b"{}") == {
        "x-tif-paasid": "paas-1",
        "x-tif-timestamp": "1700000000",
        "x-tif-nonce": "abc-123456",
        "x-tif-signature": "d5191a99eb41e06906d4bbfa71a0ed11b78c0aa6bfa573cb5829dc133ffa72bf",
    }


def test_x_tif_nonce_differs_per_request() -> None:
    signer = XTifSigner("p", "t")
    assert signer.headers("1101", b"")["x-tif-nonce"] != signer.headers("1101", b"")["x-tif-nonce"]


def test_make_signer_by_setting_and_missing_secrets_named_not_shown() -> None:
    assert isinstance(make_signer(settings(), {}), PlainSigner)
    hm = make_signer(settings(signer="hmac-sha1"),
                     {"nhsa_access_key": "ak", "nhsa_secret_key": "sk"})  # fmt: skip
    assert isinstance(hm, HmacSha1Signer)
    with pytest.raises(ValueError, match="nhsa_paas_token") as got:
        make_signer(settings(signer="x-tif"), {"nhsa_paasid": "visible-id"})
    assert "visible-id" not in str(got.value)

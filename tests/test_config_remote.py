"""Issue 11, finding 7: the API off loopback only with TLS, and the ledger off loopback
only over https. Real TOML files through ``load_config``; each refusal names its key."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import requests
from fastapi import FastAPI

from pos_plugin.agent import ApiServer
from pos_plugin.config import ConfigError, load_config

PHARMACY = '[pharmacy]\ncode = "H11010500001"\nterminal_id = "T1"\n'


def _config(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "config.toml"
    p.write_text(PHARMACY + text, "utf-8")
    return p


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A throw-away certificate for 127.0.0.1 (made here: no key is kept in the repo)."""
    pytest.importorskip("cryptography")
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "api.crt", tmp_path / "api.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def test_an_api_host_off_loopback_is_refused_naming_the_keys(tmp_path: Path) -> None:
    """It was accepted silently: the POS API and its tokens open to the shop network."""
    for host in ("0.0.0.0", "192.168.1.20", "::", "till-3.shop.example"):
        p = _config(tmp_path, f'[api]\nhost = "{host}"\n')
        with pytest.raises(ConfigError) as e:
            load_config(p)
        text = str(e.value)
        assert "api.host" in text and "api.allow_remote = true" in text
        assert "api.tls_cert" in text and "api.tls_key" in text and "TLS" in text


def test_allow_remote_without_tls_is_refused_naming_the_tls_keys(tmp_path: Path) -> None:
    p = _config(tmp_path, '[api]\nhost = "0.0.0.0"\nallow_remote = true\n')
    with pytest.raises(ConfigError, match=r"api\.tls_cert and api\.tls_key"):
        load_config(p)
    p = _config(tmp_path, '[api]\nhost = "0.0.0.0"\nallow_remote = true\n'
                          f'tls_cert = "{(tmp_path / "nope.crt").as_posix()}"\n')  # fmt: skip
    with pytest.raises(ConfigError, match=r"both api\.tls_cert and api\.tls_key"):
        load_config(p)
    missing = (tmp_path / "nope.crt").as_posix()
    p = _config(tmp_path, '[api]\nhost = "0.0.0.0"\nallow_remote = true\n'
                          f'tls_cert = "{missing}"\ntls_key = "{missing}"\n')  # fmt: skip
    with pytest.raises(ConfigError, match=r"api\.tls_cert = .*no such file"):
        load_config(p)


def test_loopback_hosts_need_nothing_more(tmp_path: Path) -> None:
    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        assert load_config(_config(tmp_path, f'[api]\nhost = "{host}"\n')).api.host == host


def test_allow_remote_with_tls_serves_https(tmp_path: Path) -> None:
    """The accepted remote config really is TLS: its files reach uvicorn, and the API
    answers over https (tested on loopback, with the certificate as the only CA)."""
    cert, key = _self_signed(tmp_path)
    cfg = load_config(_config(tmp_path, '[api]\nhost = "0.0.0.0"\nallow_remote = true\n'
                                        f'tls_cert = "{cert.as_posix()}"\n'
                                        f'tls_key = "{key.as_posix()}"\n'))  # fmt: skip
    assert cfg.api.allow_remote and cfg.api.tls_cert == cert.as_posix()
    app = FastAPI()

    @app.get("/ping")
    def ping() -> dict[str, bool]:
        return {"pong": True}

    server = ApiServer(app, "127.0.0.1", 0, tls_cert=cfg.api.tls_cert, tls_key=cfg.api.tls_key)
    url = server.start()
    try:
        assert url.startswith("https://127.0.0.1:")
        assert requests.get(f"{url}/ping", verify=str(cert), timeout=10).json() == {"pong": True}
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(url.replace("https://", "http://") + "/ping", timeout=10)
    finally:
        server.stop()


def test_a_plain_http_ledger_off_loopback_is_refused_naming_the_key(tmp_path: Path) -> None:
    for url in ("http://ledger.example.com", "http://10.0.0.5:8443/v1", "http://[fe80::1]"):
        with pytest.raises(ConfigError) as e:
            load_config(_config(tmp_path, f'[ledger]\nurl = "{url}"\n'))
        assert "ledger.url" in str(e.value) and "https://" in str(e.value)
    for url in ("ftp://ledger.example.com", "ledger.example.com", "https://"):
        with pytest.raises(ConfigError, match=r"ledger\.url"):
            load_config(_config(tmp_path, f'[ledger]\nurl = "{url}"\n'))


def test_https_anywhere_and_http_on_loopback_are_accepted(tmp_path: Path) -> None:
    for url in ("https://ledger.example.com", "http://127.0.0.1:9000", "http://localhost:9",
                "http://[::1]:9000"):  # fmt: skip
        assert load_config(_config(tmp_path, f'[ledger]\nurl = "{url}"\n')).ledger.url == url

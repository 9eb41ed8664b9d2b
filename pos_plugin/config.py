"""Configuration: a TOML file for settings, the OS keyring for secrets.

config.toml holds no secret. The ledger token, the local API tokens and the
journal's HMAC key live in the keyring (``keyring`` picks the OS backend:
Windows Credential Locker, macOS Keychain, Secret Service on Linux). A headless
till without a backend gets an error that says exactly how to configure one.
"""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from drivers.readers.settings import ReaderConfig
from pos_plugin.ledger.nhsa.settings import NhsaSettings
from pos_plugin.rules.family import ProvincePair, parse_province_pair

KEYRING_SERVICE = "pos-plugin"


class ConfigError(Exception):
    """A configuration problem, said in words an installer can act on."""


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1).

    A name is not resolved: any other name may reach beyond this machine, so it
    counts as remote (the safe side for the checks below).
    """
    host = host.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_ledger_url(url: str, key: str = "ledger.url") -> str:
    """A ledger URL is https, or plain http on loopback only (a sandbox on this machine).

    Why: the ledger token and every settlement travel in that connection; off this
    machine plain HTTP would hand them to anyone on the shop's network.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{key} must be an https:// URL with a host, not {url!r}")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ValueError(
            f"{key} {url!r} is plain http:// to {parts.hostname}, which is not this machine: "
            "the ledger token and the settlements would cross the network unencrypted. "
            "Use https:// (http:// is allowed only on loopback: 127.0.0.1, ::1, localhost)"
        )
    return url


class _C(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PharmacyConfig(_C):
    code: Annotated[str, Field(pattern=r"^[A-Z0-9]{12}$")]
    terminal_id: Annotated[str, Field(min_length=1, max_length=20)]
    # 0-9, distinct for each till of the pharmacy: the first digit of every msgid's
    # sequence, so two tills never issue the same msgid in the same second.
    till_index: Annotated[int, Field(ge=0, le=9)] = 0
    operator: str = "cashier"


class LedgerConfig(_C):
    # "own": our own ledger API (docs/ledger-api.md); "nhsa": the national platform's
    # pharmacy interface (docs/nhsa.md), configured in the [nhsa] table.
    kind: Literal["own", "nhsa"] = "own"
    url: str = "https://ledger.example.invalid"
    connect_timeout: Annotated[float, Field(gt=0, le=60)] = 3.0
    read_timeout: Annotated[float, Field(gt=0, le=120)] = 10.0
    ca_bundle: str | None = None
    cross_province_pairs: list[str] = []

    @field_validator("url")
    @classmethod
    def _tls_off_loopback(cls, v: str) -> str:
        return check_ledger_url(v)

    @field_validator("cross_province_pairs")
    @classmethod
    def _pairs(cls, v: list[str]) -> list[str]:
        for text in v:
            parse_province_pair(text)  # raises ValueError with the reason
        return v

    def opened_pairs(self) -> frozenset[ProvincePair]:
        return frozenset(parse_province_pair(t) for t in self.cross_province_pairs)


class SerialConfig(_C):
    url: str = "/dev/ttyUSB0"  # or COM3, socket://host:port, rfc2217://..., loop://
    baudrate: Annotated[int, Field(gt=0)] = 9600
    card_timeout: Annotated[float, Field(gt=0, le=600)] = 60.0
    pin_timeout: Annotated[float, Field(gt=0, le=600)] = 60.0
    # After a sale or inquiry with a card: how long to watch for the card to be taken.
    card_removal_timeout: Annotated[float, Field(gt=0, le=600)] = 30.0


class ApiConfig(_C):
    """The local API. On loopback by default: it speaks plain HTTP with bearer tokens,
    which anyone on the shop's network could read off the wire.

    A host off loopback (say ``0.0.0.0`` for a POS on another machine) is refused
    unless ``allow_remote = true`` *and* TLS is set up (``tls_cert``, ``tls_key``: PEM
    files handed to uvicorn), so the tokens never cross the network in clear.
    """

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8765
    allow_remote: bool = False
    tls_cert: str | None = None  # PEM certificate (chain) file
    tls_key: str | None = None  # PEM private key file

    @model_validator(mode="after")
    def _remote_needs_tls(self) -> ApiConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("give both api.tls_cert and api.tls_key (PEM files), or neither")
        for key, value in (("api.tls_cert", self.tls_cert), ("api.tls_key", self.tls_key)):
            if value is not None and not Path(value).is_file():
                raise ValueError(f"{key} = {value!r}: no such file")
        if is_loopback_host(self.host):
            return self
        if not self.allow_remote:
            raise ValueError(
                f"api.host = {self.host!r} is not a loopback address, so the POS API (and its "
                "bearer tokens) would be reachable from the network. Keep api.host = "
                '"127.0.0.1", or set api.allow_remote = true together with api.tls_cert and '
                "api.tls_key (PEM files) so the API is served over TLS"
            )
        if self.tls_cert is None:
            raise ValueError(
                f"api.allow_remote = true with api.host = {self.host!r} needs TLS: set "
                "api.tls_cert and api.tls_key (PEM files) so the bearer tokens are encrypted"
            )
        return self


class JournalConfig(_C):
    """The till's own SQLite file (``path``), or a shared PostgreSQL journal (``url``).

    The URL should hold no password: it is read from the keyring secret
    ``journal_db_password`` (or libpq's PGPASSWORD / ~/.pgpass when that is unset).
    """

    path: str = "journal.sqlite3"
    url: str | None = None

    @field_validator("url")
    @classmethod
    def _postgres_url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("postgresql://", "postgres://")):
            raise ValueError("give a postgresql://user@host:port/database URL")
        return v

    @model_validator(mode="after")
    def _one_journal(self) -> JournalConfig:
        if self.url is not None and "path" in self.model_fields_set:
            raise ValueError(
                "give journal.path (a SQLite file) or journal.url (PostgreSQL), not both"
            )
        return self

    @property
    def target(self) -> str:
        """What ``Journal`` opens: the URL when one is given, else the file."""
        return self.url or self.path


class Config(_C):
    pharmacy: PharmacyConfig
    ledger: LedgerConfig = LedgerConfig()
    nhsa: NhsaSettings | None = None  # the national platform's connection (ledger.kind = "nhsa")
    serial: SerialConfig = SerialConfig()
    reader: ReaderConfig = ReaderConfig()
    api: ApiConfig = ApiConfig()
    journal: JournalConfig = JournalConfig()

    @model_validator(mode="after")
    def _backend_table(self) -> Config:
        if self.ledger.kind == "nhsa" and self.nhsa is None:
            raise ValueError(
                'ledger.kind = "nhsa" needs an [nhsa] table: fixmedins_code, fixmedins_name, '
                "mdtrtarea_admvs at least (see config.example.toml and docs/nhsa.md)"
            )
        if self.ledger.kind == "own" and self.nhsa is not None:
            raise ValueError(
                'an [nhsa] table is given but ledger.kind is "own": set ledger.kind = "nhsa" '
                "to settle through the national platform, or remove the [nhsa] table"
            )
        return self


def load_config(path: str | Path) -> Config:
    """Load and validate a config file; every error names the key and the problem."""
    p = Path(path)
    try:
        data: dict[str, Any] = tomllib.loads(p.read_text("utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"config file {p} not found: copy config.example.toml and edit it"
        ) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p} is not valid TOML: {e}") from None
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors()
        )
        raise ConfigError(f"{p}: {problems}") from None


# --------------------------------------------------------------------------- secrets

SECRET_NAMES = ("ledger_token", "pos_token", "manager_token", "journal_hmac_key")
# Needed only by some installations (a shared PostgreSQL journal whose URL holds no
# password): ``secrets check`` reports them without failing when unset.
OPTIONAL_SECRET_NAMES = (
    "journal_db_password",
    # The national platform's gateway, by signer ([nhsa] signer): hmac-sha1, x-tif.
    "nhsa_access_key",
    "nhsa_secret_key",
    "nhsa_paasid",
    "nhsa_paas_token",
)
ALL_SECRET_NAMES = SECRET_NAMES + OPTIONAL_SECRET_NAMES

NO_BACKEND_HELP = (
    "no usable OS keyring backend was found. On Windows and macOS the system keyring "
    "works out of the box. On a headless Linux till either run a Secret Service "
    "(e.g. `apt-get install gnome-keyring dbus-x11` and start it in the agent's session), "
    "or install the encrypted file backend: `pip install keyrings.cryptfile` and set "
    "PYTHON_KEYRING_BACKEND=keyrings.cryptfile.cryptfile.CryptFileKeyring with "
    "KEYRING_CRYPTFILE_PASSWORD in the service's environment. Then run "
    "`pos-plugin secrets set NAME` for each of: " + ", ".join(SECRET_NAMES) + "."
)


def get_secret(name: str) -> str:
    """Read one secret from the keyring, or raise ConfigError saying how to set it."""
    value = _read_secret(name)
    if not value:
        raise ConfigError(
            f"secret {name!r} is not set in the keyring: run `pos-plugin secrets set {name}`"
        )
    return value


def get_optional_secret(name: str) -> str | None:
    """A secret some installations need (``OPTIONAL_SECRET_NAMES``): None when unset."""
    return _read_secret(name) or None


def journal_password(journal: JournalConfig) -> str | None:
    """The shared journal's password: None for a SQLite journal or a URL that holds one;
    else the keyring's ``journal_db_password``, or None to let libpq look (PGPASSWORD,
    ~/.pgpass, or no password at all)."""
    if journal.url is None:
        return None
    from pos_plugin.journal.postgres import url_has_password

    if url_has_password(journal.url):
        return None
    return get_optional_secret("journal_db_password")


def _read_secret(name: str) -> str | None:
    import keyring
    from keyring.errors import KeyringError, NoKeyringError

    if name not in ALL_SECRET_NAMES:
        raise ConfigError(f"unknown secret {name!r}; known: {', '.join(ALL_SECRET_NAMES)}")
    try:
        value = keyring.get_password(KEYRING_SERVICE, name)
    except NoKeyringError:
        raise ConfigError(NO_BACKEND_HELP) from None
    except KeyringError as e:
        raise ConfigError(f"the keyring could not be read ({e}). {NO_BACKEND_HELP}") from None
    if _is_fail_backend(keyring.get_keyring()):
        raise ConfigError(NO_BACKEND_HELP)
    return value


def set_secret(name: str, value: str) -> None:
    import keyring
    from keyring.errors import KeyringError, NoKeyringError

    if name not in ALL_SECRET_NAMES:
        raise ConfigError(f"unknown secret {name!r}; known: {', '.join(ALL_SECRET_NAMES)}")
    if _is_fail_backend(keyring.get_keyring()):
        raise ConfigError(NO_BACKEND_HELP)
    try:
        keyring.set_password(KEYRING_SERVICE, name, value)
    except (NoKeyringError, KeyringError) as e:
        raise ConfigError(f"the keyring refused the secret ({e}). {NO_BACKEND_HELP}") from None


def _is_fail_backend(backend: object) -> bool:
    return type(backend).__module__.startswith("keyring.backends.fail")

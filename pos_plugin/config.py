"""Configuration: a TOML file for settings, the OS keyring for secrets.

config.toml holds no secret. The ledger token, the local API tokens and the
journal's HMAC key live in the keyring (``keyring`` picks the OS backend:
Windows Credential Locker, macOS Keychain, Secret Service on Linux), or, for an
unattended till run as a service, in a file only the service can read
(``[secrets] store = "file"``, pos_plugin/secrets_store.py). A till without a
usable store gets an error that says exactly how to configure one.
"""

from __future__ import annotations

import ipaddress
import sys
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from drivers.readers.settings import ReaderConfig
from pos_plugin.ledger.nhsa.settings import NhsaSettings
from pos_plugin.paths import default_data_dir, default_log_dir, resolve
from pos_plugin.rules.family import ProvincePair, parse_province_pair
from pos_plugin.secrets_store import (  # the names live there: the CLI parser needs them
    ALL_SECRET_NAMES,
    SECRET_NAMES,
    FileStore,
    KeyringStore,
    SecretStore,
    SecretStoreError,
)


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
    # The reader's port: COM3 on Windows, /dev/ttyUSB0 on Linux, or a pyserial URL
    # (socket://host:port, rfc2217://host:port); by default the usual first port of each OS.
    url: str = "COM3" if sys.platform == "win32" else "/dev/ttyUSB0"
    baudrate: Annotated[int, Field(gt=0)] = 9600
    card_timeout: Annotated[float, Field(gt=0, le=600)] = 60.0
    pin_timeout: Annotated[float, Field(gt=0, le=600)] = 60.0
    # After a sale or inquiry with a card: how long to watch for the card to be taken.
    card_removal_timeout: Annotated[float, Field(gt=0, le=600)] = 30.0
    # Every frame on the serial line, in hex with card data masked, at DEBUG in the log.
    trace: bool = False


class DataConfig(_C):
    """The data folder (pos_plugin/paths.py): journal and logs live under it."""

    dir: str | None = None  # relative: from the config file's folder


class LogConfig(_C):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    dir: str | None = None  # default <data>/logs; relative: from the data folder
    max_bytes: Annotated[int, Field(ge=10_000)] = 5_000_000
    backup_count: Annotated[int, Field(ge=1, le=1000)] = 10

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, v: object) -> object:
        return v.upper() if isinstance(v, str) else v


class SecretsConfig(_C):
    """Where the secrets are: the OS keyring, or a file only the service can read.

    ``store = "file"`` is for an unattended till (a service account has no desktop
    keyring, and on Windows another user's Credential Manager is invisible to it);
    docs/operations.md says how to create the file with the right permissions.
    """

    store: Literal["keyring", "file"] = "keyring"
    file: str = "secrets.json"  # relative: from the config file's folder


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


class ReceiptConfig(_C):
    """The till's receipt printer: 58 mm (32 columns) or 80 mm (48 columns) paper, and
    the store name printed at the top (the pharmacy code when left empty)."""

    width: Literal[58, 80] = 80
    store_name: Annotated[str, Field(max_length=64)] = ""


class Config(_C):
    pharmacy: PharmacyConfig
    ledger: LedgerConfig = LedgerConfig()
    nhsa: NhsaSettings | None = None  # the national platform's connection (ledger.kind = "nhsa")
    serial: SerialConfig = SerialConfig()
    reader: ReaderConfig = ReaderConfig()
    api: ApiConfig = ApiConfig()
    journal: JournalConfig = JournalConfig()
    data: DataConfig = DataConfig()
    log: LogConfig = LogConfig()
    secrets: SecretsConfig = SecretsConfig()
    receipt: ReceiptConfig = ReceiptConfig()

    # Set by load_config from where the file is (not keys of the file).
    _config_dir: Path = Path(".")

    @model_validator(mode="before")
    @classmethod
    def _files_from_the_config_folder(cls, data: Any, info: ValidationInfo) -> Any:
        """File settings ([api] tls_cert / tls_key, [ledger] ca_bundle) given relative
        are taken from the config file's folder, not from the working directory (which
        is System32 under a Windows service). Rewritten before the sections check that
        the files exist."""
        base = (info.context or {}).get("config_dir")
        if base is None or not isinstance(data, dict):
            return data
        for section, keys in (("api", ("tls_cert", "tls_key")), ("ledger", ("ca_bundle",))):
            table = data.get(section)
            if not isinstance(table, dict):
                continue
            for key in keys:
                value = table.get(key)
                if isinstance(value, str) and value:
                    table[key] = str(resolve(value, base))
        return data

    @property
    def config_dir(self) -> Path:
        return self._config_dir

    @property
    def data_dir(self) -> Path:
        """``[data] dir`` (relative: from the config file's folder), else the OS default."""
        if self.data.dir:
            return resolve(self.data.dir, self._config_dir)
        return default_data_dir()

    @property
    def log_dir(self) -> Path:
        if self.log.dir:
            return resolve(self.log.dir, self.data_dir)
        return default_log_dir(self.data_dir)

    @property
    def secrets_file(self) -> Path:
        return resolve(self.secrets.file, self._config_dir)

    def serial_url(self) -> str:
        """``[serial] url``, or ConfigError saying what to put there."""
        if not self.serial.url:
            raise ConfigError(
                "[serial] url is not set: give the reader's port (COM3 on Windows, "
                "the ttyUSB0 device on Linux, or socket://host:port)"
            )
        return self.serial.url

    @property
    def journal_target(self) -> str:
        """What the till's Journal opens: the shared journal's URL, or its SQLite file
        with a relative ``[journal] path`` taken from the data folder (never from the
        working directory, which is System32 under a Windows service)."""
        if self.journal.url:
            return self.journal.url
        return str(resolve(self.journal.path, self.data_dir))

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
    except IsADirectoryError:
        raise ConfigError(f"{p} is a folder: give the config.toml file in it") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {p} cannot be read: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p} is not valid TOML: {e}") from None
    try:
        cfg = Config.model_validate(data, context={"config_dir": p.resolve().parent})
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors()
        )
        raise ConfigError(f"{p}: {problems}") from None
    cfg._config_dir = p.resolve().parent
    return cfg


# --------------------------------------------------------------------------- secrets


NO_BACKEND_HELP = (
    "no usable OS keyring backend was found. On Windows and macOS the system keyring works "
    "for a till run by a logged-in user. For a service, or a headless Linux till, keep the "
    'secrets in a file only the service can read: put [secrets] store = "file" in '
    "config.toml (docs/operations.md, \"Secrets\"), then run "
    "`pos-plugin secrets set NAME --config config.toml` as the service's user for each of: "
    + ", ".join(SECRET_NAMES)
    + "."
)


def secret_store(cfg: Config | None = None) -> SecretStore:
    """The store ``cfg`` names (``[secrets] store``); the OS keyring without a config."""
    if cfg is not None and cfg.secrets.store == "file":
        return FileStore(cfg.secrets_file)
    return KeyringStore(NO_BACKEND_HELP)


def get_secret(name: str, store: SecretStore | None = None) -> str:
    """Read one secret, or raise ConfigError saying how to set it."""
    value = _read_secret(name, store)
    if not value:
        where = (store or secret_store()).describe()
        raise ConfigError(
            f"secret {name!r} is not set in {where}: run `pos-plugin secrets set {name}`"
            + ("" if store is None or isinstance(store, KeyringStore) else " --config CONFIG")
        )
    return value


def get_optional_secret(name: str, store: SecretStore | None = None) -> str | None:
    """A secret some installations need (``OPTIONAL_SECRET_NAMES``): None when unset."""
    return _read_secret(name, store) or None


def journal_password(journal: JournalConfig, store: SecretStore | None = None) -> str | None:
    """The shared journal's password: None for a SQLite journal or a URL that holds one;
    else the secret ``journal_db_password``, or None to let libpq look (PGPASSWORD,
    ~/.pgpass, or no password at all)."""
    if journal.url is None:
        return None
    from pos_plugin.journal.postgres import url_has_password

    if url_has_password(journal.url):
        return None
    return get_optional_secret("journal_db_password", store)


def check_store(store: SecretStore | None = None) -> None:
    """Raise ConfigError (once, with the how-to) if the store cannot be used at all."""
    try:
        (store or secret_store()).check()
    except SecretStoreError as e:
        raise ConfigError(str(e)) from None


def _read_secret(name: str, store: SecretStore | None) -> str | None:
    if name not in ALL_SECRET_NAMES:
        raise ConfigError(f"unknown secret {name!r}; known: {', '.join(ALL_SECRET_NAMES)}")
    try:
        return (store or secret_store()).get(name)
    except SecretStoreError as e:
        raise ConfigError(str(e)) from None


def set_secret(name: str, value: str, store: SecretStore | None = None) -> None:
    if name not in ALL_SECRET_NAMES:
        raise ConfigError(f"unknown secret {name!r}; known: {', '.join(ALL_SECRET_NAMES)}")
    try:
        (store or secret_store()).set(name, value)
    except SecretStoreError as e:
        raise ConfigError(str(e)) from None

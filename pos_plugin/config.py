"""Configuration: a TOML file for settings, the OS keyring for secrets.

config.toml holds no secret. The ledger token, the local API tokens and the
journal's HMAC key live in the keyring (``keyring`` picks the OS backend:
Windows Credential Locker, macOS Keychain, Secret Service on Linux). A headless
till without a backend gets an error that says exactly how to configure one.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pos_plugin.rules.family import ProvincePair, parse_province_pair

KEYRING_SERVICE = "pos-plugin"


class ConfigError(Exception):
    """A configuration problem, said in words an installer can act on."""


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
    url: str = "https://ledger.example.invalid"
    connect_timeout: Annotated[float, Field(gt=0, le=60)] = 3.0
    read_timeout: Annotated[float, Field(gt=0, le=120)] = 10.0
    ca_bundle: str | None = None
    cross_province_pairs: list[str] = []

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


class ApiConfig(_C):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8765


class JournalConfig(_C):
    path: str = "journal.sqlite3"


class Config(_C):
    pharmacy: PharmacyConfig
    ledger: LedgerConfig = LedgerConfig()
    serial: SerialConfig = SerialConfig()
    api: ApiConfig = ApiConfig()
    journal: JournalConfig = JournalConfig()


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
    import keyring
    from keyring.errors import KeyringError, NoKeyringError

    if name not in SECRET_NAMES:
        raise ConfigError(f"unknown secret {name!r}; known: {', '.join(SECRET_NAMES)}")
    try:
        value = keyring.get_password(KEYRING_SERVICE, name)
    except NoKeyringError:
        raise ConfigError(NO_BACKEND_HELP) from None
    except KeyringError as e:
        raise ConfigError(f"the keyring could not be read ({e}). {NO_BACKEND_HELP}") from None
    if _is_fail_backend(keyring.get_keyring()):
        raise ConfigError(NO_BACKEND_HELP)
    if not value:
        raise ConfigError(
            f"secret {name!r} is not set in the keyring: run `pos-plugin secrets set {name}`"
        )
    return value


def set_secret(name: str, value: str) -> None:
    import keyring
    from keyring.errors import KeyringError, NoKeyringError

    if name not in SECRET_NAMES:
        raise ConfigError(f"unknown secret {name!r}; known: {', '.join(SECRET_NAMES)}")
    if _is_fail_backend(keyring.get_keyring()):
        raise ConfigError(NO_BACKEND_HELP)
    try:
        keyring.set_password(KEYRING_SERVICE, name, value)
    except (NoKeyringError, KeyringError) as e:
        raise ConfigError(f"the keyring refused the secret ({e}). {NO_BACKEND_HELP}") from None


def _is_fail_backend(backend: object) -> bool:
    return type(backend).__module__.startswith("keyring.backends.fail")

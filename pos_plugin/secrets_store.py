"""Where the till's secrets live: the OS keyring, or a file only the service can read.

Why a file store: an unattended till has no desktop session, so no Secret Service
to unlock on Linux, and keyrings.cryptfile asks for its password on a terminal that
a service does not have (the EOFError of the README's old advice). On Windows the
Credential Manager is per user: what an administrator stores is invisible to the
service account. A file readable only by the service (and root / Administrators) is
what system services do (/etc/shadow, ssh host keys, systemd credentials), needs no
prompt, and is the same on both systems.

* POSIX: the file is created mode 0600 (owner only, written as the service user:
  ``sudo -u pos-plugin pos-plugin secrets set ...``); a file that group or others
  can read is refused, as ssh refuses a readable key.
* Windows: after each write the file's ACL is reset with ``icacls`` to full control
  for SYSTEM (the service runs as LocalSystem) and Administrators only, inheritance
  removed. It lives beside config.toml under %ProgramData%\\pos-plugin.

The file is JSON, ``{"ledger_token": "...", ...}``, written atomically (temp file +
replace), so a crash never leaves half a file.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Protocol

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

KEYRING_SERVICE = "pos-plugin"

# Well-known Windows SIDs: LocalSystem, BUILTIN\Administrators.
_WINDOWS_READERS = ("*S-1-5-18", "*S-1-5-32-544")


class SecretStoreError(Exception):
    """The store cannot be used; the message says how to fix it."""


class SecretStore(Protocol):
    def describe(self) -> str:
        """Where the secrets are, in words for ``secrets check``."""
        ...

    def check(self) -> None:
        """Raise SecretStoreError if the store cannot be read at all."""

    def get(self, name: str) -> str | None: ...

    def set(self, name: str, value: str) -> None: ...


class FileStore:
    """Secrets in one JSON file with owner-only permissions."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def describe(self) -> str:
        return f"the secrets file {self.path}"

    def check(self) -> None:
        self._read()

    def get(self, name: str) -> str | None:
        value = self._read().get(name)
        return value if isinstance(value, str) and value else None

    def set(self, name: str, value: str) -> None:
        data = self._read() if self.path.exists() else {}
        data[name] = value
        self._write(data)

    # ------------------------------------------------------------------ file

    def _read(self) -> dict[str, str]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            raise SecretStoreError(
                f"the secrets file {self.path} does not exist yet: create it with "
                "`pos-plugin secrets set NAME --config CONFIG` as the service's user"
            ) from None
        if self.path.is_dir():
            raise SecretStoreError(f"the secrets file {self.path} is a folder: give a file path")
        if os.name == "posix" and st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise SecretStoreError(
                f"the secrets file {self.path} can be read by other users "
                f"(mode {stat.S_IMODE(st.st_mode):o}): run `chmod 600 {self.path}`"
            )
        try:
            data = json.loads(self.path.read_text("utf-8"))
        except PermissionError:
            raise SecretStoreError(
                f"the secrets file {self.path} cannot be read by this user: run the command "
                "as the service's user (Linux: sudo -u pos-plugin ...; Windows: as Administrator)"
            ) from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise SecretStoreError(f"the secrets file {self.path} cannot be read ({e})") from None
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise SecretStoreError(
                f"the secrets file {self.path} is not a JSON object of names to strings"
            )
        return data

    def _write(self, data: dict[str, str]) -> None:
        folder = self.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".secrets-", dir=folder)  # mode 0600 on POSIX
        except OSError as e:
            raise SecretStoreError(
                f"cannot write in {folder} ({e}): run as the service's user or an administrator"
            ) from None
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            if os.name == "posix":
                os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except OSError as e:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise SecretStoreError(f"cannot write the secrets file {self.path} ({e})") from None
        if sys.platform == "win32":
            _restrict_windows_acl(self.path)


def _restrict_windows_acl(path: Path) -> None:
    """SYSTEM and Administrators only, no inherited entries (so not Users)."""
    grants: list[str] = []
    for sid in _WINDOWS_READERS:
        grants += ["/grant:r", f"{sid}:(F)"]
    done = subprocess.run(
        ["icacls", str(path), "/inheritance:r", *grants],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SecretStoreError(
            f"could not restrict who reads {path} (icacls: {done.stdout.strip()} "
            f"{done.stderr.strip()}): run as Administrator"
        )


class KeyringStore:
    """The OS keyring through ``keyring`` (Credential Manager, Keychain, Secret Service)."""

    def __init__(self, no_backend_help: str) -> None:
        self._help = no_backend_help

    def describe(self) -> str:
        import keyring

        backend = keyring.get_keyring()
        return f"the OS keyring ({type(backend).__module__}.{type(backend).__name__})"

    def check(self) -> None:
        import keyring
        from keyring.errors import KeyringError, NoKeyringError

        try:
            backend = keyring.get_keyring()
        except (NoKeyringError, KeyringError) as e:
            raise SecretStoreError(f"{e}. {self._help}") from None
        if _is_fail_backend(backend):
            raise SecretStoreError(self._help)

    def get(self, name: str) -> str | None:
        import keyring
        from keyring.errors import KeyringError, NoKeyringError

        self.check()
        try:
            return keyring.get_password(KEYRING_SERVICE, name)
        except NoKeyringError:
            raise SecretStoreError(self._help) from None
        except (KeyringError, EOFError, OSError) as e:  # EOFError: a backend that prompts
            raise SecretStoreError(f"the keyring could not be read ({e!r}). {self._help}") from None

    def set(self, name: str, value: str) -> None:
        import keyring
        from keyring.errors import KeyringError, NoKeyringError

        self.check()
        try:
            keyring.set_password(KEYRING_SERVICE, name, value)
        except (NoKeyringError, KeyringError, EOFError, OSError) as e:
            raise SecretStoreError(
                f"the keyring refused the secret ({e!r}). {self._help}"
            ) from None


def _is_fail_backend(backend: object) -> bool:
    return type(backend).__module__.startswith("keyring.backends.fail")

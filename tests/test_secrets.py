"""Secrets for an unattended till: the file store, a real backend on every OS."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from pos_plugin.config import ConfigError, get_secret, load_config, secret_store, set_secret
from pos_plugin.secrets_store import FileStore, KeyringStore

ROOT = Path(__file__).resolve().parents[1]
posix = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")


def config(tmp_path: Path, secrets: str = 'store = "file"') -> Path:
    p = tmp_path / "config.toml"
    p.write_text(
        f'[pharmacy]\ncode = "H11010500001"\nterminal_id = "T01"\n[secrets]\n{secrets}\n', "utf-8"
    )
    return p


def cli(
    *args: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pos_plugin.cli", *args],
        capture_output=True, text=True, input=stdin, cwd=ROOT, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )  # fmt: skip


def test_the_config_chooses_the_store_and_its_file_is_beside_the_config(tmp_path: Path) -> None:
    store = secret_store(load_config(config(tmp_path)))
    assert isinstance(store, FileStore) and store.path == tmp_path / "secrets.json"
    other = secret_store(load_config(config(tmp_path, 'store = "file"\nfile = "/etc/x/s.json"')))
    assert isinstance(other, FileStore) and other.path == Path("/etc/x/s.json")
    assert isinstance(secret_store(load_config(config(tmp_path, ""))), KeyringStore)
    assert isinstance(secret_store(None), KeyringStore)


@posix
def test_the_file_is_owner_only_and_a_readable_one_is_refused(tmp_path: Path) -> None:
    store = secret_store(load_config(config(tmp_path)))
    set_secret("ledger_token", "tok-1", store)
    set_secret("pos_token", "tok-2", store)
    path = tmp_path / "secrets.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text("utf-8")) == {"ledger_token": "tok-1", "pos_token": "tok-2"}
    assert get_secret("ledger_token", store) == "tok-1"
    assert list(tmp_path.glob(".secrets-*")) == []  # the temp file was replaced in
    path.chmod(0o640)
    with pytest.raises(ConfigError, match=r"can be read by other users .*`chmod 600 "):
        get_secret("ledger_token", store)


def test_a_missing_or_broken_file_says_what_to_do(tmp_path: Path) -> None:
    store = secret_store(load_config(config(tmp_path)))
    with pytest.raises(
        ConfigError, match=r"does not exist yet: create it with `pos-plugin secrets set"
    ):
        get_secret("ledger_token", store)
    path = tmp_path / "secrets.json"
    path.write_text("{not json", "utf-8")
    path.chmod(0o600)
    with pytest.raises(ConfigError, match="cannot be read"):
        get_secret("ledger_token", store)
    path.write_text('{"ledger_token": 5}', "utf-8")
    with pytest.raises(ConfigError, match="not a JSON object of names to strings"):
        get_secret("ledger_token", store)
    path.write_text('{"ledger_token": "t"}', "utf-8")
    with pytest.raises(ConfigError, match=r"secret 'pos_token' is not set in the secrets file"):
        get_secret("pos_token", store)


def test_secrets_set_and_check_through_the_cli_with_no_prompt(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    missing = cli("secrets", "check", "--config", str(cfg))
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    for name in ("ledger_token", "pos_token", "manager_token"):
        assert (
            cli("secrets", "set", name, "--config", str(cfg), stdin=f"v-{name}\n").returncode == 0
        )
    partial = cli("secrets", "check", "--config", str(cfg))
    assert partial.returncode == 1
    assert "journal_hmac_key: secret 'journal_hmac_key' is not set" in partial.stdout
    assert (
        cli("secrets", "set", "journal_hmac_key", "--config", str(cfg), stdin="k\n").returncode == 0
    )
    done = cli("secrets", "check", "--config", str(cfg))
    assert done.returncode == 0 and done.stdout.count(": set") == 4, done.stdout


def test_secrets_check_without_a_keyring_prints_its_help_once() -> None:
    done = cli("secrets", "check", env={"PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.count("no usable OS keyring backend") == 1
    assert '[secrets] store = "file"' in done.stderr and done.stdout == ""


def test_a_keyring_backend_that_prompts_is_a_sentence_not_an_eoferror(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """keyrings.cryptfile without a terminal asks getpass(), which raises EOFError."""
    import keyring

    class Prompting:
        def get_password(self, service: str, name: str) -> str | None:
            raise EOFError("EOF when reading a line")

    monkeypatch.setattr(keyring, "get_keyring", lambda: Prompting())
    monkeypatch.setattr(keyring, "get_password", Prompting().get_password)
    with pytest.raises(ConfigError, match=r"could not be read .*EOFError.*\[secrets\] store"):
        get_secret("ledger_token")

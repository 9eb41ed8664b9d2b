"""Config loading (real TOML files) and the keyring's error messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from pos_plugin.config import ConfigError, get_secret, load_config, set_secret

ROOT = Path(__file__).resolve().parent.parent


def test_example_config_loads() -> None:
    cfg = load_config(ROOT / "config.example.toml")
    assert cfg.pharmacy.code == "H11010500001"
    assert cfg.api.host == "127.0.0.1"
    assert cfg.ledger.opened_pairs() == frozenset()


def test_example_config_holds_no_secret() -> None:
    text = (ROOT / "config.example.toml").read_text("utf-8")
    for word in ("token =", "password", "hmac_key ="):
        assert word not in text


def test_error_names_the_key(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text('[pharmacy]\ncode = "short"\nterminal_id = "T1"\n', "utf-8")
    with pytest.raises(ConfigError, match=r"pharmacy\.code"):
        load_config(p)


def test_bad_province_pair_names_the_key(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text(
        '[pharmacy]\ncode = "H11010500001"\nterminal_id = "T1"\n'
        '[ledger]\ncross_province_pairs = ["11-13", "beijing"]\n',
        "utf-8",
    )
    with pytest.raises(ConfigError, match=r"ledger\.cross_province_pairs.*province pair"):
        load_config(p)


def test_opened_pairs(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text(
        '[pharmacy]\ncode = "H11010500001"\nterminal_id = "T1"\n'
        '[ledger]\ncross_province_pairs = ["13-11"]\n',
        "utf-8",
    )
    assert load_config(p).ledger.opened_pairs() == {frozenset({"11", "13"})}


def test_unknown_key_is_an_error(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text('[pharmacy]\ncode = "H11010500001"\nterminal_id = "T1"\ncolour = 1\n', "utf-8")
    with pytest.raises(ConfigError, match=r"pharmacy\.colour"):
        load_config(p)


def test_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[pharmacy\n", "utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_no_keyring_backend_says_how_to_configure_one(monkeypatch: pytest.MonkeyPatch) -> None:
    # The fail backend is what keyring itself selects on a headless machine.
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    import keyring.core

    keyring.core._keyring_backend = None  # let keyring pick again from the environment
    try:
        with pytest.raises(ConfigError, match=r'\[secrets\] store = "file"'):
            get_secret("ledger_token")
        with pytest.raises(ConfigError, match="pos-plugin secrets set"):
            set_secret("ledger_token", "x")
        with pytest.raises(ConfigError, match="unknown secret"):
            get_secret("nope")
    finally:
        keyring.core._keyring_backend = None


# --------------------------------------------------------------------------- shared journal


def _journal_config(tmp_path: Path, journal: str) -> Path:
    p = tmp_path / "c.toml"
    p.write_text(
        f'[pharmacy]\ncode = "H11010500001"\nterminal_id = "T1"\n[journal]\n{journal}\n', "utf-8"
    )
    return p


def test_journal_url_is_the_target_and_must_be_postgresql(tmp_path: Path) -> None:
    url = "postgresql://pos@db.example:5432/journal"
    cfg = load_config(_journal_config(tmp_path, f'url = "{url}"'))
    assert (cfg.journal.url, cfg.journal.target) == (url, url)
    # A relative path is taken from the data folder, never from the working directory.
    cfg = load_config(_journal_config(tmp_path, 'path = "t.db"\n[data]\ndir = "d"'))
    assert cfg.journal_target == str(tmp_path / "d" / "t.db")
    with pytest.raises(ConfigError, match=r"journal\.url: .*postgresql://"):
        load_config(_journal_config(tmp_path, 'url = "mysql://db/journal"'))
    with pytest.raises(ConfigError, match=r"journal: .*journal\.path .* or journal\.url"):
        load_config(_journal_config(tmp_path, f'path = "t.db"\nurl = "{url}"'))


class _MemoryKeyring:
    """Just enough of a keyring backend for get_password."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.asked: list[str] = []

    def get_password(self, service: str, name: str) -> str | None:
        self.asked.append(name)
        return self.values.get(name)


def test_journal_password_comes_from_the_url_or_the_keyring(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import keyring

    from pos_plugin.config import JournalConfig, journal_password

    ring = _MemoryKeyring({"journal_db_password": "from-keyring"})
    monkeypatch.setattr(keyring, "get_password", ring.get_password)
    monkeypatch.setattr(keyring, "get_keyring", lambda: ring)

    def journal_of(line: str) -> JournalConfig:
        return load_config(_journal_config(tmp_path, line)).journal

    assert journal_password(journal_of('path = "t.db"')) is None  # SQLite: nothing to ask
    in_url = journal_of('url = "postgresql://pos:secret@db/journal"')
    assert journal_password(in_url) is None and ring.asked == []
    plain = journal_of('url = "postgresql://pos@db/journal"')
    assert journal_password(plain) == "from-keyring"
    ring.values.clear()
    assert journal_password(plain) is None  # unset: libpq's PGPASSWORD / ~/.pgpass


def test_relative_file_settings_are_taken_from_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A service's working folder is System32 or /: files named in config.toml are found
    beside it, and the journal in the data folder."""
    folder = tmp_path / "etc"
    folder.mkdir()
    for name in ("api.pem", "api.key", "ca.pem"):
        (folder / name).write_text("-----BEGIN-----\n", "utf-8")
    p = folder / "config.toml"
    p.write_text(
        '[pharmacy]\ncode = "H11010500001"\nterminal_id = "T1"\n'
        '[ledger]\nca_bundle = "ca.pem"\n'
        '[api]\ntls_cert = "api.pem"\ntls_key = "api.key"\n'
        '[data]\ndir = "../var"\n[log]\ndir = "logs-here"\n',
        "utf-8",
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(p)
    assert (cfg.api.tls_cert, cfg.api.tls_key) == (str(folder / "api.pem"), str(folder / "api.key"))
    assert cfg.ledger.ca_bundle == str(folder / "ca.pem")
    assert cfg.data_dir == folder / ".." / "var"
    assert cfg.journal_target == str(folder / ".." / "var" / "journal.sqlite3")
    assert cfg.log_dir == folder / ".." / "var" / "logs-here"
    assert cfg.secrets_file == folder / "secrets.json"


def test_the_default_data_folder_per_os(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from pos_plugin import paths

    for var in ("POS_PLUGIN_DATA_DIR", "STATE_DIRECTORY", "LOGS_DIRECTORY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("POS_PLUGIN_DATA_DIR", str(tmp_path / "mine"))
    assert paths.default_data_dir() == tmp_path / "mine"
    monkeypatch.delenv("POS_PLUGIN_DATA_DIR")
    monkeypatch.setenv("STATE_DIRECTORY", f"{tmp_path / 'state'}{paths.os.pathsep}/other")
    assert paths.default_data_dir() == tmp_path / "state"  # systemd's StateDirectory
    monkeypatch.delenv("STATE_DIRECTORY")
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv("PROGRAMDATA", str(tmp_path / "ProgramData"))
    assert paths.default_data_dir() == tmp_path / "ProgramData" / "pos-plugin"
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(paths, "LINUX_SERVICE_DIR", tmp_path / "var-lib-pos-plugin")
    assert paths.default_data_dir().name == "pos-plugin"  # the user's data folder
    assert paths.default_data_dir() != tmp_path / "var-lib-pos-plugin"
    (tmp_path / "var-lib-pos-plugin").mkdir()
    assert paths.default_data_dir() == tmp_path / "var-lib-pos-plugin"  # the service's
    monkeypatch.setenv("LOGS_DIRECTORY", str(tmp_path / "var-log"))
    assert paths.default_log_dir(tmp_path) == tmp_path / "var-log"

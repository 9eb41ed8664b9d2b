"""The [ledger] kind and [nhsa] table of config.toml (real TOML files): the example's
commented table works once uncommented, and every mistake is named."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pos_plugin.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parent.parent
PHARMACY = '[pharmacy]\ncode = "H11010500001"\nterminal_id = "T1"\n'


def _example_on_the_platform(tmp_path: Path) -> Path:
    """config.example.toml with kind = "nhsa" and its [nhsa] table uncommented."""
    text = (ROOT / "config.example.toml").read_text("utf-8")
    text = text.replace('kind = "own"', 'kind = "nhsa"', 1)
    head, _, rest = text.partition("# [nhsa]\n")
    block, _, tail = rest.partition("\n\n")
    block = re.sub(r"^# ([a-z_]+ = .*)$", r"\1", block, flags=re.M)
    text = head + "[nhsa]\n" + block + "\n\n" + tail
    p = tmp_path / "config.toml"
    p.write_text(text, "utf-8")
    return p


def test_the_examples_nhsa_table_loads_when_uncommented(tmp_path: Path) -> None:
    cfg = load_config(_example_on_the_platform(tmp_path))
    assert cfg.ledger.kind == "nhsa" and cfg.nhsa is not None
    assert (cfg.nhsa.fixmedins_code, cfg.nhsa.mdtrtarea_admvs, cfg.nhsa.signer) == (
        "P11010500001", "110105", "plain",
    )  # fmt: skip
    assert cfg.nhsa.secret_names() == ()


def test_kind_nhsa_without_the_table_is_refused_saying_what_to_add(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text(PHARMACY + '[ledger]\nkind = "nhsa"\nurl = "https://gw.example"\n', "utf-8")
    with pytest.raises(ConfigError, match=r"\[nhsa\] table: fixmedins_code"):
        load_config(p)


def test_the_table_with_kind_own_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text(PHARMACY + '[nhsa]\nfixmedins_code = "P11010500001"\nfixmedins_name = "药房"\n'
                 'mdtrtarea_admvs = "110105"\n', "utf-8")  # fmt: skip
    with pytest.raises(ConfigError, match=r'ledger\.kind is "own"'):
        load_config(p)


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [('signer = "plain"', 'signer = "sm9"', r"nhsa\.signer"),
     ('mdtrtarea_admvs = "110105"', 'mdtrtarea_admvs = "11"', r"nhsa\.mdtrtarea_admvs"),
     ("[nhsa]\n", "[nhsa]\ncolour = 1\n", r"nhsa\.colour")],
)  # fmt: skip
def test_a_bad_nhsa_key_is_named(tmp_path: Path, old: str, new: str, key: str) -> None:
    p = _example_on_the_platform(tmp_path)
    text = p.read_text("utf-8")
    assert old in text
    p.write_text(text.replace(old, new, 1), "utf-8")
    with pytest.raises(ConfigError, match=key):
        load_config(p)

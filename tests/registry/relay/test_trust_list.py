"""The trust list (registry/relay/trust_list.py): parsing, refusals, round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry.relay.trust_list import TrustedRegistry, load_trust_list, parse_trust_list, render_trust_list
from zk.relay_scope import RegistryRef

A = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
B = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"


def _entry(region: str, chain_id: int, contract: str, **extra: str) -> str:
    lines = [
        "[[registry]]",
        f'region = "{region}"',
        f"chain_id = {chain_id}",
        f'contract = "{contract}"',
        'registry_url = "http://127.0.0.1:8080/"',
        'rpc_url = "http://127.0.0.1:8545"',
        "send_groups = [0, 3]",
    ]
    lines += [f"{key} = {value}" for key, value in extra.items()]
    return "\n".join(lines) + "\n"


def test_two_regions_are_found_by_tag_region_and_reference() -> None:
    trust = parse_trust_list(_entry("eu-central", 31337, A) + _entry("gcc", 31338, A, auth='"registry"'))
    assert trust.regions == ("eu-central", "gcc")
    eu, gcc = trust.entries
    assert eu.ref == RegistryRef(31337, A) and eu.registry_url == "http://127.0.0.1:8080"
    assert eu.send_groups == (0, 3) and eu.auth == "local" and gcc.auth == "registry"
    assert trust.by_tag(RegistryRef(31338, A).tag) is gcc
    assert trust.by_region("eu-central") is eu and trust.by_region("us") is None
    assert trust.by_ref(RegistryRef(31337, B)) is None  # same chain, another contract


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "names no registry"),
        ("[[registry]\n", "not valid TOML"),
        ("foo = 1\n", "unknown key 'foo'"),
        (_entry("eu", 1, A) + _entry("gcc", 1, A.lower()), "same chain id and contract"),
        (_entry("eu", 1, A) + _entry("eu", 2, A), "region eu is listed twice"),
        (_entry("EU", 1, A), "registry 1: invalid region"),
        (_entry("eu", 0, A), "invalid chain_id"),
        (_entry("eu", 2**256, A), "invalid chain_id"),
        (_entry("eu", 1, "0x1234"), "invalid contract"),
        (_entry("eu", 1, A, auth='"both"'), "invalid auth"),
        (_entry("eu", 1, A, colour='"red"'), r"registry 1 \(region eu\): unknown key colour \(keys: region, chain_id, "),
        (_entry("eu", 1, A).replace("chain_id = 1\n", ""), r"registry 1 \(region eu\): chain_id is missing \(each"),
        (_entry("eu", 1, A) + "[[registry]]\nchain_id = 2\n", r"registry 2: region is missing"),
        (_entry("eu", 1, A).replace("[0, 3]", "[-1]"), "invalid send_groups"),
        (_entry("eu", 1, A).replace("[0, 3]", '["0"]'), "invalid send_groups"),
        (_entry("eu", 1, A).replace('rpc_url = "http://127.0.0.1:8545"\n', ""), "needs rpc_url"),
        (_entry("eu", 1, A).replace("http://127.0.0.1:8080/", "ftp://x"), "invalid registry_url"),
    ],
)
def test_bad_lists_are_refused_with_one_line(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        parse_trust_list(text)
    assert "\n" not in str(caught.value)


def test_render_reads_back(tmp_path: Path) -> None:
    entries = [
        TrustedRegistry("eu-central", RegistryRef(31337, A), "http://127.0.0.1:1", "http://127.0.0.1:2", "local", (0,), A),
        TrustedRegistry("gcc", RegistryRef(31338, B), "http://127.0.0.1:3", None, "registry", (), None, False, 'k"ey\\'),
    ]
    path = tmp_path / "trust.toml"
    path.write_text(render_trust_list(entries))
    assert load_trust_list(path).entries == tuple(entries)


def test_unreadable_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read"):
        load_trust_list(tmp_path / "missing.toml")
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe")
    with pytest.raises(ValueError, match="not UTF-8"):
        load_trust_list(tmp_path / "bin.toml")


@pytest.mark.parametrize("text", ["x = " + "[" * 5000 + "]" * 5000, "x = " + "{a = " * 3000 + "1" + "}" * 3000])
def test_deeply_nested_values_are_one_line_not_a_recursion_error(text: str) -> None:
    """tomllib recurses per nesting level: a hostile file raised RecursionError (a traceback)."""
    with pytest.raises(ValueError, match="nested too deeply") as caught:
        parse_trust_list(text)
    assert "\n" not in str(caught.value)

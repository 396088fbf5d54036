#!/usr/bin/env python3
"""Compile the Solidity contracts into the committed artifacts ``contracts/artifacts/*.json``.

Runs solc-js (the ``solc`` npm package pinned in package.json) through node in Standard
JSON mode (https://docs.soliditylang.org/en/v0.8.28/using-the-compiler.html#compiler-input-and-output-json-description).
Imports resolve against the repository root and ``node_modules`` (npm dependencies, never
copies). Settings are fixed so that a fresh compile is byte-identical to the committed
artifacts: optimizer on with fixed runs, fixed EVM version, and no metadata hash in the
bytecode (``bytecodeHash: none``), so paths and comments cannot change the code.

Besides our contracts it builds the official pieces we deploy as they are (PoseidonT3,
SemaphoreVerifier) and, for the gas benchmark only, Semaphore.sol itself.

Usage: ``python scripts/build_contracts.py [--check]`` (``--check``: compare, write nothing,
exit 1 on a difference).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
NODE_MODULES = ROOT / "node_modules"
ARTIFACTS_DIR = ROOT / "contracts" / "artifacts"
SOLC_VERSION = "0.8.28"

SETTINGS: dict[str, Any] = {
    "optimizer": {"enabled": True, "runs": 1000},
    "evmVersion": "cancun",
    "metadata": {"bytecodeHash": "none"},
    "outputSelection": {
        "*": {
            "*": [
                "abi",
                "metadata",
                "evm.bytecode.object",
                "evm.bytecode.linkReferences",
                "evm.deployedBytecode.object",
                "evm.deployedBytecode.linkReferences",
                "evm.deployedBytecode.immutableReferences",
            ]
        }
    },
}

# (source unit, contract, role). Units under contracts/ are ours; the others are read from
# node_modules under their npm import names.
TARGETS: list[tuple[str, str, str]] = [
    ("contracts/ZkIdRegistry.sol", "ZkIdRegistry", "registry"),
    ("contracts/EvidenceAnchor.sol", "EvidenceAnchor", "anchor"),
    ("poseidon-solidity/PoseidonT3.sol", "PoseidonT3", "library"),
    ("@semaphore-protocol/contracts/base/SemaphoreVerifier.sol", "SemaphoreVerifier", "verifier"),
    ("@semaphore-protocol/contracts/Semaphore.sol", "Semaphore", "benchmark-reference"),
]


class BuildError(RuntimeError):
    pass


def _unit_path(unit: str) -> Path:
    return ROOT / unit if unit.startswith("contracts/") else NODE_MODULES / unit


def _solc_js() -> Path:
    package = NODE_MODULES / "solc" / "package.json"
    if not package.is_file():
        raise BuildError("solc-js is not installed (node_modules/solc); run `npm ci`")
    version = json.loads(package.read_text())["version"]
    if version != SOLC_VERSION:
        raise BuildError(f"node_modules/solc is {version}, package.json pins {SOLC_VERSION}; run `npm ci`")
    return NODE_MODULES / "solc" / "solc.js"


def standard_json_input() -> dict[str, Any]:
    sources = {unit: {"content": _unit_path(unit).read_text()} for unit, _, _ in TARGETS}
    return {"language": "Solidity", "sources": sources, "settings": SETTINGS}


# solc-js driver: Standard JSON in and out through files (the solcjs CLI reads stdin with a
# single synchronous read and may cut a large stdout short at exit). Imports resolve against
# the repository root, then node_modules, like `solcjs --base-path . --include-path node_modules`.
_DRIVER = r"""
const fs = require("fs");
const path = require("path");
const solc = require(path.resolve("node_modules/solc"));
const [inputPath, outputPath] = process.argv.slice(1);
function findImports(unit) {
  if (path.isAbsolute(unit) || unit.split("/").includes("..")) return { error: "path not allowed: " + unit };
  for (const base of [".", "node_modules"]) {
    const candidate = path.join(base, unit);
    if (fs.existsSync(candidate)) return { contents: fs.readFileSync(candidate, "utf8") };
  }
  return { error: "not found in the repository or node_modules: " + unit };
}
const output = solc.compile(fs.readFileSync(inputPath, "utf8"), { import: findImports });
fs.writeFileSync(outputPath, output);
"""


def run_solc(input_json: dict[str, Any]) -> dict[str, Any]:
    _solc_js()
    with tempfile.TemporaryDirectory() as tmp:
        in_path, out_path = Path(tmp) / "input.json", Path(tmp) / "output.json"
        in_path.write_text(json.dumps(input_json))
        proc = subprocess.run(
            ["node", "-e", _DRIVER, str(in_path), str(out_path)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=600,
            check=False,
        )
        if proc.returncode != 0:
            raise BuildError(f"solc-js failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
        out: dict[str, Any] = json.loads(out_path.read_text())
    errors = [e for e in out.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise BuildError("\n".join(e.get("formattedMessage", e.get("message", "?")) for e in errors))
    return out


def _sha256_file(unit: str) -> str:
    return hashlib.sha256(_unit_path(unit).read_bytes()).hexdigest()


def compile_all() -> dict[str, dict[str, Any]]:
    """Compile every target; return ``{contract name: artifact dict}``."""
    out = run_solc(standard_json_input())
    compiler_version = json.loads(
        out["contracts"][TARGETS[0][0]][TARGETS[0][1]]["metadata"]
    )["compiler"]["version"]
    artifacts: dict[str, dict[str, Any]] = {}
    for unit, name, role in TARGETS:
        c = out["contracts"][unit][name]
        meta = json.loads(c["metadata"])
        settings = {k: v for k, v in SETTINGS.items() if k != "outputSelection"}
        artifacts[name] = {
            "contractName": name,
            "sourceName": unit,
            "role": role,
            "abi": c["abi"],
            "bytecode": "0x" + c["evm"]["bytecode"]["object"],
            "deployedBytecode": "0x" + c["evm"]["deployedBytecode"]["object"],
            "linkReferences": c["evm"]["bytecode"]["linkReferences"],
            "deployedLinkReferences": c["evm"]["deployedBytecode"]["linkReferences"],
            "immutableReferences": c["evm"]["deployedBytecode"].get("immutableReferences", {}),
            "compiler": {"name": "solc-js", "version": compiler_version, "settings": settings},
            # Every source unit this contract was compiled from, with its SHA-256.
            "sources": {src: _sha256_file(src) for src in sorted(meta["sources"])},
        }
    return artifacts


def render(artifact: dict[str, Any]) -> str:
    return json.dumps(artifact, indent=1, sort_keys=True) + "\n"


def diff(artifacts: dict[str, dict[str, Any]], directory: Path = ARTIFACTS_DIR) -> list[str]:
    """Names of the artifacts whose committed file differs from ``artifacts`` (or is missing)."""
    stale = []
    for name, artifact in artifacts.items():
        path = directory / f"{name}.json"
        if not path.is_file() or path.read_text() != render(artifact):
            stale.append(name)
    return stale


def write(artifacts: dict[str, dict[str, Any]], directory: Path = ARTIFACTS_DIR) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, artifact in artifacts.items():
        (directory / f"{name}.json").write_text(render(artifact))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="compare with the committed artifacts only")
    args = parser.parse_args(argv)
    try:
        artifacts = compile_all()
    except BuildError as exc:
        print(f"build_contracts: {exc}", file=sys.stderr)
        return 2
    if args.check:
        stale = diff(artifacts)
        if stale:
            print(f"build_contracts: stale artifacts: {', '.join(stale)} (run `make contracts`)", file=sys.stderr)
            return 1
        print("build_contracts: artifacts up to date")
        return 0
    write(artifacts)
    for name, artifact in artifacts.items():
        size = (len(artifact["deployedBytecode"]) - 2) // 2
        print(f"{name}: {size} bytes of runtime code -> contracts/artifacts/{name}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())

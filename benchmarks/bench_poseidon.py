"""Poseidon2 throughput: reference, pure-Python fast path, native backend, poseidon-lite (Node).

Prints one JSON object with hashes/s for each path. Usage:
    .venv/bin/python -m benchmarks.bench_poseidon [--count N]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zk import poseidon as fast
from zk.field import R
from zk.poseidon_reference import poseidon_reference

ROOT = Path(__file__).resolve().parent.parent


def _rate(fn: Callable[[int, int], int], pairs: list[tuple[int, int]]) -> float:
    start = time.perf_counter()
    for a, b in pairs:
        fn(a, b)
    return len(pairs) / (time.perf_counter() - start)


def _node_rate(count: int) -> dict[str, Any] | None:
    try:
        proc = subprocess.run(
            ["node", str(ROOT / "tests" / "js" / "poseidon_bench.mjs")],
            input=json.dumps({"count": count}),
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=600,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def run(count: int = 20000) -> dict[str, Any]:
    rng = random.Random(1)
    pairs = [(rng.randrange(R), rng.randrange(R)) for _ in range(count)]
    small = pairs[: max(200, count // 20)]
    results: dict[str, Any] = {
        "benchmark": "poseidon2",
        "count": count,
        "backend": fast.BACKEND,
        "reference_hashes_per_s": round(_rate(lambda a, b: poseidon_reference([a, b]), small)),
        "python_fast_hashes_per_s": round(_rate(fast.poseidon2_python, pairs)),
        "poseidon2_hashes_per_s": round(_rate(fast.poseidon2, pairs)),
    }
    if fast._NATIVE2 is not None:
        native = fast._NATIVE2
        results["native_unchecked_hashes_per_s"] = round(_rate(native, pairs))
    node = _node_rate(count * 5)
    results["poseidon_lite_node_hashes_per_s"] = round(node["hashes_per_second"]) if node else None
    results["seconds_per_million_poseidon2"] = round(1e6 / results["poseidon2_hashes_per_s"], 1)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20000)
    args = parser.parse_args()
    print(json.dumps(run(args.count), indent=2))


if __name__ == "__main__":
    main()

"""Run the reference JavaScript libraries (installed by ``npm ci``) from tests.

Each call starts ``node`` on an ES module under ``tests/js/`` with a JSON payload on
stdin and returns the JSON it prints. Used for interop vectors and cross-verification;
never by the product at run time.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.support.node import node_available

__all__ = ["node_available", "run_js"]

ROOT = Path(__file__).resolve().parent.parent
JS_DIR = ROOT / "tests" / "js"


def run_js(script: str, payload: Any = None, timeout: float = 300.0) -> Any:
    """Run ``tests/js/<script>`` with ``payload`` as JSON on stdin; return its JSON output.

    Big integers travel as decimal strings both ways.
    """
    path = JS_DIR / script
    proc = subprocess.run(
        ["node", str(path)],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"node {script} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout)

"""``zkid`` in tests: as a subprocess (as the user runs it), in-process through Typer's
runner (option errors, no process start-up), and as a server process waited for."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from click.testing import Result
from typer.testing import CliRunner

from tests.support.net import accepts
from tests.support.wait import wait_until

ROOT = Path(__file__).resolve().parents[2]

#: The ``zkid`` command line (``python -m registry.cli``).
ZKID = [sys.executable, "-m", "registry.cli"]


def run_zkid(
    *args: str,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    timeout: float = 300.0,
    preexec_fn: Callable[[], Any] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``zkid args...`` to completion, its output captured (never raises on a failure).
    ``preexec_fn`` runs in the child before ``zkid`` starts (e.g. resource limits, a umask)."""
    return subprocess.run(
        [*ZKID, *args], cwd=ROOT, capture_output=True, text=True, env=env, input=stdin, timeout=timeout, check=False,
        preexec_fn=preexec_fn,
    )


#: The passphrase of the identity files the CLI tests write.
PASSPHRASE = "correct horse battery staple"
#: A client's environment: that passphrase; no registry URL or operator token of the caller's.
CLIENT_ENV = {k: v for k, v in os.environ.items() if k not in ("ZKID_URL", "ZKID_OPERATOR_TOKEN")} | {"ZKID_PASSPHRASE": PASSPHRASE}


def zkid_client(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """:func:`run_zkid` in :data:`CLIENT_ENV` (or ``env``)."""
    return run_zkid(*args, env=env or CLIENT_ENV)


def run_python(code: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """``python -c code`` in a fresh interpreter; fails the test if it does not exit 0."""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr
    return out


def invoke(app: Any, args: Sequence[str], env: Mapping[str, str] | None = None) -> Result:
    """A Typer app's command in-process (Typer's ``CliRunner``): ``exit_code``, ``stdout``,
    ``stderr``, ``output``."""
    return CliRunner().invoke(app, list(args), env=env)


def wait_serving(proc: subprocess.Popen[str], port: int, what: str, log: Path | None = None,
                 timeout: float = 60.0) -> None:
    """Until ``proc`` accepts connections on ``port`` (uvicorn listens once the app has
    started); fails with its output if it exits first."""

    def output() -> str:
        if log is not None:
            return log.read_text()[-3000:]
        return proc.stderr.read() if proc.stderr is not None and proc.poll() is not None else ""

    def alive() -> None:
        assert proc.poll() is None, f"{what} exited ({proc.returncode}): {output()}"

    wait_until(lambda: accepts(port), timeout, f"{what} to listen", check=alive)


def read_registry_url(proc: subprocess.Popen[str], seen: list[str]) -> str:
    """Read ``zkid up``'s stdout up to its ``registry: URL ...`` line and return the URL;
    every line read is appended to ``seen``. Fails with those lines if it exits first."""
    assert proc.stdout is not None
    while True:
        line = proc.stdout.readline()
        assert line, f"zkid up exited ({proc.poll()}): {''.join(seen)}"
        seen.append(line)
        found = re.match(r"registry: (http://127\.0\.0\.1:\d+) ", line)
        if found:
            return found.group(1)


def stop_process(proc: subprocess.Popen[Any], sig: int = signal.SIGINT, timeout: float = 60.0) -> None:
    """Stop ``proc`` if it still runs (``sig``, then wait) and close its pipes."""
    if proc.poll() is None:
        proc.send_signal(sig)
        proc.wait(timeout)
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()

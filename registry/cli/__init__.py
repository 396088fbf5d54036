"""The ``zkid`` command line: a thin layer over the ``zk`` and ``registry`` libraries.

Each command group lives in its own module and registers a Typer sub-app here.
Exit codes: 0 success (or "valid"), 1 a negative verdict ("invalid"), 2 unusable input.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="zkid",
    help="letro-zkid: ZK identities, groups, proofs, the ledger and the registry service.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


from registry import demo  # noqa: E402
from registry.cli import evidence_commands, ledger, relay_commands, service_commands, zk_commands  # noqa: E402

zk_commands.register(app)
service_commands.register(app)  # after zk_commands: it adds `create` to `zkid group`
ledger.register(app)
evidence_commands.register(app)
relay_commands.register(app)
demo.register(app)


def main() -> None:
    app()

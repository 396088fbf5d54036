"""The ``zkid`` command line: a thin layer over the ``zk`` and ``registry`` libraries.

Each command group lives in its own module and registers a Typer sub-app here.
Exit codes: 0 success (or "valid"), 1 a negative verdict ("invalid"), 2 unusable input.
"""

from __future__ import annotations

import copy
import inspect
import os
import sys

import typer
import typer.main
import typer.models

app = typer.Typer(
    name="zkid",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Plain click help and usage errors: Rich's help renderer (rich.markdown, markdown-it,
    # rich.traceback) alone would take longer to import than the whole `zkid --help` may.
    rich_markup_mode=None,
)


from registry import demo  # noqa: E402
from registry.cli import evidence_commands, ledger, messaging_commands, relay_commands, service_commands, zk_commands  # noqa: E402

zk_commands.register(app)
service_commands.register(app)  # after zk_commands: it adds `create` to `zkid group`
ledger.register(app)
evidence_commands.register(app)
relay_commands.register(app)
messaging_commands.register(app)
demo.register(app)

from registry.cli import help as _help  # noqa: E402

_help.tidy(app)  # named (not typed) values, one way to show defaults, an example each
app.callback()(_help.root)  # zkid --version


def main() -> None:
    lazy_app(sys.argv[1:])()


def lazy_app(args: list[str]) -> typer.Typer:
    """``app`` with only the command that ``args`` name built in full.

    Typer turns every command's signature into click parameters before it runs one, which
    costs more than the rest of ``zkid --help``. Here the other commands and groups are
    stand-ins with the same name and help text (all a listing shows) and no parameters.
    The whole ``app`` runs when a root option comes before the command (``zkid --help
    up``), when the name is unknown (click's "No such command" and its suggestions), and
    for shell completion. The modules stay imported: their imports are light.
    """
    name = next((a for a in args if not a.startswith("-")), None)
    if os.environ.get("_ZKID_COMPLETE") or (name is not None and args.index(name) > 0):
        return app
    commands = {c.name or typer.main.get_command_name(c.callback.__name__): c for c in app.registered_commands if c.callback}
    groups = {g.name: g for g in app.registered_groups if isinstance(g.name, str)}
    if name is not None and name not in commands and name not in groups:
        return app
    lazy = copy.copy(app)
    lazy.registered_commands = [c if n == name else _stand_in_command(n, c) for n, c in commands.items()]
    lazy.registered_groups = [g if n == name else _stand_in_group(g) for n, g in groups.items()]
    return lazy


def _unreachable() -> None:
    raise RuntimeError("a stand-in command ran")  # lazy_app builds the named command in full


def _stand_in_command(name: str, info: typer.models.CommandInfo) -> typer.models.CommandInfo:
    stand_in = copy.copy(info)
    stand_in.name = name
    stand_in.help = info.help if info.help is not None else inspect.getdoc(info.callback)
    stand_in.callback = _unreachable
    return stand_in


def _stand_in_group(info: typer.models.TyperInfo) -> typer.models.TyperInfo:
    stand_in = copy.copy(info)
    sub = copy.copy(info.typer_instance)  # same help and callback, no commands
    assert sub is not None
    sub.registered_commands, sub.registered_groups = [], []
    stand_in.typer_instance = sub
    return stand_in

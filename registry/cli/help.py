"""One look for every ``zkid ... --help``.

- Values are named by what they are (``--url URL``, ``--group GROUP``, ``COMMITMENT``),
  never by their Python type (``<str>``, ``<bool>``, ``<int range>``): flags show no value.
- Defaults are shown one way: ``(default: X)`` at the end of the option's help, whether
  Typer knows the value or the help text names it (a dynamic default).
- Text is wrapped to the terminal (at least 100 columns), never cut.
- Every command ends with an example (``EXAMPLES``; tests/registry/cli/test_cli_help.py
  fails for a command without one).
- ``zkid --version``.
"""

from __future__ import annotations

import re
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup
from typer.models import DefaultPlaceholder

#: An example per command path (without ``zkid``); shown as the help's epilog.
EXAMPLES: dict[str, str] = {
    "identity create": "ZKID_PASSPHRASE=... zkid identity create --out me.id",
    "identity show": "ZKID_PASSPHRASE=... zkid identity show me.id --json",
    "group root": "zkid group root members.txt --json",
    "group proof": "zkid group proof members.txt 3 > proof.json",
    "group create": "ZKID_OPERATOR_TOKEN=... zkid group create --policy invite",
    "proof generate": "zkid proof generate --identity me.id --merkle-proof proof.json --message 1 --scope 2 --out p.json",
    "proof verify": "zkid proof verify p.json",
    "up": "zkid up --port 0",
    "serve": "zkid serve --rpc-url https://rpc.example --manifest deployment.json --keystore operator.json",
    "reindex": "zkid reindex --data-dir .data",
    "migrate": "ZKID_DATABASE_URL=postgresql://zkid:...@db:5432/zkid zkid migrate",
    "register": "zkid register --identity me.id --wait --until final",
    "status": "zkid status --identity me.id --json",
    "authorize": "zkid authorize --identity me.id --blob message.bin",
    "send": "zkid send --relay http://127.0.0.1:9646 --identity alice.id --blob msg.bin --mailbox $(openssl rand -hex 32) --pickup-secret bob.secret",
    "pickup": "zkid pickup --relay http://127.0.0.1:9646 --mailbox TAG --pickup-secret bob.secret --out inbox --ack",
    "admission set": "ZKID_OPERATOR_TOKEN=... zkid admission set --group 1 --policy open",
    "admission invite create": "ZKID_OPERATOR_TOKEN=... zkid admission invite create --group 1 --count 10 --expires 7d",
    "ledger up": "zkid ledger up --data-dir .data",
    "ledger down": "zkid ledger down --data-dir .data",
    "ledger status": "zkid ledger status --json",
    "deploy": "zkid deploy --data-dir .data",
    "evidence bundle": "zkid evidence bundle 5f0c...e1 --url http://127.0.0.1:9545 --out bundle.json --wait",
    "evidence verify": "zkid evidence verify bundle.json --trust trust.json --rpc-url http://127.0.0.1:8545",
    "relay": "zkid relay --rpc-url http://127.0.0.1:8545 --manifest .data/deployment.json --send-group 0 --port 0",
    "demo": "zkid demo --clients 8 --json",
}

#: Help text is wrapped to the terminal's width (``COLUMNS``), within these bounds; the
#: example line alone is never wrapped (it is copied as it is).
MIN_WIDTH, MAX_WIDTH = 60, 120


def help_width() -> int:
    """The width help is wrapped to: one column less than the terminal's (a line as wide as
    the terminal wraps early in some of them), within ``[MIN_WIDTH, MAX_WIDTH]``."""
    import shutil

    return max(MIN_WIDTH, min(MAX_WIDTH, shutil.get_terminal_size((100, 24)).columns - 1))
_DEFAULT_IN_TEXT = re.compile(r"\((?:default|Default) (?!:)")
_TYPE_LABEL = re.compile(r" <[^<>]+>")


class HelpCommand(TyperCommand):
    """A Typer command whose parameters are named, not typed, in its help."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            _tidy(param)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        formatter.width = help_width()
        super().format_help(ctx, formatter)

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        # ``FILE``, not Typer's ``{FILE}``, for a required argument (``[FILE]`` stays optional).
        return [re.sub(r"^\{(.*)\}$", r"\1", piece) for piece in super().collect_usage_pieces(ctx)]

    def format_options(self, ctx: Any, formatter: Any) -> None:
        # Typer adds the type label to an argument even when it has a metavar.
        records: dict[str, list[tuple[str, str]]] = {"argument": [], "option": []}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None and param.param_type_name in records:
                records[param.param_type_name].append((_TYPE_LABEL.sub("", record[0]), record[1]))
        for title, kind in (("Arguments", "argument"), ("Options", "option")):
            if records[kind]:
                with formatter.section(title):
                    formatter.write_dl(records[kind])


class HelpGroup(TyperGroup):
    """A Typer group whose command list shows each command's first sentence whole,
    wrapped like the rest of the help, never cut with ``...``."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        formatter.width = help_width()
        super().format_help(ctx, formatter)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=10_000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _unset(cls: Any) -> bool:
    """Whether a Typer ``cls`` is Typer's own default (None or its placeholder)."""
    return isinstance(cls, DefaultPlaceholder) or cls is None or cls is TyperGroup


def _tidy(param: Any) -> None:
    is_flag = bool(getattr(param, "is_flag", False) or getattr(param, "count", False))
    if param.metavar is None and not is_flag and param.name:
        param.metavar = _metavar(param)
    help_text = getattr(param, "help", None) or ""
    if _DEFAULT_IN_TEXT.search(help_text):
        param.help = help_text = _DEFAULT_IN_TEXT.sub("(default: ", help_text)
    default = param.default
    if param.param_type_name != "option" or param.show_default is False:
        return
    param.show_default = False
    if "default" in help_text.lower():  # the help text names it already
        return
    if default is None or callable(default) or (is_flag and not default) or default in ((), []):
        return
    shown = f"{default:g}" if isinstance(default, float) else str(getattr(default, "value", default))
    param.help = f"{help_text} (default: {shown})".strip()


def _metavar(param: Any) -> str:
    """FILE / DIR for paths, else the last word of the name: ``--admission-group GROUP``."""
    name = str(param.name)
    if getattr(getattr(param, "type_descriptor", None), "is_path", False):
        return "DIR" if name.endswith("dir") else "FILE"
    return name.rsplit("_", 1)[-1].upper()


def tidy(app: typer.Typer, path: str = "") -> None:
    """Give every command of ``app`` (and of its groups) :class:`HelpCommand` and its example."""
    for info in app.registered_commands:
        name = info.name or (info.callback.__name__.replace("_", "-") if info.callback else "")
        if info.cls is None or info.cls is TyperCommand:
            info.cls = HelpCommand
        example = EXAMPLES.get(f"{path}{name}")
        doc = info.help or (info.callback.__doc__ if info.callback else None) or ""
        if example is not None and info.epilog is None and "Example" not in doc:
            info.epilog = f"\b\nExample:\n  {example}"
    if _unset(app.info.cls):
        app.info.cls = HelpGroup
    for group in app.registered_groups:
        if _unset(group.cls):
            group.cls = HelpGroup
        if group.typer_instance is not None and isinstance(group.name, str):
            tidy(group.typer_instance, f"{path}{group.name} ")


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            shown = version("letro-zkid")
        except PackageNotFoundError:
            shown = "unknown (not installed)"
        typer.echo(f"zkid (letro-zkid) {shown}")
        raise typer.Exit(0)


def root(
    version: bool = typer.Option(
        False, "--version", help="Print the version and exit.", is_eager=True, callback=_version, show_default=False
    ),
) -> None:
    """letro-zkid: ZK identities, groups, proofs, the ledger, the registry service and relays.

    \b
    Shell completion: `zkid --install-completion` (bash, zsh, fish, PowerShell),
    or `zkid --show-completion` to print the script."""

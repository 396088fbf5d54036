"""``zkid identity``, ``zkid group`` and ``zkid proof``: offline commands over the ``zk`` package."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from registry.cli._common import EXIT_INVALID, EXIT_USAGE, AsJson, fail, passphrase, print_json, print_result, read_file

if TYPE_CHECKING:
    from collections.abc import Callable

    from zk.identity import Identity
    from zk.tree import LeanIMT, MerkleProof

identity_app = typer.Typer(help="Create and inspect ZK identities.", no_args_is_help=True)
group_app = typer.Typer(
    help="LeanIMT groups: offline over a file of commitments (root, proof); create one on a running registry (create).",
    no_args_is_help=True,
)
proof_app = typer.Typer(help="Generate and verify Semaphore v4 proofs.", no_args_is_help=True)

GroupFile = Annotated[Path, typer.Argument(help="One decimal commitment per line, or a JS Group.export() JSON.")]


def register(app: typer.Typer) -> None:
    app.add_typer(identity_app, name="identity")
    app.add_typer(group_app, name="group")
    app.add_typer(proof_app, name="proof")


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror or exc}")
    except UnicodeDecodeError:
        fail(f"{path} is not UTF-8 text")


def load_identity_file(path: Path, env: str = "ZKID_PASSPHRASE") -> Identity:
    """An identity file written by ``zkid identity create --out`` (encrypted at rest; the
    passphrase from ``$env`` or the terminal)."""
    return start_loading_identity_file(path, env)()


def start_loading_identity_file(path: Path, env: str = "ZKID_PASSPHRASE") -> Callable[[], Identity]:
    """:func:`load_identity_file` begun: the file and the passphrase are read now, on this
    thread (a prompt needs the terminal), and the key derivation runs on a worker thread
    while the caller goes on (scrypt releases the GIL, so it overlaps imports and artifact
    loading). The returned function waits for the identity, or fails with one line."""
    from concurrent.futures import ThreadPoolExecutor

    from zk.identity_file import decrypt_identity

    blob = read_file(path)
    secret = passphrase(confirm=False, env=env)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zkid-identity")
    pending = pool.submit(decrypt_identity, blob, secret)
    pool.shutdown(wait=False)  # the worker ends with its one task

    def identity() -> Identity:
        try:
            return pending.result()
        except ValueError as exc:
            fail(f"{path}: {exc}")

    return identity


def write_new_private_file(path: Path, data: bytes) -> None:
    """Create ``path`` with ``data``, readable by its owner only, or fail with one line.

    ``O_CREAT | O_EXCL`` with mode 0600 creates the file and sets its mode in one step (no
    moment where another user could open it; the umask can only narrow it), never
    overwrites, and refuses a symlink at ``path`` even a dangling one (O_EXCL does not
    follow it; O_NOFOLLOW says so twice). A failed write removes the partial file.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except FileExistsError:
        fail(f"{path} exists; refusing to overwrite an identity file")
    except OSError as exc:
        fail(f"cannot create {path}: {exc.strerror or exc}")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        path.unlink(missing_ok=True)
        fail(f"cannot write {path}: {exc.strerror or exc}")


def load_group_file(path: Path) -> LeanIMT:
    """A group file: one decimal commitment per line, or a JS ``Group.export()`` JSON."""
    from zk.field import FieldError, parse_decimal
    from zk.tree import LeanIMT

    text = _read_text(path)
    try:
        if text.lstrip().startswith("["):
            return LeanIMT.import_(text)
        leaves = []
        for number, line in enumerate(text.splitlines(), start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                leaves.append(parse_decimal(line, f"line {number}"))
            except FieldError as exc:
                fail(f"{path}: {exc}")
        return LeanIMT(leaves=leaves)
    except ValueError as exc:
        fail(f"{path}: {exc}")


@identity_app.command("create")
def identity_create(
    private_key: Optional[str] = typer.Option(None, help="Derive from this text (UTF-8) instead of 32 random bytes."),
    out: Optional[Path] = typer.Option(None, help="Write the identity to FILE, encrypted with a passphrase (ZKID_PASSPHRASE or prompt)."),
    as_json: AsJson = False,
    show_secret: bool = typer.Option(False, help="Also print the secret scalar and the JS SDK export (handle with care)."),
) -> None:
    """Create an identity and print its public parts (commitment, public key)."""
    from zk.identity import Identity
    from zk.identity_file import encrypt_identity

    identity = Identity(private_key)
    if out is None and private_key is None:
        typer.echo(
            "zkid: warning: the identity is not saved (no --out FILE): its secret is lost when this command ends "
            "(use --out FILE to keep it)",
            err=True,
        )
    if out is not None:
        if out.is_symlink() or out.exists():  # early, before the passphrase prompt
            fail(f"{out} exists; refusing to overwrite an identity file")
        blob = encrypt_identity(identity, passphrase(confirm=sys.stdin.isatty()))
        write_new_private_file(out, blob)
    info: dict[str, object] = {
        "commitment": str(identity.commitment),
        "public_key": [str(identity.public_key[0]), str(identity.public_key[1])],
    }
    if show_secret:
        info["secret_scalar"] = str(identity.secret_scalar)
        info["export"] = identity.export()
    if as_json:
        print_json(info)
    else:
        for key, value in info.items():
            typer.echo(f"{key}: {value if not isinstance(value, list) else ', '.join(value)}")
        if out is not None:
            typer.echo(f"written (encrypted) to {out}")


@identity_app.command("show")
def identity_show(
    file: Path = typer.Argument(..., help="Identity file written by `zkid identity create --out`."),
    as_json: AsJson = False,
) -> None:
    """Decrypt an identity file and print its commitment and public key."""
    identity = load_identity_file(file)
    info = {"commitment": str(identity.commitment), "public_key": [str(v) for v in identity.public_key]}
    print_result(as_json, info, f"commitment: {info['commitment']}")


@group_app.command("root")
def group_root(file: GroupFile, as_json: AsJson = False) -> None:
    """Print the LeanIMT root, depth and size of a group."""
    tree = load_group_file(file)
    print_result(as_json, {"root": str(tree.root), "depth": tree.depth, "size": tree.size}, str(tree.root))


@group_app.command("proof")
def group_proof(
    file: GroupFile,
    commitment: str = typer.Argument(..., help="The member's commitment (decimal)."),
) -> None:
    """Print the Merkle proof of a member in the LeanIMT/Semaphore JSON shape."""
    from zk.field import FieldError, parse_decimal

    tree = load_group_file(file)
    try:
        leaf = parse_decimal(commitment, "commitment")
    except FieldError as exc:
        fail(str(exc))
    index = tree.index_of(leaf)
    if index is None:
        fail("commitment is not a member of the group", EXIT_INVALID)
    print_json(tree.generate_proof(index).to_dict())


def load_merkle_proof_file(path: Path) -> MerkleProof:
    """A Merkle proof file: the registry's answer to ``GET /v1/groups/{id}/proofs/{c}``
    (``{"group_id", "merkle_proof": {...}}``) or the bare proof JSON (``zkid group proof``).
    It must lead to its root."""
    from zk import strict_json
    from zk.tree import LeanIMT, MerkleProof

    text = _read_text(path)
    try:
        data = strict_json.loads(text)
        inner = data.get("merkle_proof", data) if isinstance(data, dict) else data
        proof = MerkleProof.from_dict(inner)
    except (ValueError, TypeError, KeyError) as exc:
        fail(f"{path}: not a Merkle proof: {exc}")
    if not LeanIMT.verify_proof(proof):
        fail(f"{path}: the Merkle proof does not lead to its root")
    return proof


def _load_identity_and_the_prover(path: Path, depth: int | None) -> Identity:
    """:func:`load_identity_file`, loading the prover (its modules; for a known ``depth``
    also its witness generator and proving key) while scrypt derives the key on the worker
    thread. A loading error is left for ``generate_proof`` to raise, in its usual order."""
    decrypted = start_loading_identity_file(path)
    from zk.proof import load_prover

    if depth is not None:
        with contextlib.suppress(ValueError):
            load_prover(depth)
    return decrypted()


@proof_app.command("generate")
def proof_generate(
    identity: Path = typer.Option(..., help="Identity file (encrypted)."),
    group: Optional[Path] = typer.Option(
        None, help="Group file: one decimal commitment per line, or a JS Group.export() JSON.", show_default=False
    ),
    merkle_proof: Optional[Path] = typer.Option(
        None,
        "--merkle-proof",
        help="Instead of --group: the member's Merkle proof, as the registry answers GET /v1/groups/{id}/proofs/{commitment}.",
        show_default=False,
    ),
    message: str = typer.Option(..., help="Message: a number, a 0x hex string, or text of at most 31 UTF-8 bytes."),
    scope: str = typer.Option(..., help="Scope, same forms as the message."),
    depth: Optional[int] = typer.Option(None, help="Circuit depth 1..32 (default: the group's depth, at least 1)."),
    out: Optional[Path] = typer.Option(None, help="Write the proof JSON to FILE instead of stdout."),
) -> None:
    """Generate a Semaphore v4 proof (the JS SDK's SemaphoreProof JSON)."""
    if (group is None) == (merkle_proof is None):
        fail("give either --group FILE or --merkle-proof FILE")
    source: LeanIMT | MerkleProof
    if merkle_proof is not None:
        source = load_merkle_proof_file(merkle_proof)
        who = _load_identity_and_the_prover(identity, depth or len(source.siblings) or 1)
        if source.leaf != who.commitment:
            fail(f"{merkle_proof} is the Merkle proof of another commitment, not of {identity}")
    else:
        assert group is not None
        source = load_group_file(group)
        who = _load_identity_and_the_prover(identity, depth)  # by default it depends on the member
        if source.index_of(who.commitment) is None:
            fail("the identity is not a member of the group")
    from zk.proof import generate_proof
    try:
        proof = generate_proof(who, source, message, scope, merkle_tree_depth=depth)
    except ValueError as exc:
        fail(str(exc))
    text = proof.to_json()
    if out is not None:
        out.write_text(text + "\n", encoding="utf-8")
    else:
        typer.echo(text)


@proof_app.command("verify")
def proof_verify(
    file: Path = typer.Argument(..., help="SemaphoreProof JSON (as the JS SDK writes it); '-' reads stdin."),
    as_json: bool = typer.Option(False, "--json", help="Print {\"valid\": bool, \"reason\": ...}."),
) -> None:
    """Verify a proof. Exit 0 valid, 1 invalid, 2 unreadable input."""
    from zk.proof import SemaphoreProof, verify_proof

    text = sys.stdin.read() if str(file) == "-" else _read_text(file)
    try:
        proof = SemaphoreProof.from_json(text)
    except (ValueError, json.JSONDecodeError) as exc:
        if as_json:
            print_json({"valid": False, "reason": f"unreadable: {exc}"})
            raise typer.Exit(EXIT_USAGE)
        fail(f"unreadable proof: {exc}")
    valid = verify_proof(proof)
    reason = None if valid else "proof does not verify under the official key for its depth"
    if as_json:
        print_json({"valid": valid, "reason": reason})
    else:
        typer.echo("valid" if valid else f"invalid: {reason}")
    raise typer.Exit(0 if valid else EXIT_INVALID)

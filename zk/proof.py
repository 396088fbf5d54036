"""Semaphore v4 proofs: generation and verification, wire-compatible with the JS SDK.

Follows ``@semaphore-protocol/proof`` 4.14.3 (``src/generate-proof.ts``,
``src/verify-proof.ts``) on the official ceremony artifacts (:mod:`zk.artifacts`):

- ``message`` and ``scope`` are converted with ``toBigInt`` (:func:`zk.hashing.to_bigint`)
  and the proof stores those integers; the circuit gets ``hash(v) = keccak256(v) >> 8``;
- the Merkle proof comes from the group (``indexOf(commitment)``) unless one is given;
  the default circuit depth is the number of siblings, or 1 for a one-member group;
  missing siblings are padded with 0;
- circuit inputs: ``secret`` (the identity's secret scalar), ``merkleProofLength``,
  ``merkleProofIndex``, ``merkleProofSiblings``, ``scope = hash(scope)``,
  ``message = hash(message)``; the circuit outputs the root and the nullifier
  ``Poseidon2(hash(scope), secret)``;
- public signals, in order: ``[merkleTreeRoot, nullifier, hash(message), hash(scope)]``;
- JSON: ``merkleTreeDepth`` (number), ``merkleTreeRoot``, ``nullifier``, ``message``,
  ``scope`` (decimal strings), ``points`` (8 decimal strings, ``packGroth16Proof``).

Differences, all stricter: bad input raises ``ValueError`` before proving (non-member,
Merkle proof for another leaf or that does not reach its root, depth smaller than the
proof); every proof is verified before it is returned; ``verify_proof`` returns False
where the JS function throws (depth out of range, message >= 2**256, malformed points).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from zk import strict_json
from zk.artifacts import MAX_DEPTH, MIN_DEPTH
from zk.field import R, FieldError, check_scalar, parse_decimal
from zk.groth16 import Groth16Backend, Groth16Error, Proof, ProofEncodingError, get_backend
from zk.groth16.fast import default_backend
from zk.hashing import MessageError, semaphore_hash, to_bigint
from zk.tree import LeanIMT, MerkleProof, merkle_proof_to_circuit_inputs
from zk.witness import InputValue, semaphore_calculator

__all__ = ["ProofError", "SemaphoreProof", "generate_proof", "load_prover", "verify_proof", "public_signals"]

_TWO_256 = 1 << 256
_KEYS = ("merkleTreeDepth", "merkleTreeRoot", "nullifier", "message", "scope", "points")


class ProofError(ValueError):
    """A Semaphore proof cannot be generated or parsed."""


class IdentityLike(Protocol):
    """What a proof needs from a Semaphore identity (``zk.identity.Identity``)."""

    @property
    def secret_scalar(self) -> int: ...

    @property
    def commitment(self) -> int: ...


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class SemaphoreProof:
    """A Semaphore proof as the JS SDK returns it (``message``/``scope`` as converted integers).

    Construction checks types only; :func:`verify_proof` judges the values and
    :meth:`from_dict` parses strictly.
    """

    merkle_tree_depth: int
    merkle_tree_root: int
    nullifier: int
    message: int
    scope: int
    points: tuple[int, ...]

    def __post_init__(self) -> None:
        for name in ("merkle_tree_depth", "merkle_tree_root", "nullifier", "message", "scope"):
            if not _is_int(getattr(self, name)):
                raise ProofError(f"{name} must be an integer")
        if isinstance(self.points, list):
            object.__setattr__(self, "points", tuple(self.points))
        if not isinstance(self.points, tuple) or not all(_is_int(p) for p in self.points):
            raise ProofError("points must be a tuple of integers")

    def to_dict(self) -> dict[str, Any]:
        """The JS SDK's object: ``merkleTreeDepth`` a number, the rest decimal strings."""
        return {
            "merkleTreeDepth": self.merkle_tree_depth,
            "merkleTreeRoot": str(self.merkle_tree_root),
            "nullifier": str(self.nullifier),
            "message": str(self.message),
            "scope": str(self.scope),
            "points": [str(p) for p in self.points],
        }

    def to_json(self) -> str:
        """``JSON.stringify`` of the JS object (same key order, no spaces)."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SemaphoreProof:
        """Parse the JS shape strictly: exactly its keys, canonical decimals, ranges
        (depth 1..32; root, nullifier < r; message, scope < 2**256) and ``points`` a
        well-formed packed proof (coordinates < q, points on their curves)."""
        if not isinstance(data, Mapping) or set(data) != set(_KEYS):
            raise ProofError(f"a Semaphore proof has exactly the keys {', '.join(_KEYS)}")
        depth = data["merkleTreeDepth"]
        if not _is_int(depth) or not MIN_DEPTH <= depth <= MAX_DEPTH:
            raise ProofError(f"merkleTreeDepth must be an integer between {MIN_DEPTH} and {MAX_DEPTH}")
        points = data["points"]
        if not isinstance(points, list) or len(points) != 8:
            raise ProofError("points must be a list of 8 decimal strings")
        try:
            return cls(
                merkle_tree_depth=depth,
                merkle_tree_root=parse_decimal(data["merkleTreeRoot"], "merkleTreeRoot"),
                nullifier=parse_decimal(data["nullifier"], "nullifier"),
                message=parse_decimal(data["message"], "message", _TWO_256),
                scope=parse_decimal(data["scope"], "scope", _TWO_256),
                points=Proof.from_decimal_points(points, check_subgroup=False).to_points(),
            )
        except (FieldError, ProofEncodingError) as exc:
            raise ProofError(f"invalid Semaphore proof: {exc}") from None

    @classmethod
    def from_json(cls, text: str | bytes) -> SemaphoreProof:
        """Parse a JSON text strictly (:func:`zk.strict_json.loads`: duplicate keys,
        non-standard constants and deep nesting refused)."""
        try:
            data = strict_json.loads(text)
        except strict_json.JsonInputError as exc:
            raise ProofError(f"invalid Semaphore proof JSON: {exc}") from None
        return cls.from_dict(data)


def public_signals(proof: SemaphoreProof) -> tuple[int, int, int, int] | None:
    """``[root, nullifier, hash(message), hash(scope)]``, or None if a value is out of range."""
    if not (0 <= proof.merkle_tree_root < R and 0 <= proof.nullifier < R):
        return None
    try:
        return (proof.merkle_tree_root, proof.nullifier, semaphore_hash(proof.message), semaphore_hash(proof.scope))
    except MessageError:
        return None


def _backend(backend: str | Groth16Backend) -> Groth16Backend:
    return get_backend(backend) if isinstance(backend, str) else backend


def verify_proof(proof: SemaphoreProof, backend: str | Groth16Backend = "fast") -> bool:
    """Whether ``proof`` is a valid Semaphore proof (``verifyProof``).

    Returns False, never raises, for any malformed value. Raises ``TypeError`` if
    ``proof`` is not a :class:`SemaphoreProof`, and ``ArtifactError`` if the ceremony
    key is missing.
    """
    if not isinstance(proof, SemaphoreProof):
        raise TypeError("verify_proof takes a SemaphoreProof (use SemaphoreProof.from_json)")
    verifier = _backend(backend)
    depth = proof.merkle_tree_depth
    if not MIN_DEPTH <= depth <= MAX_DEPTH:
        return False
    signals = public_signals(proof)
    if signals is None:
        return False
    try:
        # B's subgroup is checked by both backends.
        groth16 = Proof.from_points(proof.points, check_subgroup=False)
    except ProofEncodingError:
        return False
    return verifier.verify(depth, groth16, signals)


def load_prover(depth: int) -> None:
    """Load the witness generator and the proving key of ``depth`` now, rather than on the
    first :func:`generate_proof` of that depth (each is loaded once per process), so that
    the loading can overlap other work. Raises ``ValueError`` subclasses: a depth outside
    1..32, a missing or altered artifact (``ArtifactError``)."""
    semaphore_calculator(depth)
    default_backend().proving_key(depth)


def generate_proof(
    identity: IdentityLike,
    group_or_merkle_proof: LeanIMT | MerkleProof,
    message: int | str | bytes,
    scope: int | str | bytes,
    merkle_tree_depth: int | None = None,
) -> SemaphoreProof:
    """Prove that ``identity`` is a member of the group without revealing which one
    (``generateProof``). The proof is verified before it is returned.

    ``message`` and ``scope`` are ints, text or bytes, converted like the JS SDK does.
    Raises ``ValueError`` subclasses for bad input (non-member, bad depth, message or
    scope out of range) and :class:`ProofError` if the proof cannot be made valid.
    """
    secret = check_scalar(identity.secret_scalar, "identity secret scalar")
    commitment = identity.commitment
    if isinstance(group_or_merkle_proof, MerkleProof):
        merkle = group_or_merkle_proof
        if merkle.leaf != commitment:
            raise ProofError("the Merkle proof is for another leaf than the identity's commitment")
        if not LeanIMT.verify_proof(merkle):
            raise ProofError("the Merkle proof does not lead to its root")
    elif isinstance(group_or_merkle_proof, LeanIMT):
        index = group_or_merkle_proof.index_of(commitment)
        if index is None:
            raise ProofError("the identity is not a member of the group")
        merkle = group_or_merkle_proof.generate_proof(index)
    else:
        raise TypeError("group_or_merkle_proof must be a LeanIMT group or a MerkleProof")
    if merkle_tree_depth is not None and (
        not _is_int(merkle_tree_depth) or not MIN_DEPTH <= merkle_tree_depth <= MAX_DEPTH
    ):
        raise ProofError(f"the tree depth must be a number between {MIN_DEPTH} and {MAX_DEPTH}")
    circuit = merkle_proof_to_circuit_inputs(merkle, merkle_tree_depth)
    depth = len(circuit.merkle_proof_siblings)
    message_value = to_bigint(message)
    scope_value = to_bigint(scope)
    inputs: dict[str, InputValue] = {
        "secret": secret,
        "merkleProofLength": circuit.merkle_proof_length,
        "merkleProofIndex": circuit.merkle_proof_index,
        "merkleProofSiblings": circuit.merkle_proof_siblings,
        "scope": semaphore_hash(scope_value),
        "message": semaphore_hash(message_value),
    }
    wtns = semaphore_calculator(depth).calculate_wtns(inputs)
    try:
        groth16, signals = default_backend().prove(depth, wtns)
    except Groth16Error as exc:
        raise ProofError(str(exc)) from None
    root, nullifier, message_hash, scope_hash = signals
    if (root, message_hash, scope_hash) != (merkle.root, semaphore_hash(message_value), semaphore_hash(scope_value)):
        raise ProofError("the circuit's public signals do not match the inputs")
    return SemaphoreProof(
        merkle_tree_depth=depth,
        merkle_tree_root=merkle.root,
        nullifier=nullifier,
        message=message_value,
        scope=scope_value,
        points=groth16.to_points(),
    )

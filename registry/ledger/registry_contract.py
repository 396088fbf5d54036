"""Typed wrapper of the ZkIdRegistry contract (``contracts/ZkIdRegistry.sol``).

Values are checked for their ABI type only (uint256, uint64, address); what a valid
commitment, sibling list or root is, the contract decides, and its rejections arrive as the
typed exceptions of :mod:`registry.ledger.errors` (``LeafAlreadyExists``,
``MerkleRootExpired``, ``NullifierAlreadyUsed``...).

Proofs are taken in the SemaphoreProof JSON shape of ``@semaphore-protocol/proof`` v4:
``{merkleTreeDepth, merkleTreeRoot, nullifier, message, scope, points[8]}`` with big
integers as canonical decimal strings (or ints).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hexbytes import HexBytes
from web3.types import TxReceipt

from zk import strict_json
from zk.field import Q, R, FieldError, parse_decimal
from zk.proof import SemaphoreProof
from registry.ledger.base import BoundContract, LedgerEvent, check_address, check_uint

from registry.ledger.defaults import DEFAULT_ROOT_WINDOW as DEFAULT_ROOT_WINDOW  # noqa: E402 - re-exported
MAX_PROOF_DEPTH = 32

#: The events from which a group's whole state can be rebuilt.
MEMBERSHIP_EVENTS = ("MemberAdded", "MembersAdded", "MemberUpdated", "MemberRemoved")


@dataclass(frozen=True)
class GroupInfo:
    group_id: int
    admin: str
    root_window: int
    size: int
    depth: int
    root: int


def _number(value: object, name: str, modulus: int) -> int:
    if isinstance(value, str):
        return parse_decimal(value, name, modulus)
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldError(f"{name} must be an integer or a decimal string")
    if not 0 <= value < modulus:
        raise FieldError(f"{name} is out of range")
    return value


def parse_proof(proof: SemaphoreProof | Mapping[str, Any] | str | bytes) -> SemaphoreProof:
    """The :class:`zk.proof.SemaphoreProof` to send: the object itself, its JS-SDK JSON
    object (``to_dict``), or that object's JSON text (:mod:`zk.strict_json`).

    Only ABI-level checks: root and nullifier below r, points below q (BN254 base field),
    message and scope uint256, depth 1..32; nothing is reduced. Whether the points are a
    valid proof the contract decides (``InvalidProof``), so a tampered proof reaches it;
    :meth:`SemaphoreProof.from_dict` is the strict parser for proofs a client sends.
    Raises ``ValueError`` (``FieldError``, ``JsonInputError``) on bad input.
    """
    data: Any = proof.to_dict() if isinstance(proof, SemaphoreProof) else proof
    if isinstance(data, (str, bytes)):
        data = strict_json.loads(data)
    if not isinstance(data, Mapping):
        raise ValueError("proof must be a SemaphoreProof JSON object")
    missing = [k for k in ("merkleTreeDepth", "merkleTreeRoot", "nullifier", "message", "scope", "points") if k not in data]
    if missing:
        raise ValueError(f"proof lacks {missing[0]}")
    depth = _number(data["merkleTreeDepth"], "merkleTreeDepth", MAX_PROOF_DEPTH + 1)
    if depth < 1:
        raise ValueError("merkleTreeDepth must be between 1 and 32")
    points = data["points"]
    if not isinstance(points, Sequence) or isinstance(points, (str, bytes)) or len(points) != 8:
        raise ValueError("proof points must be a list of 8 numbers")
    return SemaphoreProof(
        merkle_tree_depth=depth,
        merkle_tree_root=_number(data["merkleTreeRoot"], "merkleTreeRoot", R),
        nullifier=_number(data["nullifier"], "nullifier", R),
        message=_number(data["message"], "message", 2**256),
        scope=_number(data["scope"], "scope", 2**256),
        points=tuple(_number(p, f"points[{i}]", Q) for i, p in enumerate(points)),
    )


def proof_tuple(proof: SemaphoreProof) -> tuple[int, int, int, int, int, list[int]]:
    """The contract's ``SemaphoreProof`` struct."""
    return (proof.merkle_tree_depth, proof.merkle_tree_root, proof.nullifier, proof.message, proof.scope, list(proof.points))


class RegistryContract(BoundContract):
    """The ZK-ID registry: groups, members, root validity, proof validation."""

    ARTIFACT = "ZkIdRegistry"

    # ------------------------------------------------------------------ groups and admins

    def create_group(self, admin: str | None = None, root_window: int = DEFAULT_ROOT_WINDOW) -> int:
        """Create a group (admin: the signer by default); return its id."""
        if self.tx is None:
            raise ValueError("create_group needs a signing account")
        admin_addr = check_address(admin or self.tx.address, "admin")
        receipt = self._send(self.contract.functions.createGroup(admin_addr, check_uint(root_window, "root_window", 64)))
        assert isinstance(receipt, Mapping)
        created = [e for e in self.decode_receipt(receipt) if e.name == "GroupCreated"]
        return int(created[0].args["groupId"])

    def transfer_admin(self, group_id: int, new_admin: str, wait: bool = True) -> TxReceipt | HexBytes:
        fn = self.contract.functions.transferGroupAdmin(check_uint(group_id, "group_id"), check_address(new_admin, "new_admin"))
        return self._send(fn, wait)

    def accept_admin(self, group_id: int, wait: bool = True) -> TxReceipt | HexBytes:
        return self._send(self.contract.functions.acceptGroupAdmin(check_uint(group_id, "group_id")), wait)

    def set_root_window(self, group_id: int, seconds: int, wait: bool = True) -> TxReceipt | HexBytes:
        fn = self.contract.functions.setRootWindow(check_uint(group_id, "group_id"), check_uint(seconds, "seconds", 64))
        return self._send(fn, wait)

    # ------------------------------------------------------------------ members

    def add_member(self, group_id: int, commitment: int, wait: bool = True) -> TxReceipt | HexBytes:
        fn = self.contract.functions.addMember(check_uint(group_id, "group_id"), check_uint(commitment, "commitment"))
        return self._send(fn, wait)

    def add_members(self, group_id: int, commitments: Sequence[int], wait: bool = True) -> TxReceipt | HexBytes:
        values = [check_uint(c, f"commitments[{i}]") for i, c in enumerate(commitments)]
        return self._send(self.contract.functions.addMembers(check_uint(group_id, "group_id"), values), wait)

    def update_member(
        self, group_id: int, old: int, new: int, siblings: Sequence[int], wait: bool = True
    ) -> TxReceipt | HexBytes:
        """Rotate ``old`` to ``new``; ``siblings``: the LeanIMT proof of ``old`` (zk-kit format)."""
        fn = self.contract.functions.updateMember(
            check_uint(group_id, "group_id"),
            check_uint(old, "old"),
            check_uint(new, "new"),
            [check_uint(s, f"siblings[{i}]") for i, s in enumerate(siblings)],
        )
        return self._send(fn, wait)

    def remove_member(
        self, group_id: int, commitment: int, siblings: Sequence[int], wait: bool = True
    ) -> TxReceipt | HexBytes:
        fn = self.contract.functions.removeMember(
            check_uint(group_id, "group_id"),
            check_uint(commitment, "commitment"),
            [check_uint(s, f"siblings[{i}]") for i, s in enumerate(siblings)],
        )
        return self._send(fn, wait)

    # ------------------------------------------------------------------ proofs

    def validate_proof(self, group_id: int, proof: SemaphoreProof | Mapping[str, Any] | str, wait: bool = True) -> TxReceipt | HexBytes:
        """Verify on chain and spend the nullifier. Typed errors: NullifierAlreadyUsed,
        MerkleRootUnknown, MerkleRootExpired, MerkleTreeDepthNotSupported, InvalidProof."""
        parsed = parse_proof(proof)
        fn = self.contract.functions.validateProof(check_uint(group_id, "group_id"), proof_tuple(parsed))
        return self._send(fn, wait)

    def verify_proof(self, group_id: int, proof: SemaphoreProof | Mapping[str, Any] | str) -> bool:
        """The contract's view check (reverts typed on a bad root); True if the proof verifies."""
        parsed = parse_proof(proof)
        return bool(self._call(self.contract.functions.verifyProof(check_uint(group_id, "group_id"), proof_tuple(parsed))))

    # ------------------------------------------------------------------ views

    def group_count(self) -> int:
        return int(self._call(self.contract.functions.groupCount()))

    def group(self, group_id: int) -> GroupInfo:
        admin, window, size, depth, root = self._call(self.contract.functions.getGroup(check_uint(group_id, "group_id")))
        return GroupInfo(group_id, str(admin), int(window), int(size), int(depth), int(root))

    def pending_admin(self, group_id: int) -> str | None:
        addr = str(self._call(self.contract.functions.pendingAdmin(check_uint(group_id, "group_id"))))
        return None if int(addr, 16) == 0 else addr

    def root(self, group_id: int) -> int:
        return int(self._call(self.contract.functions.getMerkleTreeRoot(check_uint(group_id, "group_id"))))

    def size(self, group_id: int) -> int:
        return int(self._call(self.contract.functions.getMerkleTreeSize(check_uint(group_id, "group_id"))))

    def depth(self, group_id: int) -> int:
        return int(self._call(self.contract.functions.getMerkleTreeDepth(check_uint(group_id, "group_id"))))

    def _group_view(self, function: str, group_id: int, value: int, name: str) -> Any:
        """A view ``function(groupId, value)`` of the contract, both checked as uint256."""
        fn = getattr(self.contract.functions, function)
        return self._call(fn(check_uint(group_id, "group_id"), check_uint(value, name)))

    def has_member(self, group_id: int, commitment: int) -> bool:
        return bool(self._group_view("hasMember", group_id, commitment, "commitment"))

    def index_of(self, group_id: int, commitment: int) -> int:
        return int(self._group_view("indexOf", group_id, commitment, "commitment"))

    def root_superseded_at(self, group_id: int, root: int) -> int:
        """Block timestamp at which ``root`` stopped being current (0: current or never a root)."""
        return int(self._group_view("rootSupersededAt", group_id, root, "root"))

    def is_root_valid(self, group_id: int, root: int) -> bool:
        return bool(self._group_view("isRootValid", group_id, root, "root"))

    def is_nullifier_used(self, group_id: int, nullifier: int) -> bool:
        return bool(self._group_view("isNullifierUsed", group_id, nullifier, "nullifier"))

    def verifier_address(self) -> str:
        return str(self._call(self.contract.functions.verifier()))

    # ------------------------------------------------------------------ events

    def group_events(self, group_id: int, from_block: int, to_block: int | str = "latest") -> list[LedgerEvent]:
        """Every event of one group in a block range, in chain order."""
        return self.events(from_block, to_block, topic1=check_uint(group_id, "group_id").to_bytes(32, "big"))

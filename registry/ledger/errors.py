"""Errors of the ledger layer, and the decoding of contract reverts into them.

Every Solidity custom error of our contracts (``contracts/*.sol``, including those that
``lean-imt.sol`` raises inside them) has a Python class of the same name here. A revert is
decoded by its 4-byte selector (Solidity ABI spec, "Errors":
https://docs.soliditylang.org/en/v0.8.28/abi-spec.html#errors), with its arguments decoded
from the ABI of the committed artifacts, so a new error in a contract without a class here
is caught by a test rather than silently becoming "unknown".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak


class LedgerError(Exception):
    """Base class of everything the ledger layer raises on purpose."""


class LedgerUnavailable(LedgerError):
    """The node cannot be reached (or is not the node we expected)."""


def unreachable(endpoint: object, exc: BaseException) -> LedgerUnavailable:
    """A short, one-line LedgerUnavailable for a transport failure (no library repr dumps)."""
    text = str(exc)
    if "Connection refused" in text or isinstance(exc, ConnectionRefusedError):
        reason = "connection refused"
    elif "timed out" in text.lower() or "timeout" in type(exc).__name__.lower():
        reason = "timed out"
    elif "Name or service not known" in text or "getaddrinfo" in text:
        reason = "unknown host"
    else:
        reason = type(exc).__name__
    return LedgerUnavailable(f"ledger node unreachable at {endpoint} ({reason})")


class AnvilError(LedgerError):
    """Starting, stopping or finding the local Anvil node failed."""


class DeploymentError(LedgerError):
    """A deployment is missing, inconsistent or cannot be made."""


class TransactionFailed(LedgerError):
    """A transaction was mined with status 0 and no decodable revert reason, or timed out."""


class OutOfGas(TransactionFailed):
    """A mined transaction ran out of gas (``gas_limit`` was too low): curable by resending
    with more gas, or by splitting a batch."""

    def __init__(self, message: str, gas_limit: int) -> None:
        super().__init__(message)
        self.gas_limit = gas_limit


class InsufficientFunds(TransactionFailed):
    """The node refused a transaction because the account cannot pay its gas."""


class ContractRevert(LedgerError, ValueError):
    """A contract call reverted. Subclasses carry the custom error's name and arguments.

    ``args_dict`` maps the Solidity parameter names to decoded values; ``data`` is the raw
    revert data.
    """

    solidity_name: str = ""

    def __init__(self, args: Mapping[str, Any] | None = None, data: bytes = b"", message: str = "") -> None:
        self.args_dict: dict[str, Any] = dict(args or {})
        self.data = data
        shown = ", ".join(f"{k}={_show(v)}" for k, v in self.args_dict.items())
        text = message or f"{self.solidity_name or type(self).__name__}({shown})"
        super().__init__(text)


def _show(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return str(value)


class UnknownRevert(ContractRevert):
    """Revert data whose selector is not one of our contracts' errors."""


class RevertWithReason(ContractRevert):
    """``Error(string)``: a plain ``require``/``revert`` message."""

    solidity_name = "Error"


class PanicRevert(ContractRevert):
    """``Panic(uint256)``: a failed assertion, overflow, out-of-bounds access... (a bug)."""

    solidity_name = "Panic"


# Categories, so callers can catch a family of rejections at once.
class AccessDenied(ContractRevert):
    """The caller lacks the role the function needs."""


class InvalidLeaf(ContractRevert):
    """A commitment (leaf) was rejected by the Merkle tree."""


class RootRejected(ContractRevert):
    """A proof's Merkle root is not (or no longer) valid for the group."""


class ProofRejected(ContractRevert):
    """A Semaphore proof failed validation."""


class InvalidArgument(ContractRevert):
    """A malformed request (empty batch, zero address...)."""


class NotFound(ContractRevert):
    """The group, log, leaf or anchor does not exist."""


# ---- ZkIdRegistry (and lean-imt.sol's errors raised inside it)
class AdminIsZeroAddress(InvalidArgument):
    pass


class GroupDoesNotExist(NotFound):
    pass


class CallerIsNotAdmin(AccessDenied):
    pass


class CallerIsNotPendingAdmin(AccessDenied):
    pass


class EmptyBatch(InvalidArgument):
    pass


class WrongSiblingCount(InvalidArgument):
    pass


class MerkleRootUnknown(RootRejected):
    pass


class MerkleRootExpired(RootRejected):
    pass


class MerkleTreeDepthNotSupported(ProofRejected):
    pass


class NullifierAlreadyUsed(ProofRejected):
    pass


class InvalidProof(ProofRejected):
    pass


class LeafGreaterThanSnarkScalarField(InvalidLeaf):
    pass


class LeafCannotBeZero(InvalidLeaf):
    pass


class LeafAlreadyExists(InvalidLeaf):
    pass


class LeafDoesNotExist(InvalidLeaf, NotFound):
    pass


class WrongSiblingNodes(InvalidLeaf):
    pass


# ---- EvidenceAnchor
class EmptyOrigin(InvalidArgument):
    pass


class OwnerIsZeroAddress(InvalidArgument):
    pass


class LogKeyIsZero(InvalidArgument):
    pass


class CallerIsNotRegistrar(AccessDenied):
    pass


class CallerIsNotPendingLogOwner(AccessDenied):
    pass


class LogAlreadyRegistered(InvalidArgument):
    pass


class LogNotRegistered(NotFound):
    pass


class CallerIsNotLogOwner(AccessDenied):
    pass


class CallerIsNotOperator(AccessDenied):
    pass


class RootHashIsZero(InvalidArgument):
    pass


class TreeSizeNotGrowing(InvalidArgument):
    pass


class AnchorNotFound(NotFound):
    pass


#: Solidity error name -> Python class.
CONTRACT_ERRORS: dict[str, type[ContractRevert]] = {
    cls.__name__: cls
    for cls in (
        AdminIsZeroAddress,
        GroupDoesNotExist,
        CallerIsNotAdmin,
        CallerIsNotPendingAdmin,
        EmptyBatch,
        WrongSiblingCount,
        MerkleRootUnknown,
        MerkleRootExpired,
        MerkleTreeDepthNotSupported,
        NullifierAlreadyUsed,
        InvalidProof,
        LeafGreaterThanSnarkScalarField,
        LeafCannotBeZero,
        LeafAlreadyExists,
        LeafDoesNotExist,
        WrongSiblingNodes,
        EmptyOrigin,
        OwnerIsZeroAddress,
        LogKeyIsZero,
        CallerIsNotRegistrar,
        CallerIsNotPendingLogOwner,
        LogAlreadyRegistered,
        LogNotRegistered,
        CallerIsNotLogOwner,
        CallerIsNotOperator,
        RootHashIsZero,
        TreeSizeNotGrowing,
        AnchorNotFound,
    )
}
for _name, _cls in CONTRACT_ERRORS.items():
    _cls.solidity_name = _name

PANIC_CODES = {
    0x01: "assertion failed",
    0x11: "arithmetic overflow or underflow",
    0x12: "division by zero",
    0x21: "invalid enum value",
    0x22: "invalid storage byte array",
    0x31: "pop on empty array",
    0x32: "array index out of bounds",
    0x41: "out of memory",
    0x51: "call to an uninitialised function",
}


def _type_string(param: Mapping[str, Any]) -> str:
    """Canonical ABI type of a parameter (tuples expanded), for selectors and decoding."""
    t = str(param["type"])
    if t.startswith("tuple"):
        inner = ",".join(_type_string(c) for c in param["components"])
        return f"({inner}){t[5:]}"
    return t


class ErrorDecoder:
    """Maps revert data to exceptions, from the ``error`` entries of contract ABIs."""

    def __init__(self, abis: Iterable[Iterable[Mapping[str, Any]]]) -> None:
        self._by_selector: dict[bytes, tuple[str, list[str], list[str]]] = {}
        for abi in abis:
            for entry in abi:
                if entry.get("type") != "error":
                    continue
                types = [_type_string(p) for p in entry["inputs"]]
                names = [str(p["name"]) for p in entry["inputs"]]
                signature = f"{entry['name']}({','.join(types)})"
                self._by_selector[keccak(text=signature)[:4]] = (str(entry["name"]), types, names)

    def error_names(self) -> set[str]:
        return {name for name, _, _ in self._by_selector.values()}

    def decode(self, data: bytes | str | None) -> ContractRevert:
        """Build the exception for revert ``data`` (bytes or 0x-hex); never raises itself."""
        raw = _to_bytes(data)
        if len(raw) < 4:
            return UnknownRevert(data=raw, message="execution reverted without data")
        selector, body = raw[:4], raw[4:]
        try:
            if selector == keccak(text="Error(string)")[:4]:
                (reason,) = abi_decode(["string"], body)
                return RevertWithReason({"reason": reason}, raw, f"reverted: {reason}")
            if selector == keccak(text="Panic(uint256)")[:4]:
                (code,) = abi_decode(["uint256"], body)
                what = PANIC_CODES.get(code, "unknown panic")
                return PanicRevert({"code": code}, raw, f"Panic(0x{code:02x}): {what}")
            known = self._by_selector.get(selector)
            if known is None:
                return UnknownRevert(data=raw, message=f"unknown custom error 0x{selector.hex()}")
            name, types, names = known
            values = list(abi_decode(types, body))
        except Exception as exc:  # malformed revert data: report, do not crash the caller
            return UnknownRevert(data=raw, message=f"undecodable revert data 0x{raw.hex()} ({exc})")
        cls = CONTRACT_ERRORS.get(name, UnknownRevert)
        values = [to_checksum_address(v) if t == "address" else v for t, v in zip(types, values, strict=True)]
        exc_obj = cls(dict(zip(names, values, strict=True)), raw)
        if cls is UnknownRevert:
            exc_obj.solidity_name = name
        return exc_obj


def _to_bytes(data: bytes | str | None) -> bytes:
    if data is None:
        return b""
    if isinstance(data, bytes):
        return data
    text = data.strip()
    if text.startswith("Reverted "):
        text = text[len("Reverted ") :]
    if text.startswith(("0x", "0X")):
        text = text[2:]
    try:
        return bytes.fromhex(text)
    except ValueError:
        return b""

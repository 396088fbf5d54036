"""Client SDK of a ZK-ID registry and of send authorizations.

- :class:`RegistryClient`: the registry's HTTP API (``registry/web/app.py``): register a
  commitment (with an invite code, or anonymously admitted with an admission proof:
  :func:`build_admission_proof`, made over the admission group's whole member list so the
  registry never learns which member is registering, docs/admission.md), follow it until
  it is anchored, fetch its Merkle proof.
- :func:`group_from_ledger`: the trustless path: rebuild a group's LeanIMT from the
  ``ZkIdRegistry`` contract's membership events alone, checking every event's ``newRoot``
  against the rebuilt tree (``contracts/ZkIdRegistry.sol``: an add event's first index is
  the group's size before it; updates and removals carry their index).
- :class:`SendSlots` and :func:`build_send_authorization`: the sender side of
  ``docs/authorization.md``: a proof over ``message = SHA-256(blob)`` and the relay-epoch
  scope of ``zk/relay_scope.py``, with a slot never used twice by this client.
- :func:`send_blob`: posts it to a relay; :class:`RelaySendError` says whether the slot
  is spent (``authorization_unknown``: the registry may have claimed it).
- acknowledgement helpers over :mod:`zk.evidence.ack`.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from registry.client._http import HttpSession, RegistryClientError, answer, failure, request
from registry.storage.sqlite import connect, create_schema, transaction
from registry._utils.integers import UINT64_MAX, bounded_int
from zk.admission_scope import AdmissionScope
from zk.field import R
from zk.identity import Identity
from zk.proof import SemaphoreProof, generate_proof
from zk.relay_scope import RegistryRef, RelayScope, blob_message, digest_blob, epoch_at
from zk.tree import LeanIMT, MerkleProof

if TYPE_CHECKING:  # web3 and eth-account: imported by the functions that use them
    from registry.ledger.registry_contract import RegistryContract
    from zk.evidence.ack import EddsaAcknowledgement, SemaphoreAcknowledgement

__all__ = [
    "LedgerMismatchError",
    "RegistryClient",
    "RegistryClientError",
    "RelaySendError",
    "SLOT_SPENT_CODES",
    "SendSlots",
    "SlotsExhaustedError",
    "acknowledge",
    "acknowledge_anonymously",
    "build_admission_proof",
    "build_send_authorization",
    "group_from_ledger",
    "send_blob",
    "tree_of_leaves",
]


class LedgerMismatchError(ValueError):
    """The contract's events do not rebuild the roots the contract announced."""


class SlotsExhaustedError(ValueError):
    """Every slot of the epoch was already used by this client."""


def _check_commitment(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < R:
        raise ValueError("a commitment is an integer 0 < c < r")
    return value


class RegistryClient(HttpSession):
    """HTTP client of one registry (httpx, synchronous): ``RegistryClient(url, timeout=...,
    client=...)``, a context manager (:class:`registry.client._http.HttpSession`)."""

    def _request(self, method: str, path: str, *, ok: tuple[int, ...] = (), **kwargs: Any) -> Any:
        """One request (registry/client/_http.py: transport errors, error bodies, strict JSON)."""
        return answer(request(self._http, method, path, **kwargs), ok)

    def health(self) -> dict[str, Any]:
        """``GET /v1/health``."""
        return dict(self._request("GET", "/v1/health"))

    def create_group(self, body: dict[str, Any], token: str, *, timeout: float = 180.0) -> dict[str, Any]:
        """``POST /v1/groups`` (operator): ``root_window``, ``admission``; returns the new group."""
        return dict(self._request("POST", "/v1/groups", ok=(201,), json=body, headers=_bearer(token), timeout=timeout))

    def set_admission(self, group_id: int, body: dict[str, Any], token: str) -> dict[str, Any]:
        """``PUT /v1/groups/{id}/admission`` (operator): the group's admission policy."""
        return dict(self._request("PUT", f"/v1/groups/{int(group_id)}/admission", ok=(200,), json=body, headers=_bearer(token)))

    def create_invites(self, group_id: int, count: int, expires_at: int, token: str) -> dict[str, Any]:
        """``POST /v1/groups/{id}/invites`` (operator): single-use invite codes."""
        body = {"count": count, "expires_at": expires_at}
        return dict(self._request("POST", f"/v1/groups/{int(group_id)}/invites", ok=(201,), json=body, headers=_bearer(token)))

    def register_body(self, group_id: int, body: dict[str, Any], token: str | None = None) -> dict[str, Any]:
        """``POST /v1/groups/{id}/members`` with a prepared body (``token``: as the operator);
        returns the first member's status."""
        headers = _bearer(token) if token else {}
        data = self._request("POST", f"/v1/groups/{int(group_id)}/members", ok=(202,), json=body, headers=headers)
        return dict(data["members"][0])

    def authorize(self, group_id: int, proof: SemaphoreProof, blob_digest: bytes) -> dict[str, Any]:
        """``POST /v1/authorize``: the registry's decision (``authorized``, ``reason``,
        ``epoch``...), a refusal included; an answer without a decision raises."""
        body = {"group_id": group_id, "proof": proof.to_dict(), "blob_digest": blob_digest.hex()}
        response = request(self._http, "POST", "/v1/authorize", json=body)
        data = answer(response, (response.status_code,))  # a refusal is a decision too
        if not isinstance(data, dict) or "authorized" not in data:
            raise failure(response)
        return data

    def evidence_bundle(self, evidence_id: str, checkpoint: str = "anchored") -> bytes:
        """``GET /v1/evidence/{id}/bundle``: the bundle's JSON bytes, as served."""
        response = request(self._http, "GET", f"/v1/evidence/{evidence_id}/bundle", params={"checkpoint": checkpoint})
        if response.status_code != 200:
            raise failure(response)
        return response.content

    def group(self, group_id: int) -> dict[str, Any]:
        """``GET /v1/groups/{id}``: root, size, depth, epoch_length, message_limit, clock_skew..."""
        return dict(self._request("GET", f"/v1/groups/{int(group_id)}"))

    def send_parameters(self, group_id: int) -> tuple[RegistryRef, int, int]:
        """``(registry, epoch_length, message_limit)`` of a group (``GET /v1/groups/{id}``),
        checked: an answer without them as positive integers is ``bad_response``."""
        info = self.group(group_id)
        epoch_length, limit = (bounded_int(info.get(key), 1, UINT64_MAX) for key in ("epoch_length", "message_limit"))
        if epoch_length is None or limit is None:
            raise RegistryClientError(200, "bad_response", f"group {group_id}'s epoch_length and message_limit are not positive integers")
        return registry_of(info), epoch_length, limit

    def register(
        self,
        group_id: int,
        commitment: int,
        *,
        invite: str | None = None,
        admission_proof: SemaphoreProof | None = None,
    ) -> dict[str, Any]:
        """``POST /v1/groups/{id}/members``: queue one commitment; returns its status JSON.

        The group's admission policy (``group(id)["admission"]``) says what to send: an
        ``invite`` code, an ``admission_proof`` (:meth:`register_admitted` makes one), or
        nothing (``open``)."""
        value = _check_commitment(commitment)
        body: dict[str, Any] = {"commitments": [str(value)]}
        if invite is not None:
            body["invite"] = invite
        if admission_proof is not None:
            body["admission_proof"] = admission_proof.to_dict()
        data = self._request("POST", f"/v1/groups/{int(group_id)}/members", json=body)
        return dict(data["members"][0])

    def members(self, group_id: int, page: int = 10_000, attempts: int = 5) -> LeanIMT:
        """The whole group, from ``GET /v1/groups/{id}/members`` pages (leaves are public on
        the ledger: asking for all of them says nothing about which one is the caller's).

        Every page must carry the same root and size (else the group changed while it was
        read: read again, up to ``attempts`` times), and the rebuilt tree must have that
        root. Does not protect against a registry that lies about the whole group: pass
        :func:`group_from_ledger`'s tree to :meth:`register_admitted` for that."""
        for _ in range(attempts):
            leaves: list[int] = []
            root: str | None = None
            size: int | None = None
            while size is None or len(leaves) < size:
                data = self._request("GET", f"/v1/groups/{int(group_id)}/members", params={"start": len(leaves), "limit": page})
                try:
                    page_root, page_size, chunk = str(data["root"]), int(data["size"]), [int(m) for m in data["members"]]
                except (KeyError, TypeError, ValueError):
                    raise RegistryClientError(200, "bad_response", "unusable member list") from None
                if root is None:
                    root, size = page_root, page_size
                if (page_root, page_size) != (root, size):
                    break  # changed under us: read again
                if not chunk and len(leaves) < page_size:
                    raise RegistryClientError(200, "bad_response", "the member list ends before the group's size")
                leaves.extend(chunk)
            else:
                try:
                    tree = tree_of_leaves(leaves)
                except ValueError:
                    raise RegistryClientError(200, "bad_response", "the member list does not make a tree") from None
                if len(leaves) != size or str(tree.root) != root:
                    raise RegistryClientError(200, "bad_response", "the member list does not rebuild the group's root")
                return tree
        raise RegistryClientError(200, "busy", f"group {group_id} kept changing while its members were read")

    def register_admitted(
        self,
        group_id: int,
        commitment: int,
        admission_identity: Identity,
        admission_group: int | None = None,
        *,
        admission_tree: LeanIMT | None = None,
    ) -> dict[str, Any]:
        """Register ``commitment`` in a ``zk`` group, anonymously admitted: prove that
        ``admission_identity`` is a member of the group's admission group, for the group's
        current round. The proof reveals neither which member made it nor links the two
        identities.

        The admission group's tree is built here, from its whole member list
        (:meth:`members`), or is ``admission_tree`` (e.g. :func:`group_from_ledger`, which
        trusts only the chain): the registry is never told the admission commitment, so
        it cannot link the person to ``commitment`` (docs/admission.md).

        ``admission_group``, if given, must be the group's (a client that was told which
        admission group it belongs to checks that the registry agrees)."""
        info = self.group(group_id)
        admission = info.get("admission")
        if not isinstance(admission, dict) or admission.get("policy") != "zk":
            raise RegistryClientError(0, "not_zk", f"group {group_id} does not admit with admission proofs")
        group_a = int(admission["admission_group"])
        if admission_group is not None and admission_group != group_a:
            raise RegistryClientError(0, "wrong_admission_group", f"group {group_id}'s admission group is {group_a}")
        tree = admission_tree if admission_tree is not None else self.members(group_a)
        index = tree.index_of(admission_identity.commitment)
        if index is None:
            raise RegistryClientError(0, "not_member", f"the admission identity is not a member of group {group_a}")
        proof = build_admission_proof(
            admission_identity, tree.generate_proof(index), group_id, int(admission["round"]), commitment, registry=registry_of(info)
        )
        return self.register(group_id, commitment, admission_proof=proof)

    def status(self, group_id: int, commitment: int) -> dict[str, Any]:
        """``GET /v1/groups/{id}/members/{c}``: ``{"status": pending|included|final, "index", ...}``."""
        value = _check_commitment(commitment)
        return dict(self._request("GET", f"/v1/groups/{int(group_id)}/members/{value}"))

    def wait_until_anchored(
        self,
        group_id: int,
        commitment: int,
        timeout: float = 120.0,
        progress: Callable[[dict[str, Any]], None] | None = None,
        *,
        final: bool = False,
        interval: float = 0.5,
    ) -> dict[str, Any]:
        """Poll the status until the member is on chain with an index (``final=True``: until
        it has the registry's confirmations); ``progress`` sees every status read.
        Raises ``TimeoutError`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            current = self.status(group_id, commitment)
            if progress is not None:
                progress(current)
            state = current.get("status")
            if state == "refused":
                raise RegistryClientError(200, "refused", f"the ledger refused the registration: {current.get('reason')}")
            if current.get("index") is not None and (state == "final" or (state == "included" and not final)):
                return current
            if time.monotonic() >= deadline:
                raise TimeoutError(f"commitment still {state!r} after {timeout} s")
            time.sleep(interval)

    def merkle_proof(self, group_id: int, commitment: int) -> MerkleProof:
        """``GET /v1/groups/{id}/proofs/{c}``; the proof is checked to lead to its root."""
        value = _check_commitment(commitment)
        data = self._request("GET", f"/v1/groups/{int(group_id)}/proofs/{value}")
        proof = MerkleProof.from_dict(data["merkle_proof"])
        if proof.leaf != value or not LeanIMT.verify_proof(proof):
            raise RegistryClientError(200, "bad_proof", "the registry's Merkle proof does not verify")
        return proof


def registry_of(group_info: dict[str, Any]) -> RegistryRef:
    """The deployment ``(chain_id, registry_contract)`` a ``GET /v1/groups/{id}`` answer
    names: what the group's scopes must bind (docs/authorization.md); else ``bad_response``."""
    try:
        return RegistryRef(group_info.get("chain_id"), group_info.get("registry_contract"))  # type: ignore[arg-type]
    except ValueError:
        raise RegistryClientError(200, "bad_response", "the group's chain_id and registry_contract are not a deployment") from None


def tree_of_leaves(leaves: list[int]) -> LeanIMT:
    """A LeanIMT with these leaves in order, 0 marking a removed one (as the contract's
    tree after ``removeMember``). Raises ``ValueError`` for a repeated or bad leaf."""
    present = set(leaves)
    filler = R - 1  # removed slots are filled with unused values, then removed
    filled: list[int] = []
    for leaf in leaves:
        if leaf == 0:
            while filler in present:
                filler -= 1
            present.add(filler)
            filled.append(filler)
        else:
            filled.append(leaf)
    tree = LeanIMT(leaves=filled)
    for index, leaf in enumerate(leaves):
        if leaf == 0:
            tree.remove(index)
    return tree


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def group_from_ledger(
    registry: RegistryContract, group_id: int, from_block: int = 0, chunk: int = 10_000
) -> LeanIMT:
    """Rebuild group ``group_id`` from the contract's membership events alone.

    Events are read up to a fixed head block in ``chunk``-block ``eth_getLogs`` requests;
    each event's ``newRoot`` must equal the rebuilt root, and at the end the root must equal
    the contract's root at that head. Raises :class:`LedgerMismatchError` otherwise.
    """
    from registry.ledger.registry_contract import MEMBERSHIP_EVENTS

    if chunk < 1:
        raise ValueError("chunk must be positive")
    head = int(registry.w3.eth.block_number)
    tree = LeanIMT()
    start = from_block
    while start <= head:
        end = min(start + chunk - 1, head)
        for event in registry.group_events(group_id, start, end):
            if event.name not in MEMBERSHIP_EVENTS:
                continue
            args = event.args
            try:
                if event.name == "MemberAdded":
                    tree.insert(int(args["commitment"]))
                elif event.name == "MembersAdded":
                    tree.insert_many([int(c) for c in args["commitments"]])
                elif event.name == "MemberUpdated":
                    index = int(args["index"])
                    if tree.leaf(index) != int(args["oldCommitment"]):
                        raise LedgerMismatchError(f"MemberUpdated at block {event.block_number}: wrong old leaf")
                    tree.update(index, int(args["newCommitment"]))
                else:  # MemberRemoved
                    index = int(args["index"])
                    if tree.leaf(index) != int(args["commitment"]):
                        raise LedgerMismatchError(f"MemberRemoved at block {event.block_number}: wrong leaf")
                    tree.remove(index)
            except LedgerMismatchError:
                raise
            except ValueError as exc:
                raise LedgerMismatchError(f"{event.name} at block {event.block_number} does not apply: {exc}") from None
            if tree.root != int(args["newRoot"]):
                raise LedgerMismatchError(f"{event.name} at block {event.block_number}: newRoot differs from the rebuilt root")
        start = end + 1
    on_chain = int(registry.contract.functions.getMerkleTreeRoot(group_id).call(block_identifier=head))
    if tree.root != on_chain:
        raise LedgerMismatchError("the rebuilt root differs from the contract's root")
    return tree


class SendSlots:
    """Used (group, epoch, slot) triples of one client, in a small SQLite file.

    ``claim`` picks the lowest unused slot of an epoch and records it durably (one
    ``BEGIN IMMEDIATE`` transaction, so two processes sharing the file never get the same
    slot) before the proof is even made: a failed send wastes a slot, never reuses one.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        # Owner-only, like the identity file beside it: the slots used per epoch say when
        # this identity sent (created 0600 before SQLite opens it; its -wal/-shm follow
        # the main file's mode).
        self.path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        self._db = connect(self.path, durable=True)
        create_schema(
            self._db,
            [
                "CREATE TABLE IF NOT EXISTS slots (group_id INTEGER NOT NULL, epoch INTEGER NOT NULL,"
                " slot INTEGER NOT NULL, PRIMARY KEY (group_id, epoch, slot)) WITHOUT ROWID"
            ],
        )

    def close(self) -> None:
        self._db.close()

    def claim(self, group_id: int, epoch: int, limit: int) -> int:
        if limit < 1:
            raise ValueError("limit must be positive")
        with self._lock, transaction(self._db):
            used = {
                int(r[0])
                for r in self._db.execute("SELECT slot FROM slots WHERE group_id = ? AND epoch = ?", (group_id, epoch))
            }
            free = next((s for s in range(limit) if s not in used), None)
            if free is None:
                raise SlotsExhaustedError(f"all {limit} slots of epoch {epoch} are used")
            self._db.execute("INSERT INTO slots (group_id, epoch, slot) VALUES (?, ?, ?)", (group_id, epoch, free))
            # Epochs long past can never be accepted again: forget them.
            self._db.execute("DELETE FROM slots WHERE group_id = ? AND epoch < ?", (group_id, epoch - 2))
        return free

    def used(self, group_id: int, epoch: int) -> list[int]:
        with self._lock:
            rows = self._db.execute(
                "SELECT slot FROM slots WHERE group_id = ? AND epoch = ? ORDER BY slot", (group_id, epoch)
            )
            return [int(r[0]) for r in rows]

    def take(self, group_id: int, epoch: int, slot: int) -> bool:
        """Record a slot chosen by the caller (e.g. ``--slot``) as used, durably; ``False``
        if this client had used it already (the proof would then be refused as
        ``nullifier_reused``)."""
        if slot < 0:
            raise ValueError("slot must not be negative")
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO slots (group_id, epoch, slot) VALUES (?, ?, ?)", (group_id, epoch, slot)
            )
            return cur.rowcount == 1


def build_send_authorization(
    identity: Identity,
    merkle_proof_or_group: MerkleProof | LeanIMT,
    group_id: int,
    blob: bytes,
    now: float,
    slots: SendSlots,
    *,
    registry: RegistryRef,
    epoch_length: int = 600,
    message_limit: int = 100,
) -> tuple[SemaphoreProof, bytes]:
    """A send authorization for ``blob`` (docs/authorization.md): a fresh slot of the epoch
    containing ``now`` in the LZE2 scope of group ``group_id`` of ``registry`` (the
    group's home deployment: :meth:`RegistryClient.send_parameters`), ``message =
    SHA-256(blob)``; returns the proof and the digest."""
    if not isinstance(blob, (bytes, bytearray)):
        raise TypeError("blob must be bytes")
    digest = digest_blob(bytes(blob))
    epoch = epoch_at(now, epoch_length)
    slot = slots.claim(group_id, epoch, message_limit)
    scope = RelayScope.of(registry, group_id, epoch, slot).encode()
    proof = generate_proof(identity, merkle_proof_or_group, blob_message(digest), scope)
    return proof, digest


#: Relay refusals after which the send authorization's slot counts as used: the
#: nullifier is (or may be) claimed, so the same proof must not be sent again; a new send
#: takes a new slot (:class:`SendSlots` never gives one out twice anyway).
SLOT_SPENT_CODES = frozenset({"authorization_unknown", "nullifier_reused"})


class RelaySendError(RegistryClientError):
    """A relay refused a send (``status`` and ``code`` from its error JSON), or could not be
    reached (``code`` ``unreachable``: nothing sent, or ``no_answer``; ``status == 0``). ``slot_spent``: the proof must
    not be retried; build a new one (docs/relay.md "Retrying a send")."""

    def __init__(self, status: int, code: str, message: str, *, retry_after: float = 0.0) -> None:
        super().__init__(status, code, message, retry_after=retry_after)
        # no_answer: the request went out; it may have been authorized before the reply was lost.
        self.slot_spent = code in SLOT_SPENT_CODES or code == "no_answer"


def send_blob(
    relay: httpx.Client | str,
    mailbox: bytes,
    pickup_hash: bytes,
    blob: bytes,
    group_id: int,
    proof: SemaphoreProof,
    *,
    timeout: float = 60.0,
) -> dict[str, Any]:
    """``POST /v1/blobs`` to a relay (docs/relay.md); returns its 201 answer (``id``,
    ``digest``, ``evidence_id``), else raises :class:`RelaySendError`."""
    import base64

    body = {
        "mailbox": mailbox.hex(),
        "pickup_hash": pickup_hash.hex(),
        "blob": base64.b64encode(blob).decode(),
        "group_id": group_id,
        "proof": proof.to_dict(),
    }
    http, url = (None, relay.rstrip("/") + "/v1/blobs") if isinstance(relay, str) else (relay, "/v1/blobs")
    try:
        data: dict[str, Any] = answer(request(http, "POST", url, json=body, timeout=timeout), (201,))
    except RegistryClientError as exc:
        raise RelaySendError(exc.status, exc.code, exc.message, retry_after=exc.retry_after) from None
    return data


def build_admission_proof(
    admission_identity: Identity,
    merkle_proof_or_group: MerkleProof | LeanIMT,
    group_id: int,
    round_: int,
    commitment: int,
    *,
    registry: RegistryRef,
) -> SemaphoreProof:
    """An admission proof (docs/admission.md): membership in the admission group, over
    ``message = commitment`` and the LZA2 admission scope (``zk/admission_scope.py``) of
    group ``group_id`` of ``registry`` and ``round_``."""
    value = _check_commitment(commitment)
    scope = AdmissionScope.of(registry, group_id, round_).encode()
    return generate_proof(admission_identity, merkle_proof_or_group, value, scope)


def acknowledge(record_hash: bytes, identity: Identity) -> EddsaAcknowledgement:
    """A named acknowledgement of an evidence record (EdDSA-Poseidon with the ZK-ID key)."""
    from zk import eddsa_poseidon
    from zk.evidence.ack import sign_acknowledgement

    key: eddsa_poseidon.PrivateKey = identity.private_key
    return sign_acknowledgement(record_hash, key)


def acknowledge_anonymously(
    identity: Identity, group: LeanIMT | MerkleProof, record_hash: bytes, blob_digest: bytes
) -> SemaphoreAcknowledgement:
    """An anonymous acknowledgement: a Semaphore proof as some member of ``group``."""
    from zk.evidence.ack import prove_acknowledgement

    return prove_acknowledgement(identity, group, record_hash, blob_digest)

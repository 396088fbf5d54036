"""Sending a blob through a relay and picking it up: the client side of docs/relay.md.

- :func:`send`: the whole send of ``zkid send``: the group's parameters from the
  registry (``GET /v1/groups/{id}``), the sender's Merkle proof (by default from the
  group's whole member list, ``GET /v1/groups/{id}/members`` pages, so the registry is not
  told which member is about to send; ``ask_proof=True`` asks
  ``GET /v1/groups/{id}/proofs/{commitment}`` instead), a slot of the epoch never used by
  this client (:class:`~registry.client.api.SendSlots`), the send authorization
  (docs/authorization.md: ``message = SHA-256(blob)``, the relay-epoch scope) and
  ``POST /v1/blobs`` to the relay.
- :func:`pickup` and :func:`acknowledge_blob`: ``GET /v1/mailboxes/{tag}`` and
  ``POST /v1/blobs/{id}/ack`` with the pickup capability; every blob's digest is checked.
- Pickup secrets and mailbox tags: :func:`load_or_create_pickup_secret` (a new secret is
  written to a file readable by its owner only, never overwriting one),
  :func:`read_pickup_secret`, :func:`parse_mailbox`, :func:`pickup_hash`.

Heavy modules (the prover, web3 through ``registry.client.api``) are imported inside the
functions that need them.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from registry.client._http import RegistryClientError, answer, request

if TYPE_CHECKING:
    from registry.client.api import RegistryClient, SendSlots
    from zk.relay_scope import RegistryRef
    from zk.identity import Identity
    from zk.tree import MerkleProof

#: Bytes of a fresh pickup secret (the relay takes 16 to 64).
PICKUP_SECRET_BYTES = 32
CAPABILITY_HEADER = "X-Pickup-Capability"

_HEX32 = re.compile(r"(0x)?[0-9a-fA-F]{64}")
_HEX_SECRET = re.compile(r"(0x)?(?:[0-9a-fA-F]{2}){16,64}")
_BLOB_ID = re.compile(r"[0-9a-f]{32}")


class RelayError(RegistryClientError):
    """A relay refused a pickup or an acknowledgement (``status``, ``code`` from its error
    JSON), or could not be asked (``status == 0``: ``unreachable``, ``no_answer``), or
    answered something unusable (``code`` ``bad_response``, ``digest_mismatch``)."""


# ---------------------------------------------------------------------------- secrets and tags


def parse_mailbox(text: str) -> bytes:
    """A mailbox tag: 32 bytes in hex (64 digits, ``0x`` allowed). Raises ``ValueError``."""
    value = text.strip()
    if not _HEX32.fullmatch(value):
        raise ValueError("a mailbox tag is 32 bytes in hex (64 hex digits)")
    return bytes.fromhex(value.removeprefix("0x"))


def pickup_hash(secret: bytes) -> bytes:
    """``SHA-256(secret)``: what the first send to a mailbox fixes (docs/relay.md)."""
    return hashlib.sha256(secret).digest()


def _parse_secret(text: str, path: Path) -> bytes:
    value = text.strip()
    if not _HEX_SECRET.fullmatch(value):
        raise ValueError(f"{path} does not hold a pickup secret (16 to 64 bytes in hex)")
    return bytes.fromhex(value.removeprefix("0x"))


def read_pickup_secret(path: Path) -> bytes:
    """The secret in ``path`` (hex text). Raises ``OSError`` or ``ValueError``."""
    data = path.read_bytes()
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise ValueError(f"{path} does not hold a pickup secret (16 to 64 bytes in hex)") from None
    return _parse_secret(text, path)


def load_or_create_pickup_secret(path: Path) -> tuple[bytes, bool]:
    """The pickup secret in ``path``, or a fresh random one written there first.

    Returns ``(secret, created)``. A new file is created with ``O_CREAT | O_EXCL`` and mode
    0600 in one step (never overwriting a file, refusing a symlink), flushed to disk
    before the secret is used: a blob is never sent to a mailbox whose secret was lost.
    Raises ``OSError`` or ``ValueError`` (an existing file without a secret)."""
    if path.is_symlink() or path.exists():
        return read_pickup_secret(path), False
    secret = secrets.token_bytes(PICKUP_SECRET_BYTES)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except FileExistsError:  # created in between by someone else: use theirs
        return read_pickup_secret(path), False
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(secret.hex() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        _fsync_dir(path.parent)
    except OSError:
        path.unlink(missing_ok=True)
        raise
    return secret, True


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------- sending


@dataclass(frozen=True)
class SendResult:
    """A blob the relay accepted (its 201 answer) and the slot the authorization used."""

    blob_id: str
    digest: str
    evidence_id: str | None
    group_id: int
    epoch: int
    slot: int
    #: proofs made: more than 1 when slots this client did not know were used were skipped
    attempts: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "accepted": True,
            "id": self.blob_id,
            "digest": self.digest,
            "evidence_id": self.evidence_id,
            "group_id": self.group_id,
            "epoch": self.epoch,
            "slot": self.slot,
            "attempts": self.attempts,
        }


def sender_merkle_proof(registry: RegistryClient, identity: Identity, group_id: int, *, ask_proof: bool = False) -> MerkleProof:
    """The sender's Merkle proof in ``group_id``: built here from the whole member list
    (the registry learns nothing about who is sending), or, with ``ask_proof``, asked of
    the registry (one request, but it names the sender's commitment to the registry just
    before a send). Raises :class:`~registry.client.api.RegistryClientError` (``not_member``
    when the identity is not, or not yet, in the group's indexed tree)."""
    if ask_proof:
        return registry.merkle_proof(group_id, identity.commitment)
    tree = registry.members(group_id)
    index = tree.index_of(identity.commitment)
    if index is None:
        raise RegistryClientError(404, "not_member", f"the identity is not a member of group {group_id} (yet: a registration is usable once anchored)")
    return tree.generate_proof(index)


def _check_home(home: RegistryRef, expected: RegistryRef | None) -> None:
    """``wrong_registry`` unless the registry's deployment is the ``expected`` one (if any)."""
    if expected is not None and home != expected:
        raise RegistryClientError(
            200,
            "wrong_registry",
            f"the registry answers for chain {home.chain_id}, contract {home.contract}, not the expected "
            f"chain {expected.chain_id}, contract {expected.contract}",
        )


def send(
    registry: RegistryClient,
    relay: httpx.Client | str,
    identity: Identity,
    blob: bytes,
    mailbox: bytes,
    pickup_secret: bytes,
    slots: SendSlots,
    *,
    group_id: int = 0,
    slot: int | None = None,
    ask_proof: bool = False,
    attempts: int = 3,
    clock: Callable[[], float] = time.time,
    timeout: float = 60.0,
    home_registry: RegistryRef | None = None,
) -> SendResult:
    """Send ``blob`` to ``mailbox`` through ``relay``, authorized as an anonymous member of
    ``group_id`` (docs/authorization.md).

    ``slot`` None: the lowest slot of the current epoch that ``slots`` has not handed out
    (recorded before the proof is made, so a failed send wastes a slot and never reuses
    one); when the relay answers ``nullifier_reused`` (the slot was used by another copy
    of this identity, or a lost slots file), the next slot is tried, up to ``attempts``
    proofs in all. An explicit ``slot`` is recorded in ``slots`` and tried once.

    Raises :class:`~registry.client.api.RegistryClientError` (the registry refused or
    could not be reached), :class:`~registry.client.api.RelaySendError` (the relay
    refused: its ``code`` is the reason), :class:`~registry.client.api.SlotsExhaustedError`,
    ``ValueError`` for unusable input (a slot beyond the group's message limit).

    ``home_registry``: the deployment ``(chain id, contract)`` the sender's registry must be
    (a trust list's entry, docs/regions.md); if the registry answering at ``registry``
    names another one, :class:`~registry.client.api.RegistryClientError` ``wrong_registry``
    is raised before any proof is made (the proof would bind another registry's tag)."""
    from registry.client.api import RelaySendError, send_blob
    from zk.proof import generate_proof
    from zk.relay_scope import RelayScope, blob_message, digest_blob, epoch_at

    if len(mailbox) != 32:
        raise ValueError("a mailbox tag is 32 bytes")
    if not 16 <= len(pickup_secret) <= 64:
        raise ValueError("a pickup secret is 16 to 64 bytes")
    home, epoch_length, limit = registry.send_parameters(group_id)
    _check_home(home, home_registry)
    if slot is not None and not 0 <= slot < limit:
        raise ValueError(f"slot must be in [0, {limit}) (the group's message limit is {limit})")
    merkle = sender_merkle_proof(registry, identity, group_id, ask_proof=ask_proof)
    digest = digest_blob(blob)
    hashed = pickup_hash(pickup_secret)
    made = 0
    while True:
        epoch = epoch_at(clock(), epoch_length)
        if slot is None:
            chosen = slots.claim(group_id, epoch, limit)
        else:
            chosen = slot
            slots.take(group_id, epoch, slot)
        scope = RelayScope.of(home, group_id, epoch, chosen).encode()
        proof = generate_proof(identity, merkle, blob_message(digest), scope)
        made += 1
        try:
            answer = send_blob(relay, mailbox, hashed, blob, group_id, proof, timeout=timeout)
        except RelaySendError as exc:
            if exc.code == "nullifier_reused" and slot is None and made < attempts:
                continue  # a slot used elsewhere: nothing was stored, take the next one
            raise
        return SendResult(
            blob_id=str(answer.get("id")),
            digest=str(answer.get("digest", digest.hex())),
            evidence_id=None if answer.get("evidence_id") is None else str(answer["evidence_id"]),
            group_id=group_id,
            epoch=epoch,
            slot=chosen,
            attempts=made,
        )


# ---------------------------------------------------------------------------- pickup


@dataclass(frozen=True)
class PickedBlob:
    """A blob of a mailbox, its digest checked."""

    id: str
    blob: bytes
    digest: bytes
    received_at: int


def _relay_request(relay: httpx.Client | str, method: str, path: str, secret: bytes | None, timeout: float) -> Any:
    """One request to a relay (with the pickup capability ``secret``, if given) through the
    SDK's HTTP layer (registry/client/_http.py)."""
    headers = {} if secret is None else {CAPABILITY_HEADER: secret.hex()}
    try:
        if isinstance(relay, str):
            response = request(None, method, relay.rstrip("/") + path, headers=headers, timeout=timeout)
        else:
            response = request(relay, method, path, headers=headers)
        data = answer(response, (200,))
    except RegistryClientError as exc:
        raise RelayError(exc.status, exc.code, exc.message, retry_after=exc.retry_after) from None
    if not isinstance(data, dict):
        raise RelayError(200, "bad_response", "the relay answered with something else than a JSON object")
    return data


def pickup(relay: httpx.Client | str, mailbox: bytes, pickup_secret: bytes, *, timeout: float = 60.0) -> list[PickedBlob]:
    """The blobs waiting in ``mailbox`` (``GET /v1/mailboxes/{tag}``); they stay on the
    relay until acknowledged. Every blob must hash to its digest and carry a well-formed
    id, else :class:`RelayError` (``bad_response`` / ``digest_mismatch``)."""
    if len(mailbox) != 32:
        raise ValueError("a mailbox tag is 32 bytes")
    data = _relay_request(relay, "GET", f"/v1/mailboxes/{mailbox.hex()}", pickup_secret, timeout)
    out: list[PickedBlob] = []
    try:
        items = list(data["blobs"])
        for item in items:
            blob_id = str(item["id"])
            if not _BLOB_ID.fullmatch(blob_id):
                raise ValueError("blob id")
            blob = base64.b64decode(str(item["blob"]), validate=True)
            digest = bytes.fromhex(str(item["digest"]))
            out.append(PickedBlob(blob_id, blob, digest, int(item["received_at"])))
    except (KeyError, TypeError, ValueError):
        raise RelayError(200, "bad_response", "the relay's mailbox answer is unusable") from None
    for picked in out:
        if hashlib.sha256(picked.blob).digest() != picked.digest:
            raise RelayError(200, "digest_mismatch", f"blob {picked.id} does not hash to its digest")
    return out


def relay_health(relay: httpx.Client | str, *, timeout: float = 10.0) -> dict[str, Any]:
    """A relay's ``GET /v1/health`` (``region``, ``auth_mode``, ``issuer``,
    ``evidence_pending``...; docs/relay.md), else :class:`RelayError`."""
    return dict(_relay_request(relay, "GET", "/v1/health", None, timeout))


def relay_registries(relay: httpx.Client | str, *, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The registries a relay trusts (``GET /v1/registries``; empty for a single-registry
    relay: docs/relay.md), else :class:`RelayError`."""
    listed = _relay_request(relay, "GET", "/v1/registries", None, timeout).get("registries")
    if not isinstance(listed, list) or not all(isinstance(entry, dict) for entry in listed):
        raise RelayError(200, "bad_response", "the relay's registries answer is unusable")
    return listed


def acknowledge_blob(relay: httpx.Client | str, blob_id: str, pickup_secret: bytes, *, timeout: float = 60.0) -> None:
    """``POST /v1/blobs/{id}/ack``: the blob is delivered; the relay erases it."""
    if not _BLOB_ID.fullmatch(blob_id):
        raise ValueError("a blob id is 32 lowercase hex digits")
    data = _relay_request(relay, "POST", f"/v1/blobs/{blob_id}/ack", pickup_secret, timeout)
    if data.get("deleted") is not True:
        raise RelayError(200, "bad_response", "the relay did not confirm the deletion")


def save_blob(directory: Path, picked: PickedBlob) -> Path:
    """Write ``picked`` to ``directory/<id>.blob`` durably (a temporary file flushed, renamed,
    the directory flushed), so it is on disk before it is acknowledged. A file already
    there with the same bytes is kept; with other bytes, ``FileExistsError``."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{picked.id}.blob"
    if target.exists() or target.is_symlink():
        if not target.is_symlink() and target.is_file() and target.read_bytes() == picked.blob:
            return target
        raise FileExistsError(f"{target} exists with other content")
    tmp = directory / f".{picked.id}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(picked.blob)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(directory)
    return target

"""Fast Groth16 backend: ``groth16py`` 0.2.0 (arkworks, native) on the pinned ceremony keys.

groth16py has traps, each closed here:

- a Rust panic surfaces as ``pyo3_runtime.PanicException``, a ``BaseException``: it is
  recognised by type name and module (never a bare ``except BaseException``, which would
  swallow ``KeyboardInterrupt``) and turned into ``False`` / :class:`Groth16Error`;
- ``import_zkey`` does not validate curve points: a proving key is only imported from
  bytes whose SHA-256 matched the pin (:mod:`zk.artifacts`), via an anonymous in-memory
  file, so what is imported is what was hashed; the verifying key comes from the
  ceremony JSON through ``VerifyingKey.from_snarkjs``, which validates its points;
- a witness that violates a constraint still yields a proof (that does not verify), and
  a ``.wtns`` of the wrong shape can panic or even abort the process (a bogus field
  size makes it allocate tens of GB): the ``.wtns`` header is checked against the zkey
  before proving, and every proof is verified before being returned;
- ``verify_snarkjs`` accepts non-canonical decimals (``" 42"``, ``"042"``): never used;
  proofs are parsed by :mod:`zk.groth16.encoding` and passed to ``Verifier.verify``;
- ``Verifier.verify`` raises on malformed input: turned into ``False``.

``Verifier.verify`` checks that B is in the G2 subgroup and releases the GIL, so
:meth:`FastBackend.verify_many` runs it on a thread pool.
"""

from __future__ import annotations

import contextlib
import os
import struct
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import groth16py

from zk.artifacts import check_depth, load_artifacts
from zk.field import Q, R
from zk.groth16.backend import Groth16Error, ProcessDefault
from zk.groth16.encoding import Proof, ProofEncodingError, public_signals_valid

T = TypeVar("T")

# What groth16py raises for malformed input (on top of panics).
_GROTH16PY_ERRORS: tuple[type[BaseException], ...] = (
    groth16py.EncodingError,
    groth16py.VerificationError,
    groth16py.SetupError,
    groth16py.WitnessError,
    TypeError,
    OverflowError,
    ValueError,
)


def is_panic(exc: BaseException) -> bool:
    """Whether ``exc`` is a Rust panic surfaced by pyo3 (``pyo3_runtime.PanicException``)."""
    kind = type(exc)
    return kind.__name__ == "PanicException" and kind.__module__ == "pyo3_runtime"


def guarded(call: Callable[[], T], what: str) -> T:
    """Run a groth16py call; its errors and panics become :class:`Groth16Error`.

    Any other ``BaseException`` (``KeyboardInterrupt``, ``SystemExit``) propagates.
    """
    try:
        return call()
    except _GROTH16PY_ERRORS as exc:
        raise Groth16Error(f"{what} failed: {exc}") from None
    except BaseException as exc:
        if not is_panic(exc):
            raise
        raise Groth16Error(f"{what} failed: groth16py panicked: {exc}") from None


@contextlib.contextmanager
def bytes_as_path(data: bytes, name: str) -> Iterator[str]:
    """A file path holding ``data``: an anonymous memfd where available, else a temp file."""
    memfd_create = getattr(os, "memfd_create", None)
    if memfd_create is not None and os.path.isdir("/proc/self/fd"):
        fd = memfd_create(name, getattr(os, "MFD_CLOEXEC", 0))
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    with tempfile.NamedTemporaryFile(prefix=name, suffix=".bin") as handle:
        handle.write(data)
        handle.flush()
        yield handle.name


def zkey_shape(zkey: bytes) -> tuple[int, int]:
    """``(nVars, nPublic)`` from the Groth16 header of a snarkjs ``.zkey`` over BN254.

    Layout (snarkjs ``zkey_utils.js``): ``zkey`` magic, version, section count, then
    sections (id u32, size u64); section 1 holds the protocol (1 = Groth16), section 2
    ``n8q, q, n8r, r, nVars, nPublic, domainSize, ...``.
    """
    if zkey[:4] != b"zkey" or len(zkey) < 12:
        raise Groth16Error("not a .zkey file")
    (count,) = struct.unpack_from("<I", zkey, 8)
    sections: dict[int, tuple[int, int]] = {}
    offset = 12
    for _ in range(count):
        if offset + 12 > len(zkey):
            raise Groth16Error("truncated .zkey")
        sid, size = struct.unpack_from("<IQ", zkey, offset)
        sections.setdefault(sid, (offset + 12, size))
        offset += 12 + size
    try:
        start, _ = sections[1]
        (protocol,) = struct.unpack_from("<I", zkey, start)
        pos, _ = sections[2]
        fields = []
        for _ in range(2):
            (n8,) = struct.unpack_from("<I", zkey, pos)
            fields.append((n8, int.from_bytes(zkey[pos + 4 : pos + 4 + n8], "little")))
            pos += 4 + n8
        n_vars, n_public = struct.unpack_from("<II", zkey, pos)
    except (KeyError, struct.error):
        raise Groth16Error("malformed .zkey header") from None
    if protocol != 1 or fields != [(32, Q), (32, R)]:
        raise Groth16Error(".zkey is not a Groth16 key over BN254")
    return n_vars, n_public


def check_wtns(wtns: bytes, n_vars: int) -> tuple[int, ...]:
    """Check a ``.wtns`` for BN254 with exactly ``n_vars`` values; return the values.

    The exact layout is required (as :func:`zk.witness.wtns_bytes` writes it) so that
    nothing groth16py could misread reaches it.
    """
    head = b"wtns" + struct.pack("<II", 2, 2) + struct.pack("<IQI", 1, 40, 32) + R.to_bytes(32, "little")
    tail = struct.pack("<IIQ", n_vars, 2, 32 * n_vars)
    if not isinstance(wtns, (bytes, bytearray)) or wtns[:60] != head or wtns[60:76] != tail:
        raise Groth16Error(f"not a BN254 .wtns with {n_vars} values")
    if len(wtns) != 76 + 32 * n_vars:
        raise Groth16Error(".wtns length does not match its header")
    values = tuple(int.from_bytes(wtns[i : i + 32], "little") for i in range(76, len(wtns), 32))
    if values[0] != 1 or any(v >= R for v in values):
        raise Groth16Error(".wtns values are not canonical field elements")
    return values


class FastBackend:
    """groth16py on the pinned Semaphore ceremony keys; keys are loaded once per depth."""

    name = "fast"

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self._directory = directory
        self._verifiers: dict[int, tuple[groth16py.Verifier, int]] = {}
        self._provers: dict[int, tuple[groth16py.ProvingKey, int]] = {}
        self._locks = {depth: threading.Lock() for depth in range(1, 33)}

    def verifier(self, depth: int) -> tuple[groth16py.Verifier, int]:
        """The prepared ``groth16py.Verifier`` of a depth and its number of public inputs."""
        check_depth(depth)
        found = self._verifiers.get(depth)
        if found is None:
            with self._locks[depth]:
                found = self._verifiers.get(depth)
                if found is None:
                    text = load_artifacts(depth, self._directory).read("vkey").decode("utf-8")
                    vk = guarded(lambda: groth16py.VerifyingKey.from_snarkjs(text), "loading the verifying key")
                    found = (groth16py.Verifier(vk), vk.n_public)
                    self._verifiers[depth] = found
        return found

    def proving_key(self, depth: int) -> tuple[groth16py.ProvingKey, int]:
        """The ``groth16py.ProvingKey`` of a depth (from the hash-checked zkey) and its nVars."""
        _, expected_public = self.verifier(depth)  # before the lock: it takes the same one
        found = self._provers.get(depth)
        if found is None:
            with self._locks[depth]:
                found = self._provers.get(depth)
                if found is None:
                    data = load_artifacts(depth, self._directory).read("zkey")
                    n_vars, n_public = zkey_shape(data)
                    if n_public != expected_public:
                        raise Groth16Error("the zkey and the verification key disagree on nPublic")
                    with bytes_as_path(data, f"semaphore-{depth}.zkey") as path:
                        pk, _ = guarded(lambda: groth16py.import_zkey(path), "importing the proving key")
                    found = (pk, n_vars)
                    self._provers[depth] = found
        return found

    def verify(self, depth: int, proof: Proof, public_signals: Sequence[int]) -> bool:
        verifier, n_public = self.verifier(depth)
        if not isinstance(proof, Proof) or not public_signals_valid(public_signals, n_public):
            return False
        blob = proof.to_bytes()
        inputs = list(public_signals)
        try:
            return bool(guarded(lambda: verifier.verify(blob, inputs), "verification"))
        except Groth16Error:
            return False

    def verify_many(
        self, items: Iterable[tuple[int, Proof, Sequence[int]]], max_workers: int | None = None
    ) -> list[bool]:
        """Verify ``(depth, proof, public_signals)`` items, in parallel threads (groth16py
        releases the GIL while verifying). Results are in input order."""
        batch = list(items)
        for depth, _, _ in batch:
            self.verifier(depth)  # load keys (and raise for bad depths) before fanning out
        workers = max_workers or min(len(batch), os.cpu_count() or 1)
        if workers <= 1 or len(batch) < 2:
            return [self.verify(*item) for item in batch]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(lambda item: self.verify(*item), batch))

    def prove(self, depth: int, wtns: bytes) -> tuple[Proof, tuple[int, ...]]:
        """Prove a ``.wtns`` witness; return the proof and its public signals.

        Raises :class:`Groth16Error` when the witness has the wrong shape or when the proof
        does not verify (the witness does not satisfy the circuit).
        """
        pk, n_vars = self.proving_key(depth)
        _, n_public = self.verifier(depth)
        values = check_wtns(wtns, n_vars)
        public = values[1 : 1 + n_public]
        with bytes_as_path(bytes(wtns), "witness.wtns") as path:
            blob = guarded(lambda: groth16py.prove_wtns(pk, path), "proving")
        try:
            proof = Proof.from_bytes(blob, check_subgroup=False)
        except ProofEncodingError as exc:
            raise Groth16Error(f"groth16py returned a malformed proof: {exc}") from None
        if not self.verify(depth, proof, public):
            raise Groth16Error("the proof does not verify: the witness does not satisfy the circuit")
        return proof, public


_default = ProcessDefault(FastBackend)


def default_backend() -> FastBackend:
    """The process-wide fast backend on the default artifacts directory."""
    return _default.get()


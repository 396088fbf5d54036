"""In-process circom witness generation: the official ``semaphore-D.wasm`` under wasmtime.

Implements the circom 2 witness-calculator ABI as driven by ``circom_runtime``
``js/witness_calculator.js`` (``WitnessCalculatorCircom2``, used by snarkjs):

- the module exports ``getVersion`` (2), ``getFieldNumLen32`` (limbs of 32 bits per field
  element), ``getRawPrime``, ``init(sanityCheck)``, ``getInputSignalSize(hMSB, hLSB)``,
  ``setInputSignal(hMSB, hLSB, i)``, ``getInputSize``, ``getWitnessSize``,
  ``getWitness(i)``, ``getMessageChar`` and a "shared RW memory" of
  ``getFieldNumLen32()`` little-endian 32-bit limbs at ``getSharedRWMemoryStart()``
  through which field elements go in and out;
- input signals are addressed by the 64-bit FNV-1a hash of their name (split in two
  32-bit halves); the last input triggers the computation;
- it imports ``runtime.exceptionHandler(code)`` (called on a failed ``assert`` and other
  errors; we raise :class:`WitnessError` there, which aborts the wasm call),
  ``printErrorMessage``, ``writeBufferMessage`` and ``showSharedRWMemory``.

The output follows snarkjs' ``.wtns`` binary format (iden3 binfileutils): magic
``wtns``, version 2, two sections: (1) field size in bytes, prime, witness count;
(2) the witness values, little-endian.

Unlike ``circom_runtime`` (which reduces inputs modulo p), inputs outside the field are
rejected. Reading the witness value by value from Python costs one wasm call per value;
instead a tiny helper module, linked to the circuit's memory and ``getWitness``, copies
all values into fresh pages in one call.
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import wasmtime

from zk.artifacts import artifacts_dir, check_depth, load_artifacts
from zk.field import R, check_scalar

InputValue = Union[int, Sequence["InputValue"]]

_FIELD_BYTES = 32
_PAGE = 65536
#: Tries at instantiating the witness generator (a transient refusal of its memory by the OS).
INSTANTIATE_ATTEMPTS = 3

# Codes passed to runtime.exceptionHandler (circom_runtime witness_calculator.js).
_ERRORS = {
    1: "signal not found",
    2: "too many signals set",
    3: "signal already set",
    4: "assert failed",
    5: "not enough memory",
    6: "input signal array access exceeds the size",
}

# Copies getWitness(i) for every i from the shared RW memory to consecutive slots at
# `dst`: one call from Python instead of one per witness value.
_DUMP_WAT = """
(module
  (import "circuit" "memory" (memory 0))
  (import "circuit" "getWitness" (func $get (param i32)))
  (func (export "dump") (param $n i32) (param $src i32) (param $dst i32)
    (local $i i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (call $get (local.get $i))
        (memory.copy (local.get $dst) (local.get $src) (i32.const 32))
        (local.set $dst (i32.add (local.get $dst) (i32.const 32)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))))
"""

_REQUIRED_EXPORTS = (
    "memory",
    "getVersion",
    "getFieldNumLen32",
    "getRawPrime",
    "getSharedRWMemoryStart",
    "init",
    "getInputSignalSize",
    "setInputSignal",
    "getInputSize",
    "getWitnessSize",
    "getWitness",
    "getMessageChar",
)


class WitnessError(ValueError):
    """The inputs do not satisfy the circuit (failed assertion, unknown or missing input)."""


def fnv1a_64(name: str) -> tuple[int, int]:
    """FNV-1a 64-bit hash of a signal name, as (high 32 bits, low 32 bits) (circom_runtime ``fnvHash``)."""
    h = 0xCBF29CE484222325
    for byte in name.encode("ascii"):
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h >> 32, h & 0xFFFFFFFF


def _flatten(value: InputValue, name: str) -> Iterator[int]:
    if isinstance(value, int):
        yield check_scalar(value, name)
    elif isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        for item in value:
            yield from _flatten(item, name)
    else:
        raise WitnessError(f"input {name} must be an integer or a list of integers")


def wtns_bytes(values: bytes, count: int) -> bytes:
    """Wrap ``count`` little-endian 32-byte field elements in the snarkjs ``.wtns`` format."""
    if len(values) != count * _FIELD_BYTES:
        raise ValueError("witness buffer size does not match the count")
    header = b"wtns" + struct.pack("<II", 2, 2)
    section1 = struct.pack("<IQI", 1, 4 + _FIELD_BYTES + 4, _FIELD_BYTES)
    section1 += R.to_bytes(_FIELD_BYTES, "little") + struct.pack("<I", count)
    section2 = struct.pack("<IQ", 2, len(values))
    return header + section1 + section2 + values


def parse_wtns(data: bytes) -> list[int]:
    """Parse a ``.wtns`` file of the BN254 scalar field into its values (strict layout)."""
    expected_head = b"wtns" + struct.pack("<II", 2, 2)
    if len(data) < 76 or data[:12] != expected_head:
        raise ValueError("not a version-2 .wtns file")
    sid, slen, n8 = struct.unpack_from("<IQI", data, 12)
    if (sid, slen, n8) != (1, 40, _FIELD_BYTES) or data[28:60] != R.to_bytes(32, "little"):
        raise ValueError("unexpected .wtns header (not BN254 scalar field)")
    (count,) = struct.unpack_from("<I", data, 60)
    sid, slen = struct.unpack_from("<IQ", data, 64)
    body = data[76:]
    if sid != 2 or slen != count * _FIELD_BYTES or len(body) != slen:
        raise ValueError("malformed .wtns witness section")
    values = [int.from_bytes(body[i : i + 32], "little") for i in range(0, len(body), 32)]
    if any(v >= R for v in values):
        raise ValueError(".wtns value outside the field")
    return values


def _engine() -> wasmtime.Engine:
    """A wasmtime engine with wasmtime's own compilation cache (``~/.cache/wasmtime``,
    keyed by the module's bytes and the compiler's settings): compiling
    ``semaphore-20.wasm`` takes over a second, loading it from the cache milliseconds, so
    a one-shot ``zkid proof generate`` does not pay the compilation each time. Only the
    pinned, hash-checked wasm is ever compiled (:func:`zk.artifacts.load_artifacts`).
    ``ZKID_WASM_CACHE=0`` turns the cache off; an unusable cache directory means no cache.
    """
    config = wasmtime.Config()
    if os.environ.get("ZKID_WASM_CACHE", "1") != "0":
        try:
            config.cache = True
        except wasmtime.WasmtimeError:
            pass
    return wasmtime.Engine(config)


class WitnessCalculator:
    """A compiled circom 2 witness generator for the BN254 scalar field.

    Thread-safe: the compiled module is shared; each calculation gets its own store.
    """

    _engine = _engine()
    _dump_module = wasmtime.Module(_engine, _DUMP_WAT)

    def __init__(self, wasm: bytes) -> None:
        try:
            self._module = wasmtime.Module(self._engine, wasm)
        except wasmtime.WasmtimeError as exc:
            raise WitnessError(f"invalid witness generator wasm: {exc}") from None
        names = {export.name for export in self._module.exports}
        missing = [name for name in _REQUIRED_EXPORTS if name not in names]
        if missing:
            raise WitnessError(f"not a circom 2 witness generator (missing {', '.join(missing)})")
        store, exports = self._instantiate()
        if exports["getVersion"](store) != 2:
            raise WitnessError("unsupported circom witness generator version")
        if exports["getFieldNumLen32"](store) * 4 != _FIELD_BYTES:
            raise WitnessError("witness generator field size is not 256 bits")
        exports["getRawPrime"](store)
        shared = exports["getSharedRWMemoryStart"](store)
        prime = int.from_bytes(exports["memory"].read(store, shared, shared + _FIELD_BYTES), "little")
        if prime != R:
            raise WitnessError("witness generator is not over the BN254 scalar field")
        self.witness_size: int = exports["getWitnessSize"](store)
        self.input_size: int = exports["getInputSize"](store)

    def _instantiate(self) -> tuple[wasmtime.Store, dict[str, Any]]:
        store = wasmtime.Store(self._engine)
        messages: list[str] = []
        exports: dict[str, Any] = {}

        def read_message() -> str:
            chars: list[str] = []
            get_char = exports["getMessageChar"]
            while (c := get_char(store)) != 0 and len(chars) < 4096:
                chars.append(chr(c & 0xFF))
            return "".join(chars)

        def exception_handler(code: int) -> None:
            detail = "; ".join(m.strip() for m in messages if m.strip())
            reason = _ERRORS.get(code, f"error code {code}")
            raise WitnessError(f"witness generation failed: {reason}" + (f" ({detail})" if detail else ""))

        def print_error_message() -> None:
            messages.append(read_message())

        def write_buffer_message() -> None:
            read_message()  # circuit log() output: drained and dropped

        def show_shared_rw_memory() -> None:
            pass

        i32 = wasmtime.ValType.i32()
        imports = {
            "exceptionHandler": wasmtime.Func(store, wasmtime.FuncType([i32], []), exception_handler),
            "printErrorMessage": wasmtime.Func(store, wasmtime.FuncType([], []), print_error_message),
            "writeBufferMessage": wasmtime.Func(store, wasmtime.FuncType([], []), write_buffer_message),
            "showSharedRWMemory": wasmtime.Func(store, wasmtime.FuncType([], []), show_shared_rw_memory),
        }
        ordered = []
        for imp in self._module.imports:
            if imp.module != "runtime" or imp.name not in imports:
                raise WitnessError(f"unexpected witness generator import {imp.module}.{imp.name}")
            ordered.append(imports[imp.name])
        instance = None
        for attempt in range(INSTANTIATE_ATTEMPTS):
            try:
                instance = wasmtime.Instance(store, self._module, ordered)
                break
            except wasmtime.WasmtimeError as exc:
                # The instance's memory is a memfd: the OS may refuse one for a moment (seen
                # once: "cannot add seals to the memfd"); nothing about the inputs.
                if attempt + 1 == INSTANTIATE_ATTEMPTS:
                    raise WitnessError(f"cannot instantiate witness generator (the system refused its memory; try again): {exc}") from None
        assert instance is not None
        exports.update({name: instance.exports(store)[name] for name in _REQUIRED_EXPORTS})
        return store, exports

    def _compute(self, inputs: Mapping[str, InputValue]) -> bytes:
        if not isinstance(inputs, Mapping):
            raise WitnessError("inputs must be a mapping of signal names to values")
        store, ex = self._instantiate()
        memory = ex["memory"]
        shared = ex["getSharedRWMemoryStart"](store)
        try:
            ex["init"](store, 1)
            count = 0
            for name, value in inputs.items():
                if not isinstance(name, str) or not name.isascii():
                    raise WitnessError(f"invalid input signal name {name!r}")
                values = list(_flatten(value, name))
                msb, lsb = fnv1a_64(name)
                size = ex["getInputSignalSize"](store, msb, lsb)
                if size <= 0:  # unknown names report 0 (or -1 in older circom versions)
                    raise WitnessError(f"{name} is not an input signal of the circuit")
                if len(values) != size:
                    raise WitnessError(f"input {name} needs {size} values, got {len(values)}")
                for i, v in enumerate(values):
                    memory.write(store, v.to_bytes(_FIELD_BYTES, "little"), shared)
                    ex["setInputSignal"](store, msb, lsb, i)
                count += size
            if count != self.input_size:
                raise WitnessError(f"only {count} of {self.input_size} input values were given")
            # Pages added after the computation are unused by the circuit: copy there.
            needed = self.witness_size * _FIELD_BYTES
            base = memory.data_len(store)
            memory.grow(store, (needed + _PAGE - 1) // _PAGE)
            dump = wasmtime.Instance(store, self._dump_module, [memory, ex["getWitness"]])
            copy_all: Any = dump.exports(store)["dump"]
            copy_all(store, self.witness_size, shared, base)
            values_bytes = bytes(memory.read(store, base, base + needed))
        except wasmtime.Trap as exc:
            raise WitnessError(f"witness generator trapped: {exc.message}") from None
        except wasmtime.WasmtimeError as exc:
            raise WitnessError(f"witness generator failed: {exc}") from None
        if values_bytes[:_FIELD_BYTES] != (1).to_bytes(_FIELD_BYTES, "little"):
            raise WitnessError("witness generator returned a witness not starting with 1")
        return values_bytes

    def calculate_wtns(self, inputs: Mapping[str, InputValue]) -> bytes:
        """Compute the witness and return it as a ``.wtns`` file (bytes)."""
        return wtns_bytes(self._compute(inputs), self.witness_size)

    def calculate(self, inputs: Mapping[str, InputValue]) -> list[int]:
        """Compute the witness and return its values (``w[0] == 1``, then outputs, inputs, ...)."""
        raw = self._compute(inputs)
        return [int.from_bytes(raw[i : i + _FIELD_BYTES], "little") for i in range(0, len(raw), _FIELD_BYTES)]


_calculators: dict[tuple[Path, int], WitnessCalculator] = {}
_lock = threading.Lock()


def semaphore_calculator(depth: int, directory: str | os.PathLike[str] | None = None) -> WitnessCalculator:
    """The witness generator of the pinned ``semaphore-<depth>.wasm``, compiled once per process."""
    check_depth(depth)
    key = (artifacts_dir(directory).resolve(), depth)
    with _lock:  # compiling takes ~0.4 s; one at a time keeps it to once per depth
        calc = _calculators.get(key)
        if calc is None:
            calc = WitnessCalculator(load_artifacts(depth, directory).read("wasm"))
            _calculators[key] = calc
        return calc

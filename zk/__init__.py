"""letro-zkid cryptography: Semaphore v4-compatible ZK identities, groups and proofs.

Pure computation: nothing in this package touches the network, and the only files it
reads are the pinned ceremony artifacts. Each module implements one concept and cites
the specification or reference implementation it follows.
"""

import sys as _sys
from collections.abc import Sequence as _Sequence
from importlib.machinery import ModuleSpec as _ModuleSpec
from types import ModuleType as _ModuleType

#: py_ecc raises the interpreter's recursion limit to this on import (py_ecc/__init__.py).
_PY_ECC_LIMIT = 100_000
#: CPython's default: deep enough for py_ecc's recursive field powers (~254 levels).
_DEFAULT_LIMIT = 1000


def _sane(limit: int) -> int:
    return limit if limit < _PY_ECC_LIMIT else _DEFAULT_LIMIT


class _PyEccRecursionLimitGuard:
    """Puts the recursion limit back after py_ecc's package module runs, whenever that is.

    With the limit at 100,000, C-level recursion (``json.loads`` of ``[[[[...``) overflows
    the C stack and the process dies of SIGSEGV instead of raising ``RecursionError``.
    py_ecc raises the limit in its ``__init__``, which runs once, on its first import (by
    ``zk.groth16.reference``, eth_account, ...). This meta path finder, first on
    ``sys.meta_path`` from the moment ``zk`` (and so ``registry``) is imported, answers for
    the name ``py_ecc`` only, once: it takes the spec the other finders give and wraps its
    loader's ``exec_module``. So py_ecc (whose import costs ~50 ms) is imported only by the
    code that uses it, and the limit stays sane for the life of the process.
    """

    def __init__(self) -> None:
        self.used = False

    def find_spec(
        self, fullname: str, path: _Sequence[str] | None = None, target: _ModuleType | None = None
    ) -> _ModuleSpec | None:
        if fullname != "py_ecc" or self.used:
            return None
        self.used = True
        for finder in [f for f in _sys.meta_path if f is not self]:
            find = getattr(finder, "find_spec", None)
            spec: _ModuleSpec | None = find(fullname, path, target) if find is not None else None
            if spec is not None:
                break
        else:
            return None
        run = getattr(spec.loader, "exec_module", None)
        if run is None:  # pragma: no cover - every path-based loader has it
            return spec

        def exec_module(module: _ModuleType) -> None:
            before = _sys.getrecursionlimit()
            try:
                run(module)
            finally:
                _sys.setrecursionlimit(_sane(before))

        setattr(spec.loader, "exec_module", exec_module)  # noqa: B010 - an instance attribute
        return spec


if "py_ecc" in _sys.modules:  # imported before zk: put the limit back now
    _sys.setrecursionlimit(_sane(_sys.getrecursionlimit()))
elif not any(isinstance(f, _PyEccRecursionLimitGuard) for f in _sys.meta_path):
    _sys.meta_path.insert(0, _PyEccRecursionLimitGuard())

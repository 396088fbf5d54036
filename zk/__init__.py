"""letro-zkid cryptography: Semaphore v4-compatible ZK identities, groups and proofs.

Pure computation: nothing in this package touches the network, and the only files it
reads are the pinned ceremony artifacts. Each module implements one concept and cites
the specification or reference implementation it follows.
"""

import sys as _sys

#: py_ecc raises the interpreter's recursion limit to this on import (py_ecc/__init__.py).
_PY_ECC_LIMIT = 100_000
#: CPython's default: deep enough for py_ecc's recursive field powers (~254 levels).
_DEFAULT_LIMIT = 1000


def _import_py_ecc_keeping_the_recursion_limit() -> None:
    """Import py_ecc once, first, and put the recursion limit back.

    With the limit at 100,000, C-level recursion (``json.loads`` of ``[[[[...``) overflows
    the C stack and the process dies of SIGSEGV instead of raising ``RecursionError``.
    py_ecc raises the limit only on its first import, so doing it here, before any module
    of this package or of ``registry`` (which imports this package first) can import it,
    keeps the limit sane for the life of the process.
    """
    before = _sys.getrecursionlimit()
    try:
        import py_ecc  # noqa: F401
    except ImportError:  # pragma: no cover - a dependency; nothing to undo without it
        return
    _sys.setrecursionlimit(before if before < _PY_ECC_LIMIT else _DEFAULT_LIMIT)


_import_py_ecc_keeping_the_recursion_limit()

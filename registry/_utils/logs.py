"""What a log line may say about a failure: the exception's type, nothing else.

Privacy rule (docs/authorization.md "What is stored and logged"): no identity, commitment,
nullifier, proof, mailbox tag, blob, or their link to an IP address ever reaches a log. An
exception's message or traceback can quote any of them (a SQLite constraint names the row,
a web3 error the call data), so the registry, the relays and the anchorer log
:func:`exc_type` only, never ``log.exception``, ``exc_info`` or ``str(exc)``.
"""

from __future__ import annotations


def exc_type(exc: BaseException) -> str:
    """The name of ``exc``'s type: all a log line says about it."""
    return type(exc).__name__

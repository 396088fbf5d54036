"""Claiming nullifiers at the groups' home registry (``--nullifier-authority URL``).

A relay in local mode verifies each proof itself, then claims its nullifier at the home
registry's ``POST /v1/nullifiers/claim`` (docs/api.md "Nullifier claims"), signed with
the relay key (:mod:`registry.service.nullifier_claims`). The registry keeps one
nullifier store for ``POST /v1/authorize`` and every relay's claims, so a proof spent at
any relay, in either mode, is refused at every other one (docs/relay.md).

:class:`AuthorityNullifierStore` is the :class:`registry.service.authorization.NullifierStore`
the relay's :class:`Authorizer` claims in: first in the relay's own store (a second
send of the same proof at this relay is refused there, even though the registry
answers this relay's repeated claim ``claimed``), then at the registry. If the registry
cannot be asked, the local claim is released and :class:`NullifierAuthorityUnavailable`
is raised: the relay refuses the send (503, ``Retry-After``), never accepts it on its
own word. A claim is idempotent for its relay, so a request whose answer was lost is
simply sent again (:data:`ATTEMPTS` times) and a later resend of the proof succeeds.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable

import httpx

from registry.client._http import HttpSession, RegistryClientError, error_code, json_of, request
from registry.relay.deadline import deadline_client
from registry.relay.trust_list import public_url
from registry.service.authorization import SqlNullifierStore
from registry.service.nullifier_claims import sign_envelope
from zk.evidence.record import RecordSigner
from zk.relay_scope import RegistryRef

#: Requests per claim before the relay gives up (each with a fresh envelope).
ATTEMPTS = 3
#: ``Retry-After`` (seconds) the relay gives its client when the authority is away.
RETRY_AFTER = 5
#: Bytes of a registry's answer a relay reads (a claim's answer is a few dozen): a
#: hostile or broken registry sending more is cut off (no answer), not held in memory.
ANSWER_LIMIT = 64 * 1024


log = logging.getLogger(__name__)


class NullifierAuthorityUnavailable(RuntimeError):
    """The home registry could not be asked, or did not answer a claim usably."""

    def __init__(self, message: str, retry_after: int = RETRY_AFTER) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NullifierClaimRefused(RuntimeError):
    """The registry refused the claim itself: ``code`` is ``unknown_group``,
    ``group_not_served`` or ``wrong_epoch`` (its view differs from the relay's)."""

    def __init__(self, code: str) -> None:
        super().__init__(f"the nullifier authority answered {code}")
        self.code = code


class NullifierAuthorityClient(HttpSession):
    """Signed single claims against one registry (``deployment``: its chain id and contract)."""

    def __init__(
        self,
        url: str,
        key: bytes,
        deployment: RegistryRef,
        *,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
        client: httpx.Client | None = None,
    ) -> None:
        # Its own client obeys the relay's whole-request deadline (registry/relay/deadline.py).
        super().__init__(url, timeout, client if client is not None else deadline_client(url, timeout))
        self._owned = client is None
        self._signer = RecordSigner(key)
        self._deployment = deployment
        self._clock = clock

    @property
    def address(self) -> str:
        """The relay key's address (the registry must trust it: docs/relay.md)."""
        return self._signer.address

    def claim(self, group_id: int, nullifier: int, epoch: int) -> bool:
        """True if this relay holds the claim, False if another did; raises
        :class:`NullifierAuthorityUnavailable` or :class:`NullifierClaimRefused`."""
        claim = {"group_id": group_id, "nullifier": str(nullifier), "epoch": epoch}
        data = json.dumps({"claims": [claim]}, separators=(",", ":")).encode("ascii")
        failure = "no attempt"
        for _ in range(ATTEMPTS):
            envelope = sign_envelope(self._signer, self._deployment, data, int(self._clock()), secrets.token_hex(16))
            headers = {"Content-Type": "application/json", **envelope.headers()}
            try:
                response = request(
                    self._http, "POST", "/v1/nullifiers/claim", content=data, headers=headers, max_bytes=ANSWER_LIMIT
                )
            except RegistryClientError as exc:
                failure = exc.code  # unreachable / no_answer: the claim is idempotent, ask again
                continue
            if response.status_code >= 500 or response.status_code == 429:
                raise NullifierAuthorityUnavailable(f"the nullifier authority answered {response.status_code}")
            if response.status_code != 200:
                if error_code(response) == "unknown_relay":
                    # Configuration, not an outage: say what to do (the key's address is public).
                    log.warning(
                        "the home registry at %s does not trust this relay's key %s: add it there"
                        " (zkid up --relay-key ADDRESS, ZKID_RELAY_KEYS, or PUT /v1/evidence/relays/ADDRESS)",
                        public_url(self.url),  # never a proxy's credentials in the log
                        self.address,
                    )
                raise NullifierAuthorityUnavailable(f"the nullifier authority refused this relay ({response.status_code})")
            return self._result(response)
        raise NullifierAuthorityUnavailable(f"the nullifier authority cannot be reached ({failure})")

    @staticmethod
    def _result(response: httpx.Response) -> bool:
        try:
            data = json_of(response)
        except ValueError:
            raise NullifierAuthorityUnavailable("the nullifier authority answered non-JSON") from None
        results = data.get("results") if isinstance(data, dict) else None
        if not isinstance(results, list) or len(results) != 1 or not isinstance(results[0], str):
            raise NullifierAuthorityUnavailable("unreadable answer from the nullifier authority")
        result = results[0]
        if result in ("claimed", "reused"):
            return result == "claimed"
        if result in ("unknown_group", "group_not_served", "wrong_epoch"):
            raise NullifierClaimRefused(result)
        raise NullifierAuthorityUnavailable("unknown result from the nullifier authority")


class AuthorityNullifierStore:
    """This relay's store, then the home registry (module docstring)."""

    def __init__(self, local: SqlNullifierStore, authority: NullifierAuthorityClient) -> None:
        self.local = local
        self.authority = authority

    def claim(self, group_id: int, nullifier: int, epoch: int) -> bool:
        if not self.local.claim(group_id, nullifier, epoch):
            return False
        try:
            return self.authority.claim(group_id, nullifier, epoch)
        except (NullifierAuthorityUnavailable, NullifierClaimRefused):
            self.local.release(group_id, nullifier, epoch)  # not spent here: a resend may succeed
            raise

    def purge(self, group_id: int, before_epoch: int) -> int:
        return self.local.purge(group_id, before_epoch)

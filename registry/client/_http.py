"""The one HTTP layer of the client SDK: every request to a registry or a relay goes
through :func:`request`, every answer is read by :func:`answer` (or :func:`error_of`).

- Transport failures are told apart by whether the request may have reached the server
  (docs/relay.md "Retrying a send"): no connection, a pool or connect timeout or an
  unsupported URL mean nothing was sent (``code`` ``unreachable``, ``sent`` False); any
  other failure (a read timeout, a dropped connection) means it may have been acted on
  (``code`` ``no_answer``, ``sent`` True).
- Error bodies are the API's ``{"error": {"code": ..., "message": ...}}``
  (``registry/errors.py``), read with the strict JSON loader (duplicate keys and deep
  nesting refused); ``Retry-After`` (seconds) is read here too.
- Timeouts: :data:`DEFAULT_TIMEOUT` unless the caller gives one.

Imports only httpx and ``zk.strict_json``: light enough for the CLI's start-up.
"""

from __future__ import annotations

from typing import Any, Self

import httpx

from zk import strict_json

#: Seconds a request may take, unless the caller says otherwise.
DEFAULT_TIMEOUT = 30.0

#: httpx errors raised before any byte of the request left: the server saw nothing.
NOT_SENT: tuple[type[httpx.HTTPError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.UnsupportedProtocol,
)


class RegistryClientError(Exception):
    """A registry (or relay) refused a request (``status`` and ``code`` from its error
    JSON), answered something unusable (``bad_response``), or could not be asked
    (``status == 0``: ``unreachable``, nothing was sent, or ``no_answer``, the request
    went out and no answer came back). ``retry_after``: the server's ``Retry-After``."""

    def __init__(self, status: int, code: str, message: str, *, retry_after: float = 0.0) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after

    @property
    def sent(self) -> bool:
        """Whether the server may have received (and acted on) the request."""
        return self.code != "unreachable"


class HttpSession:
    """An httpx client for one base URL: the caller's (``client``, left open) or one made
    here and closed by :meth:`close`; a context manager."""

    def __init__(self, url: str, timeout: float = DEFAULT_TIMEOUT, client: httpx.Client | None = None) -> None:
        self.url = url.rstrip("/")
        self._http = client if client is not None else httpx.Client(base_url=self.url, timeout=timeout)
        self._owned = client is None

    def close(self) -> None:
        if self._owned:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def request(
    http: httpx.Client | None, method: str, url: str, *, timeout: float | None = None, max_bytes: int | None = None, **kwargs: Any
) -> httpx.Response:
    """Send one request (with ``http``, or a one-off client when None); transport
    failures become :class:`RegistryClientError` ``unreachable`` / ``no_answer``.
    ``timeout``: this request's, else ``http``'s own (:data:`DEFAULT_TIMEOUT` without one).
    ``max_bytes`` (with ``http``): an answer whose body (decoded) grows past it is cut off
    and is ``no_answer`` (a relay asking a registry must not hold whatever it is sent)."""
    try:
        if http is None:
            return httpx.request(method, url, timeout=DEFAULT_TIMEOUT if timeout is None else timeout, **kwargs)
        if timeout is not None:
            kwargs["timeout"] = timeout
        if max_bytes is not None:
            return _bounded(http, http.build_request(method, url, **kwargs), max_bytes)
        return http.request(method, url, **kwargs)
    except NOT_SENT as exc:
        raise RegistryClientError(0, "unreachable", f"cannot connect: {type(exc).__name__}") from None
    except httpx.HTTPError as exc:
        raise RegistryClientError(0, "no_answer", f"no answer: {type(exc).__name__}") from None


def _bounded(http: httpx.Client, sent: httpx.Request, max_bytes: int) -> httpx.Response:
    """The answer to ``sent``, its body read up to ``max_bytes`` (else ``no_answer``)."""
    response = http.send(sent, stream=True)
    body = bytearray()
    try:
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > max_bytes:
                raise RegistryClientError(0, "no_answer", f"an answer of more than {max_bytes} bytes")
    finally:
        response.close()
    # The body is decoded already: the new answer must not be decoded again.
    drop = {"content-encoding", "content-length", "transfer-encoding"}
    headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in drop]
    return httpx.Response(response.status_code, headers=headers, content=bytes(body), request=sent)


def json_of(response: httpx.Response) -> Any:
    """The body as strict JSON; ``ValueError`` (``JsonInputError``) when it is not."""
    return strict_json.loads(response.content)


def retry_after(response: httpx.Response) -> float:
    """``Retry-After`` in seconds (0 when absent or not a number; at most an hour)."""
    try:
        return min(3600.0, max(0.0, float(response.headers.get("retry-after", "0"))))
    except ValueError:
        return 0.0


def error_of(response: httpx.Response) -> tuple[str, str] | None:
    """``(code, message)`` of an error body ``{"error": {"code", "message"}}``, else None."""
    try:
        error = json_of(response)["error"]
        code, message = error["code"], error.get("message", "")
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if not isinstance(code, str):
        return None
    return code, str(message)


def error_code(response: httpx.Response) -> str | None:
    """The ``error.code`` of an error answer, None when it has none."""
    found = error_of(response)
    return None if found is None else found[0]


def failure(response: httpx.Response) -> RegistryClientError:
    """The error an answer of 400 or more stands for: the code and message of its error
    body, else ``http_error`` (an answer without the API's error object)."""
    found = error_of(response)
    code, message = found if found is not None else ("http_error", f"HTTP {response.status_code} without an error object")
    return RegistryClientError(response.status_code, code, message, retry_after=retry_after(response))


def answer(response: httpx.Response, ok: tuple[int, ...] = ()) -> Any:
    """The JSON of a successful answer (status in ``ok``, or below 400 when ``ok`` is
    empty); else the :func:`failure` it stands for. A success that is not JSON is
    ``bad_response``."""
    status = response.status_code
    if (status not in ok) if ok else status >= 400:
        raise failure(response)
    try:
        return json_of(response)
    except ValueError:
        raise RegistryClientError(status, "bad_response", f"HTTP {status} with a non-JSON body") from None

"""Bounded waiting, and running a function in several threads at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 30.0,
    what: str = "condition",
    *,
    interval: float = 0.05,
    ignore: tuple[type[BaseException], ...] = (),
    check: Callable[[], None] | None = None,
    detail: Callable[[], str] | None = None,
) -> T:
    """Poll ``predicate`` until it returns a truthy value, and return that value.

    A bounded wait, never a timing assertion: the timeout only turns a hang into a failure.
    ``ignore``: exceptions of the predicate that mean "not yet"; ``check``: called every
    round, raises when waiting is pointless (a watched process died); ``detail``: more
    text for the timeout's message (a log's tail).
    """
    deadline = time.monotonic() + timeout
    while True:
        if check is not None:
            check()
        try:
            value = predicate()
        except ignore:
            value = None  # type: ignore[assignment]
        if value:
            return value
        if time.monotonic() > deadline:
            extra = f"\n{detail()}" if detail is not None else ""
            raise AssertionError(f"timed out waiting for {what} ({timeout} s){extra}")
        time.sleep(interval)


def run_threads(target: Callable[[], Any], n: int) -> None:
    """Run ``target`` in ``n`` threads at once and wait for all of them."""
    threads = [threading.Thread(target=target) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def run_each(target: Callable[[T], Any], items: Iterable[T]) -> None:
    """Run ``target(item)`` for every item, each in a thread of its own, all at once, and
    wait for all of them."""
    threads = [threading.Thread(target=target, args=(item,)) for item in items]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

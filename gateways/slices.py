"""A full read split into independent slices, read several at once.

Why: against a real gateway a page costs 100-500 ms, so a million-invoice account read page after
page takes over half an hour before its aging is right. Where a provider's filters allow disjoint
slices (Xendit's `created_after`/`created_before` pairs), up to `concurrency` slices are read at
once, each page after page with its own cursor, and their pages are handed to the caller in one
stream.

The caller writes pages in the order they come out of `read_slices`. Each page carries a resume
marker that holds every slice's cursor as of that page, so after a crash the committed marker says
exactly which slices are done and where each of the others stopped (one cursor per slice).

Memory stays flat: the workers wait when `depth` pages, or pages holding `max_items` items, are
queued and not yet taken (FarPay answers a whole due window in one call, so its pages grow with the
account and a bound in pages alone would not hold). Rate limits
are the HTTP layer's (`HttpClient`: a 429's Retry-After pauses every thread of the client).
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

#: The cap of slices read at once for one credential, whatever its option says.
MAX_CONCURRENCY = 16

_DONE = object()


def read_slices(
    states: list[dict[str, Any]],
    *,
    fetch: Callable[[dict[str, Any], str | None], tuple[list[Any], str | None]],
    page: Callable[[list[Any], list[dict[str, Any]]], Any],
    concurrency: int,
    depth: int = 32,
    max_items: int = 4000,
) -> Iterator[Any]:
    """Yield `page(items, states)` for every non-empty answer of every slice.

    `states` are the slices (dicts, JSON-able): each has "c" (the cursor to continue from, None
    at the start) and "d" (done). `fetch(state, cursor)` reads one page of one slice and returns
    (items, next cursor or None when the slice is finished); it runs in worker threads and must
    not touch `states`. `page` builds what is yielded from the items and the states *after* them
    (for its resume marker); it runs in the caller's thread, where `states` is updated.

    A worker waits before queueing a page while the queued pages hold `max_items` items or more
    (one page is always let through, however large). An exception in a worker is raised here
    after the pages before it; the other workers stop.
    """
    concurrency = max(1, min(int(concurrency), MAX_CONCURRENCY))
    todo: queue.Queue = queue.Queue()
    for index, state in enumerate(states):
        if not state.get("d"):
            todo.put(index)
    out: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()
    budget = Budget(max_items, stop)  # the items in the pages queued and not yet taken

    def put(item: Any, size: int = 0) -> bool:
        budget.hold(size)
        while not stop.is_set():
            try:
                out.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            while not stop.is_set():
                try:
                    index = todo.get_nowait()
                except queue.Empty:
                    return
                state = dict(states[index])
                cursor = state.get("c")
                while not stop.is_set():
                    items, cursor = fetch(state, cursor)
                    if not put((index, items, cursor), len(items)) or cursor is None:
                        break
        except BaseException as exc:  # handed to the caller, raised in its thread
            put(exc)
        finally:
            put(_DONE)

    workers = [threading.Thread(target=work, name=f"slice-reader-{n}", daemon=True)
               for n in range(min(concurrency, todo.qsize()))]
    for worker in workers:
        worker.start()
    running = len(workers)
    try:
        while running:
            item = out.get()
            if item is _DONE:
                running -= 1
                continue
            if isinstance(item, BaseException):
                raise item
            index, items, cursor = item
            budget.release(len(items))
            states[index] = {**states[index], "c": cursor, "d": cursor is None}
            if items:
                yield page(items, states)
    finally:
        stop.set()
        budget.wake()
        for worker in workers:
            worker.join(timeout=5)


class Budget:
    """How many items a producer thread holds out for its consumer: `hold` waits while the held
    ones and these would pass `limit` (with nothing held, any size passes, so one large batch
    never blocks for ever); `release` gives them back once taken. `stop` ends every wait."""

    def __init__(self, limit: int | None, stop: threading.Event) -> None:
        self.limit, self.stop = limit, stop
        self.held = 0
        self._room = threading.Condition()

    def hold(self, size: int) -> None:
        if self.limit is None or not size:
            return
        with self._room:
            while self.held and self.held + size > self.limit and not self.stop.is_set():
                self._room.wait(timeout=0.2)
            self.held += size

    def release(self, size: int) -> None:
        if self.limit is None or not size:
            return
        with self._room:
            self.held -= size
            self._room.notify_all()

    def wake(self) -> None:
        with self._room:
            self._room.notify_all()


def split_range(start_ms: int, end_ms: int, parts: int) -> list[tuple[int, int]]:
    """[start, end) in milliseconds as `parts` consecutive, disjoint, gap-free ranges."""
    parts = max(1, min(parts, max(1, end_ms - start_ms)))
    step = (end_ms - start_ms) / parts
    bounds = [start_ms + round(step * k) for k in range(parts)] + [end_ms]
    return [(bounds[k], bounds[k + 1]) for k in range(parts)]

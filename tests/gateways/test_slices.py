"""`read_slices` and the sync's `prefetch`: every item once, and how far the readers may run ahead.

FarPay answers a whole due window in one call, so a bound in pages would let the readers queue
the account; both queues are bounded in items too (the peak RSS of a first sync stays flat).
"""
from __future__ import annotations

import threading
import time

import pytest

from arbook.services.sync import prefetch
from gateways.models import Page
from gateways.slices import read_slices


class Ledger:
    """Counts items fetched by the workers and taken by the consumer, and the widest gap seen."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.fetched = 0
        self.taken = 0
        self.widest = 0

    def fetch(self, n: int) -> None:
        with self.lock:
            self.fetched += n
            self.widest = max(self.widest, self.fetched - self.taken)

    def take(self, n: int) -> None:
        with self.lock:
            self.taken += n


def slices(count: int, pages: int, size: int, ledger: Ledger):
    states = [{"n": n, "c": None, "d": False} for n in range(count)]

    def fetch(state, cursor):
        index = int(cursor or 0)
        items = [f"{state['n']}-{index}-{k}" for k in range(size)]
        ledger.fetch(len(items))
        return items, (str(index + 1) if index + 1 < pages else None)

    return states, fetch


def test_every_item_once_and_each_slice_done():
    ledger = Ledger()
    states, fetch = slices(count=6, pages=5, size=10, ledger=ledger)
    out = list(read_slices(states, fetch=fetch, page=lambda items, now: list(items), concurrency=3))
    items = [item for page in out for item in page]
    assert len(items) == len(set(items)) == 6 * 5 * 10
    assert all(state["d"] and state["c"] is None for state in states)


@pytest.mark.parametrize("max_items,size", [(400, 50), (100, 100)])
def test_workers_wait_when_the_queued_pages_hold_max_items(max_items, size):
    """A slow writer: the workers never hold more than `max_items` queued, plus the page each has
    in hand (fetched, waiting to be queued) and the one the consumer is writing."""
    ledger = Ledger()
    concurrency = 4
    states, fetch = slices(count=8, pages=10, size=size, ledger=ledger)
    count = 0
    for page in read_slices(states, fetch=fetch, page=lambda items, now: list(items), concurrency=concurrency,
                            max_items=max_items):
        time.sleep(0.002)
        ledger.take(len(page))
        count += len(page)
    assert count == 8 * 10 * size
    assert ledger.widest <= max_items + (concurrency + 1) * size


def test_a_page_larger_than_max_items_still_goes_through():
    ledger = Ledger()
    states, fetch = slices(count=2, pages=3, size=500, ledger=ledger)
    out = list(read_slices(states, fetch=fetch, page=lambda items, now: list(items), concurrency=2, max_items=100))
    assert sum(len(page) for page in out) == 2 * 3 * 500


def test_a_failing_worker_is_raised_after_the_pages_before_it():
    def fetch(state, cursor):
        if cursor == "2":
            raise RuntimeError("gateway down")
        return [f"{cursor}"], str(int(cursor or 0) + 1)

    states = [{"c": None, "d": False}]
    seen = []
    with pytest.raises(RuntimeError, match="gateway down"):
        for page in read_slices(states, fetch=fetch, page=lambda items, now: list(items), concurrency=1):
            seen.extend(page)
    assert seen == ["None", "1"]


def test_prefetch_runs_at_most_max_rows_ahead():
    """The sync's reader thread: a bound in pages (20) and in invoices (`max_rows`)."""
    ledger = Ledger()

    def pages():
        for number in range(1, 41):
            ledger.fetch(300)
            yield Page(invoices=[object()] * 300, number=number, resume=str(number))

    got = 0
    for page in prefetch(pages(), depth=20, max_rows=900):
        time.sleep(0.002)
        ledger.take(len(page))
        got += len(page)
    assert got == 40 * 300
    # Queued at most 900, one more in the reader's hand, and the one the consumer holds.
    assert ledger.widest <= 900 + 2 * 300

"""How a batch of receipts splits into insert statements (worker/receipts.py `pieces`)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bookingsync.worker.receipts import pieces


def test_a_batch_splits_into_powers_of_two_largest_first() -> None:
    assert pieces(21, 4096) == [16, 4, 1]
    assert pieces(0, 4096) == []
    assert pieces(5000, 2048) == [2048, 2048, 512, 256, 128, 8]


@given(st.integers(0, 20_000), st.sampled_from([1, 2, 1024, 2048, 4096]))
def test_pieces_cover_the_batch_with_powers_of_two_up_to_the_cap(total: int, cap: int) -> None:
    sizes = pieces(total, cap)
    assert sum(sizes) == total
    assert all(size & (size - 1) == 0 and size <= cap for size in sizes)
    assert sizes == sorted(sizes, reverse=True)

"""lib/sort.c: the kernel's sort(), reproduced because its order matters.

Interleave-set cookies are checksums over records in the order sort()
leaves them, and sort() is an unstable heapsort: for records that compare
equal it can differ from Python's sorted().  Anything whose bytes depend on
the kernel's sort order must use this.
"""

from __future__ import annotations

from typing import Callable, Sequence, TypeVar

__all__ = ["kernel_sort"]

T = TypeVar("T")


def kernel_sort(items: Sequence[T], cmp: Callable[[T, T], int]) -> list[T]:
    """Return ``items`` ordered the way lib/sort.c's sort() leaves them.

    The kernel uses an in-place bottom-up heapsort, which is not stable:
    for elements comparing equal the resulting order can differ from
    Python's sorted(), and the cookie depends on that order.  ``cmp(x, y)``
    returns <0, 0 or >0.
    """
    arr = list(items)
    n = len(arr)
    a = n // 2
    if a == 0:
        return arr

    def parent(i: int) -> int:
        return (i - 1) // 2

    while True:
        if a:
            a -= 1                      # heapify: sift element a down
        else:
            n -= 1
            if n == 0:
                break
            arr[0], arr[n] = arr[n], arr[0]   # move the maximum behind the heap
        b = a
        while True:                     # walk to a leaf along the larger children
            c = 2 * b + 1
            d = c + 1
            if d >= n:
                break
            b = c if cmp(arr[c], arr[d]) >= 0 else d
        if d == n:                      # a last child without sibling
            b = c
        while b != a and cmp(arr[a], arr[b]) >= 0:
            b = parent(b)               # back up to where element a belongs
        c = b
        while b != a:                   # rotate a into place along the path
            b = parent(b)
            arr[b], arr[c] = arr[c], arr[b]
    return arr

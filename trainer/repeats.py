"""The longest loop of a token sequence, in n log n: suffix arrays and longest common extensions.

A loop is a stretch that is one pattern played at least twice back to back: for a period ``p``,
positions where ``tokens[i] == tokens[i + p]`` for ``r >= p`` consecutive ``i`` cover ``r + p``
tokens. The plain search tries every period at every position (n²/2 comparisons: 0.5 s at 5,000
tokens, minutes at 100,000). Here each period ``p`` is only looked at from the anchors ``0, p, 2p,
...``: a run of ``r >= p`` matches holds at least one anchor ``j``, and from it the run reaches
forward as far as the suffixes at ``j`` and ``j + p`` agree and backward as far as the prefixes
ending at ``j - 1`` and ``j + p - 1`` agree. Those two longest common extensions are answered in
constant time from a suffix array, its LCP array and a sparse table of minima (of the sequence and
of its reverse), so the whole search is about ``n ln n`` queries, done in numpy batches (a second
for 100,000 tokens). Pure numpy; the result is exactly the plain search's (tested against it).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MAX_QUERIES = 2_000_000
"""Anchors looked at in one numpy batch: bounds the memory of a long piece's search."""


def suffix_array(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(order, rank)`` of the suffixes of ``codes`` (small ints) by prefix doubling."""
    n = len(codes)
    rank = codes.astype(np.int64)
    order = np.argsort(rank, kind="stable")
    step = 1
    while step < n:
        second = np.full(n, -1, np.int64)
        second[: n - step] = rank[step:]
        order = np.lexsort((second, rank))
        first_sorted, second_sorted = rank[order], second[order]
        starts_group = np.ones(n, bool)
        starts_group[1:] = (first_sorted[1:] != first_sorted[:-1]) | (
            second_sorted[1:] != second_sorted[:-1]
        )
        rank = np.empty(n, np.int64)
        rank[order] = np.cumsum(starts_group) - 1
        if rank[order[-1]] == n - 1:
            break
        step *= 2
    return order, rank


def lcp_array(codes: np.ndarray, order: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """``lcp[r]``: the longest common prefix of the suffixes ranked ``r - 1`` and ``r`` (Kasai)."""
    n = len(codes)
    lcp = np.zeros(n, np.int64)
    text, suffixes, ranks = codes.tolist(), order.tolist(), rank.tolist()
    common = 0
    for i in range(n):
        r = ranks[i]
        if r == 0:
            common = 0
            continue
        j = suffixes[r - 1]
        while i + common < n and j + common < n and text[i + common] == text[j + common]:
            common += 1
        lcp[r] = common
        common = max(common - 1, 0)
    return lcp


class CommonExtensions:
    """How far the suffixes of one sequence starting at two positions agree, many pairs at once."""

    def __init__(self, codes: np.ndarray):
        order, self.rank = suffix_array(codes)
        self.minima = [lcp_array(codes, order, self.rank)]
        width = 1
        while 2 * width <= len(codes):
            previous = self.minima[-1]
            self.minima.append(np.minimum(previous[:-width], previous[width:]))
            width *= 2

    def __call__(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """For each pair of distinct positions, the length of their suffixes' common prefix."""
        a, b = self.rank[first], self.rank[second]
        low, high = np.minimum(a, b) + 1, np.maximum(a, b)
        level = np.log2(high - low + 1).astype(np.int64)
        result = np.empty(len(first), np.int64)
        for value in np.unique(level):
            chosen = level == value
            table = self.minima[value]
            ends = high[chosen] - (1 << int(value)) + 1
            result[chosen] = np.minimum(table[low[chosen]], table[ends])
        return result


def longest_loop(tokens: Sequence[str]) -> tuple[int, int]:
    """``(pattern_length, covered_tokens)`` of the longest stretch that is one pattern repeated
    back to back (at least twice); the shortest such pattern when several cover as many tokens;
    ``(0, 0)`` when nothing repeats."""
    n = len(tokens)
    if n < 2:
        return (0, 0)
    codes = np.unique(np.asarray(list(tokens), dtype=str), return_inverse=True)[1].astype(np.int64)
    forward = CommonExtensions(codes)
    backward = CommonExtensions(codes[::-1].copy())
    periods = np.arange(1, n // 2 + 1)
    anchors = (n - periods - 1) // periods + 1  # j = 0, p, 2p, ... while j + p < n
    best = (0, 0)
    for batch in np.array_split(periods, max(1, int(anchors.sum()) // MAX_QUERIES + 1)):
        counts = (n - batch - 1) // batch + 1
        p = np.repeat(batch, counts)
        j = (np.arange(len(p)) - np.repeat(np.cumsum(counts) - counts, counts)) * p
        run = forward(j, j + p)
        inside = j > 0  # a loop may also start before its first anchor
        run[inside] += backward((n - j)[inside], (n - j - p)[inside])
        covered = np.where(run >= p, run + p, 0)
        top = int(covered.max())
        if top > best[1]:
            best = (int(p[covered == top].min()), top)
    return best

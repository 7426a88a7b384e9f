"""The hash definitions: exact integer arithmetic, reference DCT, bit order, invariances."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.fft import dctn

from endoctl.hashing import (
    _COLS9,
    _DCT8,
    _ROWS8,
    dhash_batch,
    from_hex,
    grid_batch,
    grid_confirms,
    grid_from_hex,
    grid_hex,
    grid_similarity,
    hamming,
    phash_batch,
    to_hex,
)

thumbs = arrays(np.uint8, (32, 32), elements=st.integers(0, 255))


def integer_phash(thumb: np.ndarray) -> int:
    """The pHash definition in Python integers: D X D^T, bit = 2c > c(32) + c(33)."""
    d = [[int(v) for v in row] for row in _DCT8]
    x = thumb.astype(int).tolist()
    dx = [[sum(d[k][i] * x[i][j] for i in range(32)) for j in range(32)] for k in range(8)]
    c = [sum(dx[k][j] * d[m][j] for j in range(32)) for k in range(8) for m in range(8)]
    mid = sorted(c)[31] + sorted(c)[32]
    return int("".join("1" if 2 * v > mid else "0" for v in c), 2)


def integer_dhash(thumb: np.ndarray) -> int:
    """The dHash definition in Python integers: 8x9 box sums, bit = sum > left neighbour's."""
    rows, cols = _ROWS8.astype(int).tolist(), _COLS9.astype(int).tolist()
    x = thumb.astype(int).tolist()
    grid = [
        [sum(rows[r][i] * cols[q][j] * x[i][j] for i in range(32) for j in range(32)) for q in range(9)]
        for r in range(8)
    ]
    return int("".join("1" if grid[r][q + 1] > grid[r][q] else "0" for r in range(8) for q in range(8)), 2)


# Blocky thumbnails: equal 4x4 blocks make equal box sums and equal DCT coefficients (ties).
blocky = arrays(np.uint8, (8, 8), elements=st.sampled_from([0, 16, 17, 128, 255])).map(
    lambda b: np.kron(b, np.ones((4, 4), dtype=np.uint8))
)


@settings(max_examples=25, deadline=None)
@given(st.one_of(thumbs, blocky))
def test_hashes_equal_the_integer_definition_ties_included(thumb: np.ndarray) -> None:
    """Float64 BLAS on integer-valued matrices is exact: the bits are those of integer arithmetic."""
    assert int(phash_batch(thumb[None])[0]) == integer_phash(thumb)
    assert int(dhash_batch(thumb[None])[0]) == integer_dhash(thumb)


def test_a_tie_is_not_greater() -> None:
    """Equal box sums or coefficients give bit 0, as the integer definition says."""
    flat = np.full((32, 32), 77, dtype=np.uint8)
    assert to_hex(dhash_batch(flat[None])) == ["0000000000000000"]
    assert to_hex(phash_batch(flat[None])) == ["8000000000000000"]  # DC > median of 63 zeros and DC
    rng = np.random.default_rng(0)
    cols = np.repeat(rng.integers(0, 3, (1, 8)) * 100, 4, axis=1).astype(np.uint8)
    stripes = np.repeat(cols, 32, axis=0)  # 4-pixel columns: many equal neighbouring box sums
    grid = _ROWS8 @ stripes.astype(float) @ _COLS9.T
    assert (grid[:, 1:] == grid[:, :-1]).any()  # the case under test: exact ties
    assert int(dhash_batch(stripes[None])[0]) == integer_dhash(stripes)


def test_integer_dct_is_the_orthonormal_dct_to_a_quarter_grey_level() -> None:
    """D / 2**18 approximates the orthonormal DCT-II: coefficients within 0.25 of scipy's on 0..255 images."""
    stack = np.random.default_rng(1).integers(0, 256, (50, 32, 32)).astype(float)
    ours = (_DCT8 @ stack @ _DCT8.T) / 2.0**36
    reference = dctn(stack, norm="ortho", axes=(1, 2))[:, :8, :8]
    assert np.abs(ours - reference).max() < 0.25


@settings(max_examples=60, deadline=None)
@given(st.lists(thumbs, min_size=1, max_size=5), st.sampled_from([0.25, 0.5, 2.0, 4.0]))
def test_batch_equals_single_and_contrast_scaling_keeps_hashes(batch: list, gain: float) -> None:
    """Power-of-two gains scale every (exact) sum exactly, so every comparison (and tie) is kept."""
    stack = np.stack(batch)
    singles = [int(phash_batch(t[None])[0]) for t in batch]
    assert [int(v) for v in phash_batch(stack)] == singles
    scaled = stack.astype(float) * gain
    assert np.array_equal(phash_batch(scaled), phash_batch(stack))
    assert np.array_equal(dhash_batch(scaled), dhash_batch(stack))


def test_dhash_of_gradients_and_bit_order() -> None:
    ramp = np.tile(np.arange(32, dtype=float), (32, 1))
    assert to_hex(dhash_batch(ramp[None])) == ["ffffffffffffffff"]
    assert to_hex(dhash_batch(ramp[None, :, ::-1])) == ["0000000000000000"]
    top_row_only = ramp.copy()
    top_row_only[4:] = 0  # only the first grid row (rows 0-3) increases: the 8 most significant bits
    assert to_hex(dhash_batch(top_row_only[None])) == ["ff00000000000000"]


@given(st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=20))
def test_hex_round_trip_and_hamming(values: list[int]) -> None:
    arr = np.array(values, dtype=np.uint64)
    hexes = to_hex(arr)
    assert all(len(h) == 16 and h == h.lower() for h in hexes)
    assert np.array_equal(from_hex(hexes), arr)
    assert (hamming(arr, arr) == 0).all()
    expected = [bin(a ^ values[0]).count("1") for a in values]
    assert hamming(arr, arr[0]).tolist() == expected


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([0.0, 0.5, 0.91, 0.97, 1.0]))
def test_grid_confirms_is_the_similarity_threshold_decided_exactly(seed: int, threshold: float) -> None:
    rng = np.random.default_rng(seed)
    thumbs = rng.integers(0, 256, (40, 32, 32), dtype=np.uint8)
    thumbs[20:] = np.clip(thumbs[:20].astype(int) + rng.integers(-30, 31, (20, 32, 32)), 0, 255)  # related pairs
    thumbs[5] = 0  # a black frame: no similarity to anything
    grids = grid_batch(thumbs)
    a, b = grids[:20], grids[20:]
    similarity = grid_similarity(a, b)
    confirms = grid_confirms(a, b, threshold)
    flat = (np.ptp(a, axis=1) == 0) | (np.ptp(b, axis=1) == 0)
    assert flat[5] and not confirms[5]  # a flat grid confirms nothing
    assert (confirms == ((similarity >= threshold) & ~flat)).all()  # away from exact ties the float agrees
    assert grid_confirms(a, a, 1.0)[np.ptp(a, axis=1) > 0].all()  # a tie at 1.0 is confirmed exactly


def test_grid_is_the_rounded_block_mean_and_round_trips_through_hex() -> None:
    thumbs = np.arange(32 * 32, dtype=np.int64).reshape(1, 32, 32) % 256
    grid = grid_batch(thumbs.astype(np.uint8))
    blocks = thumbs.reshape(8, 4, 8, 4).mean(axis=(1, 3)).ravel()
    assert np.array_equal(grid[0], np.floor(blocks + 0.5).astype(np.uint8))
    assert np.array_equal(grid_from_hex(grid_hex(grid)), grid) and len(grid_hex(grid)[0]) == 128


def test_dark_cells_are_left_out_of_the_similarity() -> None:
    """Two unrelated pictures sharing a device's black inset correlate through it, unless masked."""
    rng = np.random.default_rng(0)
    a, b = rng.integers(60, 200, (2, 64)).astype(np.uint8)
    a[:24] = b[:24] = 0  # the inset: 24 black cells in both
    assert np.corrcoef(a.astype(float), b.astype(float))[0, 1] > 0.5
    assert abs(grid_similarity(a[None], b[None])[0]) < 0.5

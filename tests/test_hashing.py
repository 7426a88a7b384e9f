"""The hash definitions: reference DCT, bit order, invariances."""

from __future__ import annotations

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.fft import dctn

from endoctl.hashing import dhash_batch, from_hex, hamming, phash_batch, to_hex

thumbs = arrays(np.uint8, (32, 32), elements=st.integers(0, 255))


def reference_phash(thumb: np.ndarray) -> int:
    low = dctn(thumb.astype(float), norm="ortho")[:8, :8].ravel()
    bits = low > np.median(low)
    return int("".join("1" if b else "0" for b in bits), 2)


@settings(max_examples=60, deadline=None)
@given(thumbs)
def test_phash_matches_scipy_reference(thumb: np.ndarray) -> None:
    low = dctn(thumb.astype(float), norm="ortho")[:8, :8].ravel()
    assume(np.abs(low - np.median(low)).min() > 1e-6)  # a coefficient on the median is a rounding tie
    assert int(phash_batch(thumb[None])[0]) == reference_phash(thumb)


@settings(max_examples=60, deadline=None)
@given(st.lists(thumbs, min_size=1, max_size=5), st.sampled_from([0.25, 0.5, 2.0, 4.0]))
def test_batch_equals_single_and_contrast_scaling_keeps_hashes(batch: list, gain: float) -> None:
    """Power-of-two gains are exact in floating point, so every comparison (and tie) is kept."""
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

"""The PSF images of a Rubin store built with `--psf`, each at its own size: `psf/index[i, k]`
is [start, height, width] of alert i's cutout k (0 science, 1 template, 2 difference) in the
1-D `psf/pixels`, whose values start … start + height·width are the image, row-major; [-1, 0, 0]
says the cutout is null or has no PSF image. `Psf(store).images(row)` gives one alert's three
images; `Psf.fixed(rows, size)` gives them as one (B, 3, P, P) float32 array for a batch.

Centring in `fixed`: pixel n // 2 of an image of side n (its centre pixel for an odd n, the one
after the middle for an even n) lands on pixel P // 2 of the output, along each axis; what falls
outside P × P is cropped, what the image does not cover is 0. A real PSF image (odd, 41 × 41
for science and difference, 39 to 77 for templates) keeps its peak on the centre pixel of an
odd P. An absent image is all 0 (a real one sums to 1).
"""

from __future__ import annotations

import numpy as np

INDEX = "psf/index"
PIXELS = "psf/pixels"


class Psf:
    """The `psf` group of an open `Store` (a ValueError if the store has none)."""

    def __init__(self, store):
        if store.node(INDEX) != "array" or store.node(PIXELS) != "array":
            raise ValueError(f"{store.path}: no PSF images in this store (a Rubin store built with `ztf2zarr build --psf` has them)")
        self.store = store
        self.index = store.array(INDEX)
        self.pixels = store.array(PIXELS)
        if tuple(self.index.shape) != (store.rows, 3, 3):
            raise ValueError(f"{store.path}: {INDEX} has shape {tuple(self.index.shape)}, expected ({store.rows}, 3, 3): the store is damaged")
        self.length = int(self.pixels.shape[0])

    def entries(self, rows) -> np.ndarray:
        """`psf/index` of `rows` as an (n, 3, 3) int64 array, each entry checked."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if len(rows) and (rows.min() < 0 or rows.max() >= self.store.rows):
            raise IndexError(f"{self.store.path}: rows must be in 0 … {self.store.rows - 1}")
        size = self.index.chunks[0]
        out = np.empty((len(rows), 3, 3), np.int64)
        for chunk in np.unique(rows // size):
            at = rows // size == chunk
            out[at] = np.asarray(self.index.chunk(int(chunk)))[rows[at] - chunk * size]
        for row, entry in zip(rows, out):
            self._check(int(row), entry)
        return out

    def _check(self, row: int, entry: np.ndarray):
        for channel, (start, height, width) in enumerate(entry):
            if (start, height, width) == (-1, 0, 0):
                continue
            if start < 0 or height < 1 or width < 1 or start + height * width > self.length:
                raise ValueError(f"{self.store.path}: {INDEX}[{row}, {channel}] = [{start}, {height}, {width}] is not an image "
                                 f"within the {self.length} values of {PIXELS}: the store is damaged (`ztf2zarr verify` says more)")

    def _values(self, start: int, stop: int, cache: dict) -> np.ndarray:
        """Values [start, stop) of `psf/pixels`, each chunk decoded once per `cache`."""
        size = self.pixels.chunks[0]
        parts = []
        for chunk in range(start // size, -(-stop // size)):
            if chunk not in cache:
                cache[chunk] = np.asarray(self.pixels.chunk(chunk))
            parts.append(cache[chunk][max(start - chunk * size, 0) : stop - chunk * size])
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def images(self, row: int, cache: dict | None = None) -> tuple:
        """Alert `row`'s three PSF images (science, template, difference), each a float32
        (height, width) array at its own size, or None for a cutout without one."""
        cache = {} if cache is None else cache
        entry = self.entries([row])[0]
        return tuple(None if start < 0 else self._values(int(start), int(start + height * width), cache).reshape(int(height), int(width))
                     for start, height, width in entry)

    def fixed(self, rows, size: int) -> np.ndarray:
        """The PSF images of `rows` as one (B, 3, size, size) float32 array, each centred,
        cropped or padded with 0 as the module says (an absent image: all 0)."""
        if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 1:
            raise ValueError(f"psf size must be a positive int, not {size!r}")
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        out = np.zeros((len(rows), 3, size, size), np.float32)
        cache: dict = {}
        for i, entry in enumerate(self.entries(rows)):
            for channel, (start, height, width) in enumerate(entry):
                if start < 0:
                    continue
                image = self._values(int(start), int(start + height * width), cache).reshape(int(height), int(width))
                (ys, yd), (xs, xd) = _placed(int(height), size), _placed(int(width), size)
                out[i, channel, yd, xd] = image[ys, xs]
        return out


def _placed(n: int, size: int) -> tuple:
    """Along one axis: the slice of an image of side `n` that lands in an output of side
    `size`, and where, so that pixel n // 2 lands on pixel size // 2."""
    offset = size // 2 - n // 2
    first, last = max(0, -offset), min(n, size - offset)
    return slice(first, last), slice(first + offset, last + offset)

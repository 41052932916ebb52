"""MinHash signatures and a banded LSH index with datasketch's values, without importing datasketch.

datasketch's package import loads its whole API, and with it scipy (~50 MB resident in the service) for one
call: `scipy.integrate.quad` in the search for the LSH band count. Signatures here are datasketch 2's
"affine32" scheme bit for bit (SHA-1's first 4 bytes, the MurmurHash3 finalizer, `a * h + b` mod 2^32 with the
permutations its seeded RandomState draws), so stored signatures stay comparable; the band search integrates
the same polynomials exactly (Gauss-Legendre), so it picks the same bands. tests/test_minhash.py checks both
against datasketch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from functools import cache

import numpy as np

DTYPE = np.uint32
_FMIX = (np.uint32(16), np.uint32(0x85EBCA6B), np.uint32(13), np.uint32(0xC2B2AE35), np.uint32(16))


@cache
def _permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The affine permutations (odd a, any b) datasketch draws for `seed`."""
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 31, num_perm, dtype=DTYPE) * DTYPE(2) + DTYPE(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=DTYPE)
    a.setflags(write=False)
    b.setflags(write=False)
    return a, b


def _fmix32(hv: np.ndarray) -> np.ndarray:
    s1, m1, s2, m2, s3 = _FMIX
    hv = hv ^ (hv >> s1)
    hv = hv * m1
    hv = hv ^ (hv >> s2)
    hv = hv * m2
    out: np.ndarray = hv ^ (hv >> s3)
    return out


def signature(values: Iterable[bytes], num_perm: int, seed: int) -> np.ndarray:
    """MinHash of a set of byte strings (uint32, `num_perm` long); all 2^32-1 for an empty set."""
    digests = b"".join(hashlib.sha1(v).digest()[:4] for v in values)
    if not digests:
        return np.full(num_perm, np.iinfo(DTYPE).max, dtype=DTYPE)
    hv = _fmix32(np.frombuffer(digests, dtype="<u4").astype(DTYPE).reshape(-1, 1))
    a, b = _permutations(num_perm, seed)
    out: np.ndarray = (hv * a + b).min(axis=0)  # uint32 arithmetic wraps: mod 2^32, as the scheme defines
    return out


@cache
def optimal_bands(threshold: float, num_perm: int, false_positive_weight: float = 0.5,
                  false_negative_weight: float = 0.5) -> tuple[int, int]:
    """(bands, rows) with the least weighted false positive and negative probability mass around `threshold`,
    as datasketch's MinHashLSH chooses them. 1 - (1 - s^r)^b is a polynomial of degree b*r <= num_perm, so
    Gauss-Legendre with num_perm/2 + 1 nodes integrates it exactly."""
    x, w = np.polynomial.legendre.leggauss(num_perm // 2 + 1)
    lo_s, lo_w = threshold / 2 * (x + 1), w * threshold / 2  # nodes on [0, threshold]
    hi_s, hi_w = threshold + (1 - threshold) / 2 * (x + 1), w * (1 - threshold) / 2  # on [threshold, 1]
    best, opt = float("inf"), (0, 0)
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            fp = float(lo_w @ (1 - (1 - lo_s ** float(r)) ** float(b)))
            fn = float(hi_w @ ((1 - hi_s ** float(r)) ** float(b)))
            error = fp * false_positive_weight + fn * false_negative_weight
            if error < best:
                best, opt = error, (b, r)
    return opt


class MinHashLSH:
    """Keys whose signatures agree on all rows of at least one band: the candidates for Jaccard >= threshold."""

    def __init__(self, threshold: float, num_perm: int) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError("threshold must be in [0.0, 1.0]")
        self.num_perm = num_perm
        self.b, self.r = optimal_bands(threshold, num_perm)
        if self.b < 2:
            raise ValueError("The number of bands are too small (b < 2)")
        self._tables: list[dict[bytes, list[str]]] = [{} for _ in range(self.b)]
        self._keys: dict[str, list[bytes]] = {}

    def _bands(self, hashvalues: np.ndarray) -> list[bytes]:
        if len(hashvalues) != self.num_perm:
            raise ValueError(f"expected a signature of {self.num_perm} values, got {len(hashvalues)}")
        hv = np.ascontiguousarray(hashvalues, dtype=DTYPE)
        return [hv[i * self.r:(i + 1) * self.r].tobytes() for i in range(self.b)]

    def insert(self, key: str, hashvalues: np.ndarray) -> None:
        """Index `key` under its signature; a key already in raises ValueError."""
        if key in self._keys:
            raise ValueError("The given key already exists")
        bands = self._bands(hashvalues)
        self._keys[key] = bands
        for band, table in zip(bands, self._tables, strict=True):
            table.setdefault(band, []).append(key)

    def remove(self, key: str) -> None:
        """Drop `key`; a key not in raises ValueError."""
        bands = self._keys.pop(key, None)
        if bands is None:
            raise ValueError("The given key does not exist")
        for band, table in zip(bands, self._tables, strict=True):
            bucket = table[band]
            bucket.remove(key)
            if not bucket:
                del table[band]

    def query(self, hashvalues: np.ndarray) -> list[str]:
        """The keys sharing a band with this signature, each once, in the order first found."""
        found: dict[str, None] = {}
        for band, table in zip(self._bands(hashvalues), self._tables, strict=True):
            for key in table.get(band, ()):
                found[key] = None
        return list(found)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

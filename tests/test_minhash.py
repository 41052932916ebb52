"""bot/pipeline/minhash.py gives datasketch's signatures and LSH bands, so stored signatures stay comparable."""

from __future__ import annotations

import random
import re

import numpy as np
import pytest
from datasketch import MinHash
from datasketch import MinHashLSH as DatasketchLSH
from datasketch.lsh import _optimal_param

from bot.pipeline import minhash
from bot.pipeline.story import MINHASH_SCHEME, MINHASH_SEED, minhash_of


def _datasketch_signature(values: list[bytes], num_perm: int = 128, seed: int = MINHASH_SEED) -> np.ndarray:
    m = MinHash(num_perm=num_perm, seed=seed, scheme=MINHASH_SCHEME)
    m.update_batch(values)
    out: np.ndarray = m.hashvalues
    return out


def test_signatures_are_datasketchs_bit_for_bit() -> None:
    rng = random.Random(5)
    for _ in range(300):
        values = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 30))) for _ in range(rng.randrange(0, 60))]
        num_perm, seed = rng.choice([(128, MINHASH_SEED), (64, 7), (256, 0)])
        ours = minhash.signature(values, num_perm, seed)
        assert ours.dtype == np.uint32
        np.testing.assert_array_equal(ours, _datasketch_signature(values, num_perm, seed))


def test_minhash_of_matches_datasketch_on_text() -> None:
    text = "Ministers met in Brussels on Monday to agree the next round of sanctions on Moscow's oil exports"
    words = re.findall(r"\w+", text.lower())  # story._WORD
    shingles = sorted({" ".join(words[i:i + 3]).encode() for i in range(len(words) - 2)})
    np.testing.assert_array_equal(minhash_of(text), _datasketch_signature(shingles))
    assert minhash_of("   ").size == 0


@pytest.mark.parametrize("num_perm", [16, 64, 128])
def test_band_choice_is_datasketchs(num_perm: int) -> None:
    for threshold in np.round(np.arange(0.05, 1.0, 0.05), 2):
        assert minhash.optimal_bands(float(threshold), num_perm) == _optimal_param(float(threshold), num_perm,
                                                                                   0.5, 0.5)


def test_lsh_finds_what_datasketchs_finds() -> None:
    rng = random.Random(11)
    base = [f"w{rng.randrange(400)}".encode() for _ in range(80)]
    docs = {}
    for i in range(120):
        doc = list(base) if i % 3 else [f"x{rng.randrange(10_000)}".encode() for _ in range(80)]
        for _ in range(rng.randrange(0, 30)):  # edits: more edits, lower Jaccard to the base
            doc[rng.randrange(len(doc))] = f"e{rng.randrange(10_000)}".encode()
        docs[f"d{i}"] = doc
    ours, theirs = minhash.MinHashLSH(0.8, 128), DatasketchLSH(threshold=0.8, num_perm=128)
    for key, doc in docs.items():
        ours.insert(key, minhash.signature(doc, 128, MINHASH_SEED))
        m = MinHash(num_perm=128, seed=MINHASH_SEED, scheme=MINHASH_SCHEME)
        m.update_batch(doc)
        theirs.insert(key, m)
    for key in list(docs)[::4]:
        ours.remove(key)
        theirs.remove(key)
        del docs[key]
    hits = 0
    for q in range(40):
        doc = list(base)
        for _ in range(q % 12):
            doc[rng.randrange(len(doc))] = f"q{rng.randrange(10_000)}".encode()
        m = MinHash(num_perm=128, seed=MINHASH_SEED, scheme=MINHASH_SCHEME)
        m.update_batch(doc)
        found = ours.query(minhash.signature(doc, 128, MINHASH_SEED))
        assert sorted(found) == sorted(theirs.query(m))
        assert len(found) == len(set(found))
        hits += len(found)
    assert hits > 0 and len(ours) == len(docs)


def test_lsh_rejects_duplicate_and_missing_keys() -> None:
    lsh = minhash.MinHashLSH(0.8, 128)
    sig = minhash.signature([b"a", b"b"], 128, MINHASH_SEED)
    lsh.insert("k", sig)
    assert "k" in lsh and lsh.query(sig) == ["k"]
    with pytest.raises(ValueError, match="already exists"):
        lsh.insert("k", sig)
    lsh.remove("k")
    assert lsh.query(sig) == [] and "k" not in lsh
    with pytest.raises(ValueError, match="does not exist"):
        lsh.remove("k")
    with pytest.raises(ValueError, match="128 values"):
        lsh.query(sig[:64])

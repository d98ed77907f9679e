"""The approximate tiers of the gallery index: recall, exact scores, adds and removals without a
rebuild, persistence with the generation check, and the policy settings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vigil.core.config import Settings
from vigil.core.errors import InputError
from vigil.storage.ann import IndexPolicy
from vigil.storage.index import FaissIndex, IndexKey, IndexStore

D = 128
N = 20_000


def clustered(n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors, each a noisy copy of its own random centre (the benchmark's templates)."""
    v = rng.standard_normal((n, D), dtype=np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    v += rng.standard_normal((n, D), dtype=np.float32) * (0.38 / np.sqrt(D))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def near(vectors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    q = vectors + rng.standard_normal(vectors.shape, dtype=np.float32) * (0.38 / np.sqrt(D))
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    vectors = clustered(N, rng)
    ids = np.arange(N, dtype=np.int64) * 5 + 11  # ids that are not row numbers
    queries = near(vectors[rng.choice(N, 500, replace=False)], rng)
    return ids, vectors, queries


IVF = IndexPolicy(approximate_above=5_000, nprobe=48)
SQ8 = IndexPolicy(approximate_above=2_000, compressed_above=5_000, nprobe=48)


@pytest.mark.parametrize(("policy", "kind"), [(IVF, "ivf"), (SQ8, "ivf-sq8")])
def test_recall_at_1_of_exact_and_exact_scores(data, policy: IndexPolicy, kind: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ids, vectors, queries = data
    exact = FaissIndex.build(D, (ids, vectors))
    approx = FaissIndex.build(D, (ids, vectors), policy, tmp_path / "g.vec")
    assert exact.kind == "exact" and approx.kind == kind and len(approx) == N
    truth, _ = exact.search(queries, 10)
    found, scores = approx.search(queries, 10)
    assert np.mean(found[:, 0] == truth[:, 0]) >= 0.99
    rows = (found - 11) // 5
    dots = np.einsum("qkd,qd->qk", vectors[rows], queries)
    np.testing.assert_allclose(scores, dots, atol=1e-5)  # the threshold decision sees exact scores
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first
    every, _ = approx.search(queries, 10, exact=True)
    assert (every[:, 0] == truth[:, 0]).all()


def test_queries_near_a_threshold_are_searched_again_exhaustively(data) -> None:  # type: ignore[no-untyped-def]
    ids, vectors, _ = data
    rng = np.random.default_rng(1)
    hard = near(near(vectors[:300], rng), rng)  # further from their source: IVF misses some
    exact = FaissIndex.build(D, (ids, vectors))
    approx = FaissIndex.build(D, (ids, vectors), IndexPolicy(approximate_above=5_000, nprobe=2))
    truth = exact.search(hard, 5)
    plain = approx.search(hard, 5)
    assert (plain[0][:, 0] != truth[0][:, 0]).any()  # the approximate pass alone misses some
    rechecked = approx.search(hard, 5, recheck_above=-1.0)  # every query is "near the threshold"
    assert (rechecked[0] == truth[0]).all()
    np.testing.assert_allclose(rechecked[1], truth[1], atol=1e-5)
    floor = float(np.median(truth[1][:, 0]))
    some = approx.search(hard, 5, recheck_above=floor)
    above = plain[1][:, 0] >= floor
    assert (some[0][above] == truth[0][above]).all() and (some[0][~above] == plain[0][~above]).all()


@pytest.mark.parametrize("policy", [IVF, SQ8])
def test_adds_and_removals_keep_the_trained_index(data, policy: IndexPolicy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ids, vectors, _ = data
    index = FaissIndex.build(D, (ids[:15_000], vectors[:15_000]), policy, tmp_path / "g.vec")
    trained = index.approximate
    assert trained is not None
    index.add(ids[15_000:], vectors[15_000:])
    gone = ids[:3_000]
    index.remove(gone)
    assert index.approximate is trained and len(index) == N - 3_000  # no rebuild
    found, _ = index.search(vectors[:3_000], 5)  # the removed templates' own vectors
    assert not np.isin(found, gone).any()
    found, scores = index.search(vectors[15_000:16_000], 1)  # added after training
    assert np.mean(found[:, 0] == ids[15_000:16_000]) >= 0.99
    index.add(gone[:100], vectors[:100])  # re-added
    found, scores = index.search(vectors[:100], 1)
    assert np.mean(found[:, 0] == gone[:100]) >= 0.99
    assert np.allclose(scores[found[:, 0] == gone[:100], 0], 1.0, atol=1e-5)
    index.add(ids[5_000:5_001], vectors[6_000:6_001])  # an id re-added with a new vector replaces it
    found, scores = index.search(vectors[5_000:5_001], 1)
    assert scores[0, 0] < 0.9  # its old vector is gone
    found, scores = index.search(vectors[6_000:6_001], 2)
    assert ids[5_000] in found[0] and np.allclose(scores[0], 1.0, atol=1e-5)


def test_removed_templates_leave_no_copy_in_the_store_file(data, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ids, vectors, _ = data
    store = IndexStore(tmp_path, SQ8)
    key = IndexKey(2, "m")
    store.rebuild(key, 1, D, (ids, vectors))
    vec_file = tmp_path / "g2-m.vec"
    assert vectors[10].astype("<f4").tobytes() in vec_file.read_bytes()
    store.apply(key, (1, 2), D, (ids[:0], vectors[:0]), ids[10:11], _refuse)  # an erasure
    kept = vec_file.read_bytes()
    assert vectors[10].astype("<f4").tobytes() not in kept
    assert vectors[11].astype("<f4").tobytes() in kept
    found, _ = IndexStore(tmp_path, SQ8).get(key, 2, D, _refuse).search(vectors[10:12], 1)
    assert found[0, 0] != ids[10] and found[1, 0] == ids[11]


def test_exact_index_moves_up_a_tier_past_the_threshold(data, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ids, vectors, _ = data
    index = FaissIndex(D, policy=SQ8, store_path=tmp_path / "g.vec")
    index.add(ids[:2_000], vectors[:2_000])
    assert index.kind == "exact"
    index.add(ids[2_000:4_000], vectors[2_000:4_000])
    assert index.kind == "ivf"
    index.add(ids[4_000:], vectors[4_000:])
    assert index.kind == "ivf-sq8" and len(index) == N
    index.remove(ids[: N - 100])  # removals never move it down
    assert index.kind == "ivf-sq8" and len(index) == 100
    found, _ = index.search(vectors[N - 100 :], 1)
    assert (found[:, 0] == ids[N - 100 :]).all()


def _refuse() -> tuple[np.ndarray, np.ndarray]:
    raise AssertionError("the saved index should have been used")


@pytest.mark.parametrize(
    ("policy", "files"), [(IVF, {".faiss", ".json"}), (SQ8, {".faiss", ".json", ".vec"})]
)
def test_saved_approximate_index_round_trips_at_its_generation(
    data, policy: IndexPolicy, files, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    ids, vectors, queries = data
    key = IndexKey(3, "dlib-resnet-v1")
    store = IndexStore(tmp_path, policy)
    built = store.rebuild(key, 7, D, (ids, vectors))
    assert {p.suffix for p in tmp_path.iterdir()} == files
    before = built.search(queries, 10)
    store.apply(key, (7, 8), D, (ids[:1] + 1, vectors[:1]), ids[1:2], _refuse)

    reopened = IndexStore(tmp_path, policy).get(key, 8, D, _refuse)  # another process, same generation
    assert reopened.kind == built.kind and reopened is not built and len(reopened) == N
    after = reopened.search(queries, 10)
    same = (after[0] == before[0]) | np.isin(after[0], [ids[0] + 1]) | np.isin(before[0], [ids[1]])
    assert same.mean() > 0.99
    assert ids[1] not in after[0]

    calls = []
    moved_on = IndexStore(tmp_path, policy).get(key, 9, D, lambda: calls.append(1) or (ids, vectors))
    assert calls == [1] and len(moved_on) == N  # a newer catalog generation: rebuilt from the catalog
    exact = IndexStore(tmp_path).get(key, 9, D, lambda: (ids, vectors))  # policy changed: rebuilt exact
    assert exact.kind == "exact"


def test_index_files_are_sealed_and_the_store_kept_in_memory_when_encrypted(data, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from vigil.core import crypto

    ids, vectors, queries = data
    crypto.configure(crypto.new_key())
    try:
        key = IndexKey(1, "m")
        store = IndexStore(tmp_path, SQ8)
        built = store.rebuild(key, 1, D, (ids, vectors))
        assert built.kind == "ivf-sq8"
        assert {p.suffix for p in tmp_path.iterdir()} == {".faiss", ".json"}  # no plaintext vector file
        assert crypto.is_encrypted((tmp_path / "g1-m.faiss").read_bytes())
        again = IndexStore(tmp_path, SQ8).get(key, 1, D, _refuse)
        assert (again.search(queries, 5)[0] == built.search(queries, 5)[0]).all()
    finally:
        crypto.configure(None)


def test_wrong_dimension_and_bad_settings_are_refused(data) -> None:  # type: ignore[no-untyped-def]
    ids, vectors, _ = data
    index = FaissIndex.build(D, (ids, vectors), IVF)
    with pytest.raises(InputError, match="128-dimensional"):
        index.search(np.ones((1, D + 1), np.float32), 1)
    with pytest.raises(InputError, match="ids for"):
        index.add(ids[:2], vectors[:3])
    assert len(index) == N  # nothing changed
    with pytest.raises(ValueError, match="index_nprobe"):
        Settings(index_nprobe=0)
    with pytest.raises(ValueError, match="index_approximate_above"):
        Settings(index_approximate_above=0)

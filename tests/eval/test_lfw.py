"""LFW pair files, the 10-fold and TAR@FAR computations, and the evaluation on real images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vigil.core.config import Settings
from vigil.core.errors import InputError
from vigil.eval.lfw import (
    LfwResult,
    best_threshold,
    evaluate_lfw,
    find_image_root,
    image_path,
    kfold_accuracy,
    plot_roc,
    read_pairs,
    tar_at_far,
)

# -- pair files -----------------------------------------------------------------------------------


def test_read_view1_dev_test(shared_data: Path) -> None:
    path = shared_data / "lfw-dev" / "pairsDevTest.txt"
    pairs = read_pairs(path)
    assert len(pairs) == 1000
    same = [p for p in pairs if p.same]
    assert len(same) == 500
    assert pairs[0].name1 == pairs[0].name2 == "Abdullah_Gul"
    assert (pairs[0].index1, pairs[0].index2) == (13, 14)
    assert all(p.name1 != p.name2 for p in pairs[500:])
    # 10 folds, each with 50 matched and 50 mismatched pairs, contiguous in file order.
    for f in range(10):
        in_fold = [p for p in pairs if p.fold == f]
        assert sum(p.same for p in in_fold) == 50
        assert sum(not p.same for p in in_fold) == 50
    assert [p.fold for p in pairs[:500]] == sorted(p.fold for p in pairs[:500])
    root = shared_data / "lfw-dev"
    for p in pairs[::97]:
        for img in p.paths(root):
            assert img.is_file()


def test_read_view2(tmp_path: Path) -> None:
    lines = ["2\t2"]
    for f in range(2):
        lines += [f"Alice\t{f + 1}\t{f + 3}", f"Bob_Jones\t{f + 1}\t2"]
        lines += [f"Alice\t{f + 1}\tBob_Jones\t{f + 5}", f"Carol\t1\tDave\t{f + 10}"]
    path = tmp_path / "pairs.txt"
    path.write_text("\n".join(lines) + "\n")
    pairs = read_pairs(path)
    assert len(pairs) == 8
    assert [p.fold for p in pairs] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert [p.same for p in pairs] == [True, True, False, False] * 2
    assert (pairs[4].name1, pairs[4].index1, pairs[4].name2, pairs[4].index2) == ("Alice", 2, "Alice", 4)
    assert (pairs[7].name1, pairs[7].index1, pairs[7].name2, pairs[7].index2) == ("Carol", 1, "Dave", 11)
    assert pairs[7].paths(tmp_path) == (
        tmp_path / "Carol" / "Carol_0001.jpg",
        tmp_path / "Dave" / "Dave_0011.jpg",
    )
    assert image_path(tmp_path, "Bob_Jones", 2) == tmp_path / "Bob_Jones" / "Bob_Jones_0002.jpg"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "ten\nA 1 2\n",
        "1\nA 1 2\n",  # too few lines
        "1\nA 1\nA 1 B 2\n",  # matched line with two fields
        "1\nA 1 2\nA 1 B\n",  # mismatched line with three fields
        "1\nA x 2\nA 1 B 2\n",
    ],
)
def test_read_pairs_rejects_bad_files(tmp_path: Path, text: str) -> None:
    path = tmp_path / "pairs.txt"
    path.write_text(text)
    with pytest.raises(InputError):
        read_pairs(path)


def test_read_pairs_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        read_pairs(tmp_path / "nope.txt")


# -- metrics against brute force ------------------------------------------------------------------


def _synthetic(seed: int, n: int = 600) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    same = np.zeros(n, bool)
    same[: n // 2] = True
    scores = np.where(same, rng.normal(0.6, 0.15, n), rng.normal(0.2, 0.15, n)).round(3)  # with ties
    folds = np.concatenate([np.repeat(np.arange(10), n // 20)] * 2)
    return scores, same, folds


def _brute_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """Lowest of the most accurate candidates: min, midpoints of distinct neighbours, above max."""
    u = np.unique(scores)
    candidates = [u[0], *((u[1:] + u[:-1]) / 2), np.nextafter(u[-1], np.inf)]
    best_acc, best_t = -1.0, 0.0
    for t in candidates:
        acc = np.mean((scores >= t) == same)
        if acc > best_acc:
            best_acc, best_t = acc, t
    return float(best_t)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_kfold_accuracy_matches_brute_force(seed: int) -> None:
    scores, same, folds = _synthetic(seed)
    accs, thresholds = kfold_accuracy(scores, same, folds)
    expected_accs = []
    for f in range(10):
        test = folds == f
        t = _brute_threshold(scores[~test], same[~test])
        expected_accs.append(np.mean((scores[test] >= t) == same[test]))
        assert thresholds[f] == pytest.approx(t, abs=1e-12)
    np.testing.assert_allclose(accs, expected_accs, atol=1e-12)
    assert 0.8 < np.mean(accs) < 1.0


def test_best_threshold_separable() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.7, 0.8])
    same = np.array([False, False, False, True, True])
    t, acc = best_threshold(scores, same)
    assert acc == 1.0
    assert t == pytest.approx(0.5)


@pytest.mark.parametrize("seed", [0, 5])
@pytest.mark.parametrize("far", [0.1, 0.01, 0.001])
def test_tar_at_far_matches_brute_force(seed: int, far: float) -> None:
    rng = np.random.default_rng(seed)
    genuine = rng.normal(0.6, 0.15, 700)
    impostor = rng.normal(0.1, 0.15, 1500)
    scores = np.concatenate([genuine, impostor])
    same = np.concatenate([np.ones(700, bool), np.zeros(1500, bool)])
    tar, t = tar_at_far(scores, same, far)
    # Brute force: the lowest impostor score at which the share of impostors above stays <= far.
    ok = [v for v in impostor if np.mean(impostor > v) <= far]
    t_bf = min(ok)
    assert t == t_bf
    assert tar == np.mean(genuine > t_bf)
    assert np.mean(impostor > t) <= far


def test_plot_roc_writes_png(tmp_path: Path) -> None:
    scores, same, _ = _synthetic(0)
    out = plot_roc(scores, same, tmp_path / "plots" / "roc.png", title="synthetic")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- real images ----------------------------------------------------------------------------------


def test_evaluate_small_view2(shared_data: Path, tmp_path: Path) -> None:
    """10 folds of one matched and one mismatched pair taken from the dev test file."""
    root = shared_data / "lfw-dev"
    dev = read_pairs(root / "pairsDevTest.txt")
    matched = [p for p in dev if p.same][::50][:10]
    mismatched = [p for p in dev if not p.same][::50][:10]
    lines = ["10\t1"]
    for a, b in zip(matched, mismatched, strict=True):
        lines.append(f"{a.name1}\t{a.index1}\t{a.index2}")
        lines.append(f"{b.name1}\t{b.index1}\t{b.name2}\t{b.index2}")
    pairs_file = tmp_path / "pairs.txt"
    pairs_file.write_text("\n".join(lines) + "\n")
    settings = Settings(data_dir=tmp_path / "data")
    calls: list[tuple[int, int]] = []
    result = evaluate_lfw(settings, root, pairs_file, workers=1, progress=lambda d, n: calls.append((d, n)))
    assert result.protocol == "10-fold"
    assert result.pairs == 20
    assert len(result.fold_accuracies) == 10
    assert result.accuracy >= 0.9
    assert set(result.tar_at_far) == {"0.01", "0.001"}
    assert len(result.scores) == len(result.same) == 20
    assert calls[-1][0] == calls[-1][1]
    assert result.model == "dlib-resnet-v1"
    dumped = json.loads(result.model_dump_json())
    assert "scores" not in dumped and "same" not in dumped
    full = result.to_dict(include_scores=True)
    assert len(full["scores"]) == 20
    assert LfwResult.model_validate(full).scores == result.scores

    # Train/test on the same tiny set: the threshold comes from the train pairs.
    tt = evaluate_lfw(settings, root, pairs_file, train_pairs_file=pairs_file, workers=1)
    assert tt.protocol == "train/test"
    assert tt.std == 0.0
    assert tt.accuracy >= result.accuracy - 1e-9


@pytest.mark.slow
def test_lfw_dev_test_accuracy(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    root = shared_data / "lfw-dev"
    settings = Settings(data_dir=tmp_path_factory.mktemp("vigil-data"))
    result = evaluate_lfw(settings, root, root / "pairsDevTest.txt", workers=2)
    assert result.protocol == "10-fold"
    assert result.pairs == 1000
    # The foundation issue's bar: >= 99.0 % on DevTest. Measured 0.991 +- 0.010 (68-point chips on HOG
    # boxes, the central face at any detector confidence; 1 image without a face).
    assert result.accuracy >= 0.990, result.model_dump()
    assert result.tar_at_far["0.01"] >= 0.98


def test_image_root_found_one_folder_down(shared_data: Path) -> None:
    """The parent of the image folder (as the LFW archive unpacks) finds the images below it."""
    pairs = read_pairs(shared_data / "lfw-dev" / "pairsDevTest.txt")
    assert find_image_root(shared_data, pairs) == shared_data / "lfw-dev"
    assert find_image_root(shared_data / "lfw-dev", pairs) == shared_data / "lfw-dev"
    # Nowhere to be found: the root is kept, so the error names the folder the user gave.
    assert find_image_root(shared_data / "people", pairs) == shared_data / "people"

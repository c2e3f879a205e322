import pytest

from voxnas.data.splits import SplitError, fold_split, load_or_make_splits, make_folds

IDS = [f"case{i:02d}" for i in range(13)]


def test_folds_disjoint_complete_seeded():
    folds = make_folds(IDS, 4, seed=0)
    flat = [c for f in folds for c in f]
    assert sorted(flat) == sorted(IDS) and len(flat) == len(set(flat))
    assert sorted(len(f) for f in folds) == [3, 3, 3, 4]
    assert make_folds(IDS, 4, 0) == folds and make_folds(IDS, 4, 1) != folds


@pytest.mark.parametrize("ratio", [(2, 1), (4, 1)])
def test_train_val_ratio_inside_fold(ratio):
    folds = make_folds([f"c{i}" for i in range(40)], 4, seed=0)
    for k in range(4):
        s = fold_split(folds, k, ratio, seed=0)
        assert not (set(s.train) & set(s.val)) and not (set(s.trainval) & set(s.test))
        assert sorted(s.trainval + s.test) == sorted(c for f in folds for c in f)
        assert len(s.train) == len(s.val) * ratio[0] // ratio[1]  # 30 -> 20:10 or 24:6


def test_fold_out_of_range_is_an_error():
    folds = make_folds(IDS, 4, 0)
    with pytest.raises(SplitError, match="fold 4 does not exist: there are 4 folds"):
        fold_split(folds, 4, (2, 1), 0)
    with pytest.raises(SplitError):
        fold_split(folds, -1, (2, 1), 0)


def test_saved_and_reused(tmp_path):
    p = tmp_path / "folds.json"
    a = load_or_make_splits(p, IDS, 4, 0)
    text = p.read_text()
    assert load_or_make_splits(p, IDS, 4, 0) == a and p.read_text() == text
    b = load_or_make_splits(p, IDS[:-1], 4, 0)  # the dataset changed: new folds
    assert sorted(c for f in b for c in f) == sorted(IDS[:-1])

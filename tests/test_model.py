"""LinearClassifier: folded scores equal the explicit formula; files round-trip; bad files are refused."""
from __future__ import annotations

import pickle
import zipfile
import re

import numpy as np
import pytest

from linclf.errors import ModelFileError
from linclf.core.model import FORMAT_VERSION, LinearClassifier, save_npz_atomic
from linclf.core.preprocess import fit

CLASSES = tuple("abcdefghij")


@pytest.fixture
def model() -> LinearClassifier:
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (200, 3072), dtype=np.uint8)
    prep = fit(X, std=True)
    W = (rng.standard_normal((10, 3073)) * 0.01).astype(np.float32)
    return LinearClassifier(W, prep, CLASSES, "softmax", "seed: 0\n", {"test_accuracy": 0.5})


def test_scores_equal_explicit_preprocessing(model):
    X = np.random.default_rng(1).integers(0, 256, (1500, 3072), dtype=np.uint8)  # more than one block
    explicit = model.prep.transform(X, np.float64) @ model.W.astype(np.float64).T
    np.testing.assert_allclose(model.scores(X), explicit, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(model.predict(X), model.scores(X).argmax(1))


def test_wrong_input_width_is_refused(model):
    with pytest.raises(ValueError, match="3072"):
        model.scores(np.zeros((2, 100), dtype=np.uint8))


def test_repr_is_one_short_line(model):
    assert repr(model) == ("LinearClassifier(loss='softmax', W=float32 (10, 3073), features='pixels', "
                           "10 classes: a, b, c, ...)")


def test_save_load_round_trip(tmp_path, model):
    path = model.save(tmp_path / "m.npz")
    back = LinearClassifier.load(path)
    np.testing.assert_array_equal(back.W, model.W)
    np.testing.assert_array_equal(back.prep.mean, model.prep.mean)
    np.testing.assert_array_equal(back.prep.scale, model.prep.scale)
    assert back.classes == CLASSES and back.loss == "softmax"
    assert back.metrics == {"test_accuracy": 0.5} and back.config_yaml == "seed: 0\n"
    with np.load(path, allow_pickle=False) as npz:        # nothing in it needs pickle
        assert int(npz["format_version"]) == FORMAT_VERSION


def _variant(model, tmp_path, **changes):
    arrays = model.to_arrays()
    for k, v in changes.items():
        if v is None:
            arrays.pop(k)
        else:
            arrays[k] = v
    return save_npz_atomic(tmp_path / "bad.npz", arrays)


@pytest.mark.parametrize("changes, message", [
    (dict(format_version=np.array(99)), "format version 99"),
    (dict(format_version=None), "no format_version"),
    (dict(W=None), "field W is missing"),
    (dict(W=np.zeros((10, 3000), np.float32)), "columns but the preprocessing"),
    (dict(W=np.zeros(5, np.float32)), "2-D float"),
    (dict(W=np.full((10, 3073), np.inf, np.float32)), "non-finite"),
    (dict(classes=np.array(["a", "b"])), "10 names"),
    (dict(loss=np.array("hinge")), "unknown loss"),
])
def test_malformed_models_are_refused(tmp_path, model, changes, message):
    with pytest.raises(ModelFileError, match=message):
        LinearClassifier.load(_variant(model, tmp_path, **changes))


def test_missing_truncated_and_pickled_files(tmp_path, model):
    with pytest.raises(ModelFileError, match="no model file"):
        LinearClassifier.load(tmp_path / "nope.npz")
    with pytest.raises(ModelFileError, match="is a folder"):
        LinearClassifier.load(tmp_path)
    good = model.save(tmp_path / "good.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(good[: len(good) // 2])
    with pytest.raises(ModelFileError, match="truncated or corrupt|not a linclf model"):
        LinearClassifier.load(tmp_path / "cut.npz")
    (tmp_path / "p.npz").write_bytes(pickle.dumps({"W": model.W}))
    with pytest.raises(ModelFileError, match="pickle"):
        LinearClassifier.load(tmp_path / "p.npz")
    np.savez(tmp_path / "obj.npz", W=np.array([{"a": 1}], dtype=object), format_version=np.array(1))
    with pytest.raises(ModelFileError, match="pickle"):
        LinearClassifier.load(tmp_path / "obj.npz")
    np.save(tmp_path / "single.npy", model.W)
    with pytest.raises(ModelFileError, match=r"is not a zip/npz file \(it holds one array, an \.npy\)"):
        LinearClassifier.load(tmp_path / "single.npy")
    with zipfile.ZipFile(tmp_path / "junk.npz", "w") as z:      # a zip whose member is not an .npy
        z.writestr("W.npy", b"not an array")
    with pytest.raises(ModelFileError, match="its member W is not a NumPy array"):
        LinearClassifier.load(tmp_path / "junk.npz")


def test_failed_save_keeps_the_previous_file(tmp_path, model, monkeypatch):
    path = model.save(tmp_path / "m.npz")
    before = path.read_bytes()

    def broken_savez(fh, **arrays):
        fh.write(b"PK\x03\x04 half a zip")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="No space left on device"):
        model.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]     # no temporary left behind


def test_scores_with_mirror_rows_are_the_mean_of_both(model):
    rng = np.random.default_rng(2)
    X, Xm = (rng.integers(0, 256, (300, 3072), dtype=np.uint8) for _ in range(2))
    W64 = model.W.astype(np.float64)
    explicit = 0.5 * (model.prep.transform(X, np.float64) + model.prep.transform(Xm, np.float64)) @ W64.T
    np.testing.assert_allclose(model.scores(X, Xm), explicit, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(model.predict(X, Xm), explicit.argmax(1))
    with pytest.raises(ValueError, match=r"X_mirror must have X's shape \(300, 3072\), got \(299, 3072\)"):
        model.scores(X, Xm[:-1])


def test_saving_to_a_folder_says_to_give_a_file_name_before_writing(tmp_path, model, monkeypatch):
    folder = tmp_path / "nc"
    folder.mkdir()
    monkeypatch.setattr(np, "savez", lambda fh, **arrays: pytest.fail("written before the check"))
    with pytest.raises(IsADirectoryError, match=f"^{re.escape(str(folder))} is a folder; give a file name such as "
                                                f"{re.escape(str(folder / 'model.npz'))}$"):
        model.save(folder)
    assert [p.name for p in tmp_path.iterdir()] == ["nc"] and list(folder.iterdir()) == []   # no temporary


def test_saving_into_a_missing_folder_names_the_file_not_a_temporary(tmp_path, model):
    with pytest.raises(FileNotFoundError, match=r"No such file or directory: '.*/gone/m\.npz'$"):
        model.save(tmp_path / "gone" / "m.npz")

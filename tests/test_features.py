"""Learned features end to end: config keys, the feature cache and its faults, model files, eval, predict."""
from __future__ import annotations

import errno
import json
import re
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

import linclf

from conftest import invoke, one_line_error, optional, train_cli
from linclf.config import load_config
from linclf.core.model import LinearClassifier, save_npz_atomic
from linclf.errors import ConfigError, LinclfWarning
from linclf.features import cache
from linclf.features.kmeans import KMeansFeatures

KMEANS = """\
data:
  num_val: 50
features:
  kind: kmeans
  k: 8
  patches: 2000
  iterations: 3
model:
  loss: softmax
  reg: 0.001
optimizer:
  update: adam
  lr: 1.0e-3
  batch_size: 32
  epochs: 2
"""

HOG = KMEANS.replace("  kind: kmeans\n  k: 8\n  patches: 2000\n  iterations: 3\n", "  kind: hog_color\n")


@pytest.fixture
def km_config(tmp_path: Path) -> Path:
    p = tmp_path / "km.yaml"
    p.write_text(KMEANS)
    return p


def _cache_files(data_dir: Path) -> dict[str, bytes]:
    root = data_dir / "features-cache"
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _feature_files(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "features-cache").glob("kmeans-*/*.npy"))


# ------------------------------------------------------------------ config


def test_default_is_pixels_and_every_constant_is_a_key():
    f = load_config().features
    assert f.kind == "pixels"
    assert (f.patch, f.stride, f.patches, f.norm_eps, f.zca_eps, f.k, f.iterations, f.encoder, f.alpha, f.pool,
            f.power) == (6, 1, 400_000, 10.0, 0.1, 1600, 50, "triangle", 0.25, 2, 1.0)


@pytest.mark.parametrize("overrides,match", [
    (["features.kind=kmeans", "features.patch=33"], r"features\.patch"),
    (["features.kind=kmeans", "features.patch=20", "features.pool=14"], r"features\.pool: .*13x13"),
    (["features.kind=kmeans", "features.stride=4", "features.pool=8"], r"features\.pool"),
    (["features.kind=kmeans", "features.k=500", "features.patches=100"], r"features\.k: 500 .*features\.patches"),
    (["features.kind=npz"], r"features\.path"),
    (["features.kind=npz", "features.path=x.npz", "data.flip=true"], r"data\.flip: kind npz .* cannot be mirrored"),
    (["features.path=x.npz"], r"features\.path: only kind npz reads a feature file, and features\.kind is pixels"),
    (["features.kind=hog_color", "features.cell=40"], r"features\.cell"),
    (["features.kind=kmeans", "features.encoder=hard"], r"features\.encoder"),
    (["features.kind=kmeans", "features.power=0"], r"features\.power: expected a number > 0, got 0"),
])
def test_settings_that_do_not_fit_are_config_errors(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, [f"{o}" for o in overrides])


def test_config_error_exits_2_naming_the_key(tmp_path, km_config, learnable_data_dir):
    res = train_cli(km_config, learnable_data_dir, tmp_path / "run", "--set", "features.patch=40")
    assert res.exit_code == 2
    assert "features.patch" in one_line_error(res, only=True)
    res = train_cli(km_config, learnable_data_dir, tmp_path / "run", "--set", "features.k=5000")
    assert res.exit_code == 2 and "features.k" in one_line_error(res, only=True)


# ------------------------------------------------------- train / eval / predict


def test_kmeans_run_then_eval_and_predict_reuse_the_stored_extractor(tmp_path, km_config, learnable_data_dir,
                                                                     monkeypatch):
    res = train_cli(km_config, learnable_data_dir, tmp_path / "run", "--json")
    assert res.exit_code == 0, res.output
    metrics = json.loads(res.stdout)
    assert metrics["test_accuracy"] > 0.8               # separable data stays separable in centroid space
    model = LinearClassifier.load(tmp_path / "run" / "model.npz")
    assert model.features_kind == "kmeans" and model.W.shape == (10, 4 * 8 + 1)
    assert len(_feature_files(learnable_data_dir)) == 3   # train, val, test

    # eval reuses the cached test features: extraction must not run again
    def no_transform(self, X, out=None, **kw):
        raise AssertionError("features were extracted again")

    before = _cache_files(learnable_data_dir)
    monkeypatch.setattr(KMeansFeatures, "transform", no_transform)
    res = invoke("eval", "--model", tmp_path / "run" / "model.npz", "--data-dir", learnable_data_dir, "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["accuracy"] == pytest.approx(metrics["test_accuracy"])
    assert _cache_files(learnable_data_dir) == before
    monkeypatch.undo()

    pil = optional("PIL.Image")
    from conftest import make_arrays

    img = make_arrays(per_batch=80, n_test=100, seed=1, separable=True).X_test[3]
    pil.fromarray(img.reshape(3, 32, 32).transpose(1, 2, 0)).save(tmp_path / "x.png")
    res = invoke("predict", "--model", tmp_path / "run" / "model.npz", tmp_path / "x.png", "--json")
    assert res.exit_code == 0, res.output
    assert len(json.loads(res.stdout)["images"][0]["top"]) == 3


def test_second_run_and_features_command_reuse_the_cache(tmp_path, km_config, learnable_data_dir, monkeypatch):
    res = invoke("features", "--config", km_config, "--data-dir", learnable_data_dir, "--json", "--quiet")
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["splits"] == {"train": [350, 32], "val": [50, 32], "test": [100, 32]}
    before = _cache_files(learnable_data_dir)

    def fail(*a, **k):
        raise AssertionError("rebuilt although cached")

    monkeypatch.setattr(KMeansFeatures, "fit", fail)
    monkeypatch.setattr(KMeansFeatures, "transform", fail)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LinclfWarning)
        res = train_cli(km_config, learnable_data_dir, tmp_path / "run")
    assert res.exit_code == 0, res.output
    assert "warning" not in res.output
    assert _cache_files(learnable_data_dir) == before


def test_flip_average_mirrors_are_built_ahead_and_reused(tmp_path, km_config, learnable_data_dir, monkeypatch):
    """model.flip_average: `features` also caches the features of the val and test images' mirrors; train and
    eval then extract nothing."""
    flip = ("--set", "model.flip_average=true")
    res = invoke("features", "--config", km_config, "--data-dir", learnable_data_dir, "--json", "--quiet", *flip)
    assert res.exit_code == 0, res.output
    assert len(_feature_files(learnable_data_dir)) == 5          # train, val, test, and the mirrors of val and test
    before = _cache_files(learnable_data_dir)

    def fail(*a, **k):
        raise AssertionError("rebuilt although cached")

    monkeypatch.setattr(KMeansFeatures, "fit", fail)
    monkeypatch.setattr(KMeansFeatures, "transform", fail)
    res = train_cli(km_config, learnable_data_dir, tmp_path / "run", "--json", *flip)
    assert res.exit_code == 0, res.output
    res_eval = invoke("eval", "--model", tmp_path / "run" / "model.npz", "--data-dir", learnable_data_dir, "--json")
    assert res_eval.exit_code == 0, res_eval.output
    assert json.loads(res_eval.stdout)["accuracy"] == json.loads(res.stdout.strip().splitlines()[-1])["test_accuracy"]
    assert _cache_files(learnable_data_dir) == before


def test_power_is_cached_apart_stored_in_the_model_and_applied_by_eval(tmp_path, km_config, learnable_data_dir):
    res = train_cli(km_config, learnable_data_dir, tmp_path / "one", "--json")
    assert res.exit_code == 0, res.output
    one = {p.name: np.load(p) for p in _feature_files(learnable_data_dir)}
    res = train_cli(km_config, learnable_data_dir, tmp_path / "half", "--json", "--set", "features.power=0.5")
    assert res.exit_code == 0, res.output
    half = {p.name: np.load(p) for p in _feature_files(learnable_data_dir) if p.name in one and
            not any(np.array_equal(np.load(p), a) for a in one.values())}
    assert sorted(half) == sorted(one)                   # the same splits, a cache entry of their own
    for name in one:                                     # both stored as float16: 2**-11 relative rounding each
        np.testing.assert_allclose(half[name], np.sqrt(one[name].astype(np.float32)), rtol=2e-3, atol=1e-3)
    model = LinearClassifier.load(tmp_path / "half" / "model.npz")
    assert float(model.features_arrays["power"]) == 0.5
    res_eval = invoke("eval", "--model", tmp_path / "half" / "model.npz", "--data-dir", learnable_data_dir, "--json")
    assert res_eval.exit_code == 0, res_eval.output
    assert json.loads(res_eval.stdout)["accuracy"] == pytest.approx(json.loads(res.stdout)["test_accuracy"])


@pytest.mark.parametrize("how", ["flag", "env"])
def test_workers_set_the_extractor_threads(tmp_path, km_config, learnable_data_dir, monkeypatch, how):
    seen = []
    fit, transform = KMeansFeatures.fit, KMeansFeatures.transform

    def spy_fit(self, X, y=None):
        seen.append(("fit", self.threads))
        return fit(self, X, y)

    def spy_transform(self, X, out=None, **kw):
        seen.append(("transform", self.threads))
        return transform(self, X, out, **kw)

    monkeypatch.setattr(KMeansFeatures, "fit", spy_fit)
    monkeypatch.setattr(KMeansFeatures, "transform", spy_transform)
    if how == "env":
        monkeypatch.setenv("LINCLF_WORKERS", "1")
        args = ["features"]
    else:
        monkeypatch.setenv("LINCLF_WORKERS", "2")           # the flag wins over the environment
        args = ["--workers", "1", "features"]
    res = invoke(*args, "--config", km_config, "--data-dir", learnable_data_dir, "--quiet")
    assert res.exit_code == 0, res.output
    assert seen == [("fit", 1), ("transform", 1), ("transform", 1), ("transform", 1)]
    seen.clear()
    res = invoke(*args[:-1], "train", "--config", km_config, "--data-dir", learnable_data_dir,
                 "--set", "data.num_val=40", "--out", tmp_path / "run", "--quiet")
    assert res.exit_code == 0, res.output
    assert seen and all(threads == 1 for _, threads in seen)
    seen.clear()
    res = invoke(*args[:-1], "gradcheck", "--config", km_config, "--data-dir", learnable_data_dir,
                 "--set", "features.k=9", "--quiet")                          # features not cached yet
    assert res.exit_code == 0, res.output
    assert seen == [("fit", 1), ("transform", 1)]


def test_features_command_on_pixels_is_a_usage_error(tmp_path, learnable_data_dir):
    res = invoke("features", "--data-dir", learnable_data_dir)
    assert res.exit_code == 2 and "features.kind is pixels" in one_line_error(res, only=True)


def test_hog_color_run(tmp_path, learnable_data_dir):
    p = tmp_path / "hog.yaml"
    p.write_text(HOG)
    res = train_cli(p, learnable_data_dir, tmp_path / "run", "--json")
    assert res.exit_code == 0, res.output
    model = LinearClassifier.load(tmp_path / "run" / "model.npz")
    assert model.features_kind == "hog_color" and model.W.shape == (10, 154 + 1)
    res = invoke("eval", "--model", tmp_path / "run" / "model.npz", "--data-dir", learnable_data_dir)
    assert res.exit_code == 0, res.output



# ------------------------------------------------------------- listing and clearing the cache


def _build_with_mirrors(km_config, data_dir) -> None:
    res = invoke("features", "--config", km_config, "--data-dir", data_dir, "--quiet", "--json",
                 "--set", "model.flip_average=true")
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["mirrors"] == {"val": info["splits"]["val"], "test": info["splits"]["test"]}   # listed too


def _listing(data_dir) -> dict:
    res = invoke("features", "--list", "--data-dir", data_dir, "--json")
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def _age(entry: dict, days: float) -> None:
    """Make an entry look last used ``days`` ago."""
    import os
    import time

    when = time.time() - days * 86400
    for p in entry["paths"]:
        os.utime(p, (when, when))


def test_features_list_names_every_entry_its_images_size_and_settings(tmp_path, km_config, learnable_data_dir):
    _build_with_mirrors(km_config, learnable_data_dir)
    listing = _listing(learnable_data_dir)
    root = learnable_data_dir / "features-cache"
    assert listing["cache"] == str(root)
    assert listing["bytes"] == sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    features = [e for e in listing["entries"] if e["what"] == "features"]
    assert sorted(e["images"] for e in features) == sorted(
        ["the train split", "the val split", "the test split", "the mirror images of the val split",
         "the mirror images of the test split"])
    assert {tuple(e["shape"]) for e in features} == {(350, 32), (50, 32), (100, 32)}
    assert all(e["settings"]["k"] == 8 and e["settings"]["encoder"] == "triangle" and e["settings"]["seed"] == 0
               for e in features)
    [fit] = [e for e in listing["entries"] if e["what"] == "extractor"]
    assert fit["settings"]["k"] == 8 and fit["settings"]["patches"] == 2000 and fit["kind"] == "kmeans"
    res = invoke("features", "--list", "--data-dir", learnable_data_dir)
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[0].startswith(f"{root}: 6 entries, ")
    assert "kmeans features of the mirror images of the test split (100 x 32): k=8 patch=6" in res.output
    assert "kmeans extractor, fitted: iterations=3 k=8" in res.output


def test_an_empty_or_missing_cache_lists_as_empty(tmp_path):
    res = invoke("features", "--list", "--data-dir", tmp_path)
    assert res.exit_code == 0, res.output
    assert res.output == f"{tmp_path.absolute() / 'features-cache'}: empty\n"
    assert not (tmp_path / "features-cache").exists()


def test_a_cache_hit_marks_the_entry_used(tmp_path, km_config, learnable_data_dir):
    _build_with_mirrors(km_config, learnable_data_dir)
    for e in _listing(learnable_data_dir)["entries"]:
        _age(e, 10)
    _run(km_config, learnable_data_dir, tmp_path / "run")            # no mirrors: those stay unused
    used = {e["images"] if e["what"] == "features" else "fit": e["last_used"]
            for e in _listing(learnable_data_dir)["entries"]}
    import time

    today = time.strftime("%Y-%m-%d")
    assert {k for k, v in used.items() if v.startswith(today)} == {"fit", "the train split", "the val split",
                                                                  "the test split"}
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", v) for v in used.values())   # ISO 8601


def test_clear_unused_days_deletes_only_the_stale_entries_then_clear_deletes_all(tmp_path, km_config,
                                                                                  learnable_data_dir):
    _build_with_mirrors(km_config, learnable_data_dir)
    root = learnable_data_dir / "features-cache"
    (root / "notes.txt").write_text("mine")                       # not the cache's: never touched
    (root / "my-arrays").mkdir()
    (root / "my-arrays" / "0123456789abcdef.npy").write_bytes(b"mine")
    entries = _listing(learnable_data_dir)["entries"]
    stale = [e for e in entries if e.get("images", "").startswith("the mirror images")]
    for e in stale:
        _age(e, 40)
    kept = {p: Path(p).read_bytes() for e in entries if e not in stale for p in e["paths"]}
    res = invoke("features", "--clear", "--unused-days", "30", "--data-dir", learnable_data_dir)
    assert res.exit_code == 0, res.output
    assert res.output.startswith(f"{root}: removed 2 of 6 entries, ")
    assert not any(Path(p).exists() for e in stale for p in e["paths"])
    assert {p: Path(p).read_bytes() for p in kept} == kept
    res = invoke("features", "--clear", "--data-dir", learnable_data_dir, "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == {"cache": str(root), "removed": 4, "bytes_freed": sum(
        len(b) for b in kept.values()), "kept": 0}
    assert sorted(p.name for p in root.iterdir()) == ["my-arrays", "notes.txt"]
    assert (root / "my-arrays" / "0123456789abcdef.npy").read_bytes() == b"mine"


def test_clear_leaves_a_write_that_may_be_in_progress(tmp_path):
    import os
    import time

    folder = tmp_path / "features-cache" / "kmeans-0123456789abcdef"
    folder.mkdir(parents=True)
    fresh, old = folder / ".aa.npy.x1.tmp", folder / ".bb.npy.x2.tmp"
    fresh.write_bytes(b"0" * 10)
    old.write_bytes(b"0" * 20)
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    res = invoke("features", "--list", "--data-dir", tmp_path)
    assert res.output.count("an unfinished write") == 2, res.output
    res = invoke("features", "--clear", "--data-dir", tmp_path)
    assert res.exit_code == 0, res.output
    assert "removed 1 of 2 entries, 20 B freed" in res.output
    assert fresh.exists() and not old.exists()


@pytest.mark.parametrize("args,match", [
    (("--list", "--clear"), "--list and --clear do different things: give one of them"),
    (("--list", "--unused-days", "3"), "--unused-days goes with --clear"),
    (("--unused-days", "3"), "--unused-days goes with --clear"),
    (("--clear", "--unused-days", "-1"), "Invalid value for '--unused-days'"),
])
def test_bad_cache_options_exit_2(tmp_path, args, match):
    res = invoke("features", "--data-dir", tmp_path, *args)
    assert res.exit_code == 2
    assert match in one_line_error(res)



def test_each_extraction_bar_names_its_images(tmp_path, km_config, learnable_data_dir, monkeypatch):
    """A cold run's five k-means bars say which split (or its mirror images) each one extracts."""
    import linclf.features.kmeans as km

    labels = []
    real = km.Bar
    monkeypatch.setattr(km, "Bar", lambda enabled, total, *a, desc="", **k: labels.append(desc) or real(
        enabled, total, *a, desc=desc, **k))
    _build_with_mirrors(km_config, learnable_data_dir)
    assert labels == ["patches", "k-means", "kmeans features of the train split", "kmeans features of the val split",
                      "kmeans features of the test split", "kmeans features of the mirror images of the val split",
                      "kmeans features of the mirror images of the test split"]


# ------------------------------------------------------------- cache faults


def _run(km_config, data_dir, out, *extra):
    res = train_cli(km_config, data_dir, out, *extra)
    assert res.exit_code == 0, res.output
    return res


def _notices(res) -> list[str]:
    return [line for line in res.output.splitlines() if line.startswith("warning:")]


def test_a_cached_fit_serves_other_encoders_and_pooling_but_not_another_k(tmp_path, km_config, learnable_data_dir,
                                                                           monkeypatch):
    _run(km_config, learnable_data_dir, tmp_path / "a")
    fits = []
    real = KMeansFeatures.fit
    monkeypatch.setattr(KMeansFeatures, "fit", lambda self, X, y=None: (fits.append(self.k), real(self, X))[1])
    encode = ["--set", "features.encoder=soft", "--set", "features.split=true", "--set", "features.pool=3",
              "--set", "features.power=0.5", "--json"]
    res = _run(km_config, learnable_data_dir, tmp_path / "b", *encode)
    assert fits == []                                                    # the k-means fit of run a, reused
    model = LinearClassifier.load(tmp_path / "b" / "model.npz")
    arrays = model.features_arrays
    assert (str(arrays["encoder"]), bool(arrays["split"]), int(arrays["pool"]), float(arrays["power"])) == \
        ("soft", True, 3, 0.5)
    k = int(arrays["k"])
    assert model.W.shape == (10, 2 * 9 * k + 1)
    fresh = _run(km_config, learnable_data_dir, tmp_path / "c", *encode, "--set", "features.cache=false")
    assert fits == [k]                                                   # no cache: fitted here, same seed
    assert json.loads(res.stdout)["test_accuracy"] == json.loads(fresh.stdout)["test_accuracy"]
    np.testing.assert_array_equal(LinearClassifier.load(tmp_path / "c" / "model.npz").W, model.W)
    _run(km_config, learnable_data_dir, tmp_path / "d", "--set", f"features.k={k + 1}")
    assert fits == [k, k + 1]                                            # another k: another fit


def test_a_truncated_cache_file_is_rebuilt_with_a_notice(tmp_path, km_config, learnable_data_dir):
    _run(km_config, learnable_data_dir, tmp_path / "a")
    victim = max(_feature_files(learnable_data_dir), key=lambda p: p.stat().st_size)
    good = victim.read_bytes()
    victim.write_bytes(good[: len(good) // 2])
    res = _run(km_config, learnable_data_dir, tmp_path / "b")
    notices = _notices(res)
    assert len(notices) == 1 and "rebuilding" in notices[0] and victim.name in notices[0]
    assert victim.read_bytes() == good


def test_a_cache_file_with_flipped_bytes_is_rebuilt(tmp_path, km_config, learnable_data_dir):
    _run(km_config, learnable_data_dir, tmp_path / "a")
    victim = _feature_files(learnable_data_dir)[0]
    good = bytearray(victim.read_bytes())
    bad = good.copy()
    bad[-3] ^= 0xFF
    victim.write_bytes(bytes(bad))
    res = _run(km_config, learnable_data_dir, tmp_path / "b")
    assert "checksum" in _notices(res)[0]
    assert victim.read_bytes() == bytes(good)


def test_a_cache_entry_of_other_settings_or_other_images_is_rebuilt(tmp_path, km_config, learnable_data_dir):
    _run(km_config, learnable_data_dir, tmp_path / "a")
    files = _feature_files(learnable_data_dir)
    # another setting's entry copied over this one's name (npy and its record)
    _run(km_config, learnable_data_dir, tmp_path / "b", "--set", "features.k=9")
    other = [p for p in _feature_files(learnable_data_dir) if p.parent != files[0].parent]
    target = files[0]
    source = next(p for p in other if p.name == target.name)     # the same images under other settings
    good = target.read_bytes()
    target.write_bytes(source.read_bytes())
    target.with_suffix(".json").write_text(source.with_suffix(".json").read_text())
    res = _run(km_config, learnable_data_dir, tmp_path / "c")
    notices = _notices(res)
    assert len(notices) == 1 and "other settings or from other images" in notices[0]
    assert target.read_bytes() == good
    # other images' entry under this name
    target.write_bytes(files[1].read_bytes())
    target.with_suffix(".json").write_text(files[1].with_suffix(".json").read_text())
    res = _run(km_config, learnable_data_dir, tmp_path / "d")
    assert "other images" in _notices(res)[0]
    assert target.read_bytes() == good


def test_a_corrupt_cached_extractor_is_refitted_with_a_notice(tmp_path, km_config, learnable_data_dir):
    _run(km_config, learnable_data_dir, tmp_path / "a")
    fitted = next((learnable_data_dir / "features-cache").glob("fit-kmeans-*.npz"))
    whole = fitted.read_bytes()
    for bad, run in ((whole[:100], "b"), (b"garbage\n" * 10, "c")):
        fitted.write_bytes(bad)
        res = _run(km_config, learnable_data_dir, tmp_path / run)
        assert any(re.search(r"is not usable \(it is not a whole \.npz file: truncated or overwritten\); "
                             r"fitting it again", n) for n in _notices(res)), _notices(res)


def test_a_full_disk_during_a_cache_write_keeps_the_previous_cache(tmp_path, km_config, learnable_data_dir,
                                                                    monkeypatch):
    _run(km_config, learnable_data_dir, tmp_path / "a")
    victim = _feature_files(learnable_data_dir)[0]
    victim.write_bytes(victim.read_bytes()[:-10])           # stale: the next run rewrites it
    before = _cache_files(learnable_data_dir)

    def full(fd, size):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache, "_reserve", full)
    res = train_cli(km_config, learnable_data_dir, tmp_path / "b")
    assert res.exit_code == 1
    err = one_line_error(res)
    assert "No space left on device" in err and "previous cache is untouched" in err
    assert _cache_files(learnable_data_dir) == before       # no temporary files left, nothing replaced


def test_a_cache_write_reserves_the_whole_file_up_front(tmp_path, km_config, learnable_data_dir, monkeypatch):
    reserved = []
    real = cache._reserve
    monkeypatch.setattr(cache, "_reserve", lambda fd, size: (reserved.append(size), real(fd, size)))
    _run(km_config, learnable_data_dir, tmp_path / "a")
    sizes = sorted(p.stat().st_size for p in _feature_files(learnable_data_dir))
    assert reserved and sorted(reserved) == sizes           # a full disk fails there, not in a page fault later


def test_a_cache_file_is_hashed_once_when_written_and_once_per_warm_read(tmp_path, km_config, learnable_data_dir,
                                                                         monkeypatch):
    hashed = []
    real = cache._file_checksum
    monkeypatch.setattr(cache, "_file_checksum", lambda path: (hashed.append(path.name), real(path))[1])
    _run(km_config, learnable_data_dir, tmp_path / "a")
    files = sorted(p.name for p in _feature_files(learnable_data_dir))
    assert len(files) == 3 and sorted(hashed) == files       # written: its checksum is computed once, not re-read
    hashed.clear()
    _run(km_config, learnable_data_dir, tmp_path / "b")
    assert sorted(hashed) == files                           # warm: every file verified before it is trusted


def test_ctrl_c_during_extraction_leaves_nothing_half_written(tmp_path, km_config, learnable_data_dir,
                                                             monkeypatch):
    real = KMeansFeatures.transform
    calls = []

    def interrupted(self, X, out=None, **kw):
        calls.append(len(X))
        if len(calls) == 2:                     # the second split: after writing half of its rows
            half = len(X) // 2
            out[:half] = real(self, X[:half])
            raise KeyboardInterrupt
        return real(self, X, out=out)

    monkeypatch.setattr(KMeansFeatures, "transform", interrupted)
    res = train_cli(km_config, learnable_data_dir, tmp_path / "a")
    assert res.exit_code == 130
    assert "interrupted" in res.output and "Traceback" not in res.output
    root = learnable_data_dir / "features-cache"
    assert len(_feature_files(learnable_data_dir)) == 1        # the finished split only
    assert not [p for p in root.rglob("*") if p.name.endswith(".tmp")]
    monkeypatch.undo()
    _run(km_config, learnable_data_dir, tmp_path / "b")          # continues: builds the two missing splits
    assert len(_feature_files(learnable_data_dir)) == 3


def test_ctrl_c_during_kmeans_fit_exits_130_and_rerun_starts_clean(tmp_path, km_config, learnable_data_dir,
                                                                    monkeypatch):
    def interrupted(self, X, y=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(KMeansFeatures, "fit", interrupted)
    res = train_cli(km_config, learnable_data_dir, tmp_path / "a")
    assert res.exit_code == 130
    root = learnable_data_dir / "features-cache"
    assert not root.exists() or not [p for p in root.rglob("*") if p.is_file()]
    monkeypatch.undo()
    _run(km_config, learnable_data_dir, tmp_path / "b")


def test_cache_off_writes_nothing(tmp_path, km_config, learnable_data_dir):
    _run(km_config, learnable_data_dir, tmp_path / "a", "--set", "features.cache=false")
    assert not (learnable_data_dir / "features-cache").exists()


# -------------------------------------------------------------- model files


@pytest.fixture
def km_model(tmp_path, km_config, learnable_data_dir) -> Path:
    _run(km_config, learnable_data_dir, tmp_path / "run")
    return tmp_path / "run" / "model.npz"


def test_a_model_with_wrongly_shaped_centroids_is_refused_in_one_line(tmp_path, km_model, learnable_data_dir):
    with np.load(km_model, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    key = next(k for k in arrays if k.startswith("feat_") and "centroid" in k)
    arrays[key] = arrays[key][:, :-1]
    bad = save_npz_atomic(tmp_path / "bad.npz", arrays)
    res = invoke("eval", "--model", bad, "--data-dir", learnable_data_dir)
    assert res.exit_code == 1
    assert "extractor is malformed" in one_line_error(res, only=True)
    optional("PIL.Image")
    res = invoke("predict", "--model", bad, tmp_path / "whatever.png")
    assert res.exit_code == 1 and "extractor is malformed" in one_line_error(res, only=True)


def test_a_version_1_model_file_still_loads(tmp_path, learnable_data_dir):
    config = tmp_path / "px.yaml"
    config.write_text(KMEANS.replace("  kind: kmeans\n  k: 8\n  patches: 2000\n  iterations: 3\n", "  kind: pixels\n"))
    _run(config, learnable_data_dir, tmp_path / "run")
    with np.load(tmp_path / "run" / "model.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    # the format of linclf before learned features: no features_kind, version 1, no features section
    import yaml

    raw = yaml.safe_load(str(arrays["config_yaml"]))
    del raw["features"]
    arrays["config_yaml"] = np.array(yaml.safe_dump(raw))
    del arrays["features_kind"]
    arrays["format_version"] = np.array(1)
    old = save_npz_atomic(tmp_path / "v1.npz", arrays)
    model = LinearClassifier.load(old)
    assert model.features_kind == "pixels" and model.features_arrays == {}
    res = invoke("eval", "--model", old, "--data-dir", learnable_data_dir, "--json")
    assert res.exit_code == 0, res.output


def test_plot_of_a_kmeans_run_writes_centroids(tmp_path, km_model, learnable_data_dir):
    optional("matplotlib")
    res = invoke("plot", km_model.parent, "--data-dir", learnable_data_dir)
    assert res.exit_code == 0, res.output
    assert (km_model.parent / "centroids.png").is_file()
    assert not (km_model.parent / "templates.png").exists()


def test_centroid_images_un_whiten_and_normalise():
    from linclf.plots.centroids import centroid_images

    rng = np.random.default_rng(0)
    p, d = 2, 12
    A = rng.standard_normal((d, d)) + 3 * np.eye(d)
    mean = rng.standard_normal(d)
    X = rng.standard_normal((5, d))
    Z = (X - mean) @ A                                    # centroids in whitened space
    img = centroid_images(Z, p, A, mean)
    want = X.reshape(5, 3, p, p).transpose(0, 2, 3, 1)
    want = (want - want.min(axis=(1, 2, 3), keepdims=True)) / np.ptp(want, axis=(1, 2, 3), keepdims=True)
    np.testing.assert_allclose(img, want, atol=1e-9)
    assert img.min() == 0.0 and img.max() == 1.0


@pytest.mark.parametrize("of, title", [(None, "5 k-means"), (5, "5 k-means"), (1600, "5 of the 1600 k-means")])
def test_the_centroids_title_says_how_many_of_them_are_shown(of, title):
    optional("matplotlib")
    from linclf.plots.centroids import centroids_figure

    fig = centroids_figure(np.full((5, 2, 2, 3), 0.5), of, subtitle="run")
    (suptitle,) = [t.get_text() for t in fig.texts]           # Figure.get_suptitle is matplotlib >= 3.8
    assert suptitle.startswith(f"{title} centroids (un-whitened")


# ------------------------------------------------------------------ npz kind


def _write_npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def _probe(n=300, m=100, D=20, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((3, D)) * 3
    y_train, y_test = rng.integers(0, 3, n), rng.integers(0, 3, m)
    X_train = (centers[y_train] + rng.standard_normal((n, D))).astype(np.float32)
    X_test = (centers[y_test] + rng.standard_normal((m, D))).astype(np.float32)
    return dict(X_train=X_train, y_train=y_train, X_test=X_test, y_test=y_test,
                classes=np.array(["a", "b", "c"]))


def test_linear_probe_on_a_feature_file(tmp_path):
    f = _write_npz(tmp_path / "emb.npz", **_probe())
    cfg = tmp_path / "probe.yaml"
    cfg.write_text(KMEANS.replace("  kind: kmeans\n  k: 8\n  patches: 2000\n  iterations: 3\n",
                                  f"  kind: npz\n  path: {f}\n"))
    res = train_cli(cfg, tmp_path / "nodata", tmp_path / "run", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["test_accuracy"] > 0.9
    model = tmp_path / "run" / "model.npz"
    assert LinearClassifier.load(model).classes == ("a", "b", "c")
    res = invoke("eval", "--model", model, "--json")
    assert res.exit_code == 0, res.output
    again = invoke("eval", "--model", model, "--json", "--data-dir", tmp_path / "elsewhere")
    assert again.exit_code == 0 and json.loads(again.stdout) == json.loads(res.stdout)
    assert again.stderr == f"warning: --data-dir is not used: this model's rows come from its feature file, " \
                           f"features.path {f}\n"
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["feature_file"]["bytes"] == f.stat().st_size and metrics["linclf_version"] == linclf.__version__
    arrays = _probe()
    _write_npz(f, **{**arrays, "y_test": arrays["y_test"][::-1].copy(), "note": np.arange(3)})   # re-exported
    res = invoke("eval", "--model", model, "--json")
    assert res.exit_code == 0 and res.stderr.startswith(f"warning: features.path {f} changed since {model} was "
                                                        "trained (its size or time differs)")
    res = invoke("features", "--config", cfg, "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["splits"]["test"] == [100, 20]
    assert json.loads(res.stdout)["mirrors"] == {}
    res = invoke("predict", "--model", model, tmp_path / "cat.png")
    assert res.exit_code == 2
    assert "precomputed features" in one_line_error(res, only=True)


@pytest.mark.parametrize("change,match", [
    (dict(X_train=None), "missing X_train"),
    (dict(X_test=np.zeros((100, 19), np.float32)), "X_train has 20 columns, X_test 19"),
    (dict(y_train=np.zeros(299, np.int64)), "y_train must be 300 integer labels"),
    (dict(y_test=np.full(100, 3)), "label 3 is out of range for the 3 classes"),
    (dict(y_train=np.full(300, -1)), "labels must be >= 0"),
    (dict(y_train=np.zeros(300)), "y_train must be 300 integer labels"),
    (dict(X_train=np.full((300, 20), np.nan, np.float32)), "X_train holds NaN"),
    (dict(X_train=np.zeros((300, 20), dtype="U1")), "X_train must be a non-empty 2-D numeric array"),
    (dict(classes=np.array([1, 2, 3])), "classes must be a 1-D array"),
    (dict(X_train=np.array([{"a": 1}] * 300, dtype=object)), "pickled objects"),
    (dict(X_train=np.full((300, 20), 1e39)), "X_train holds values beyond float32's range (3.4e38)"),
    (dict(y_train=np.array(["a", "b", "c"] * 100)), "y_train holds names (<U1), not class indices 0..C-1; number "
                                                    "them with names, y = np.unique(np.concatenate([y_train, y_test])"),
    (dict(classes=None, y_train=np.arange(300) % 3 * 1000, y_test=np.arange(100) % 3 * 1000),
     "the labels run up to 2000 but take only 3 values, and labels are class indices 0..C-1; number them"),
    (dict(classes=np.array(["a", "b", "a"])), "classes names 'a' twice"),
])
def test_bad_feature_files_are_refused_in_one_line(tmp_path, change, match):
    arrays = _probe()
    arrays.update(change)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    f = _write_npz(tmp_path / "emb.npz", **arrays)
    cfg = tmp_path / "probe.yaml"
    cfg.write_text(f"features:\n  kind: npz\n  path: {f}\n")
    res = train_cli(cfg, tmp_path / "d", tmp_path / "run")
    assert res.exit_code == 1
    assert match in one_line_error(res, only=True)


def test_eval_numbers_the_confusion_columns_of_names_alike_in_five_letters(tmp_path):
    arrays = {**_probe(), "classes": np.array(["n01440764", "n01443537", "n01484850"])}
    f = _write_npz(tmp_path / "emb.npz", **arrays)
    cfg = tmp_path / "probe.yaml"
    cfg.write_text(f"features:\n  kind: npz\n  path: {f}\ndata:\n  num_val: 50\n")
    assert train_cli(cfg, tmp_path / "d", tmp_path / "run").exit_code == 0
    res = invoke("eval", "--model", tmp_path / "run")
    assert res.exit_code == 0, res.output
    header, *rows = res.stdout.splitlines()[2:6]
    assert header.split() == ["class", "accuracy", "0", "1", "2"]
    assert [r.split()[:2] for r in rows] == [["0", "n01440764"], ["1", "n01443537"], ["2", "n01484850"]]


def test_a_class_sorted_feature_file_is_split_at_random(tmp_path):
    """Rows dumped class by class: data.num_train and the validation rows still hold every class."""
    arrays = _probe()
    order = np.argsort(arrays["y_train"], kind="stable")
    arrays["X_train"], arrays["y_train"] = arrays["X_train"][order], arrays["y_train"][order]
    f = _write_npz(tmp_path / "emb.npz", **arrays)
    cfg = tmp_path / "probe.yaml"
    cfg.write_text(f"features:\n  kind: npz\n  path: {f}\ndata:\n  num_train: 100\n  num_val: 60\n")
    res = train_cli(cfg, tmp_path / "d", tmp_path / "run", "--json")
    assert res.exit_code == 0, res.output
    metrics = json.loads(res.stdout)
    assert metrics["val_accuracy"] > 0.9 and metrics["test_accuracy"] > 0.9      # the first 100 rows: class a only
    res = invoke("eval", "--model", tmp_path / "run" / "model.npz", "--split", "val", "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["accuracy"] == metrics["val_accuracy"]


@pytest.mark.parametrize("shift, classes, message", [
    (1, None, "1 of the 4 classes has no training rows (0); labels are class indices counted from 0"),
    (0, np.array(["a", "b", "c", "d", "e"]), "2 of the 5 classes have no training rows (d, e); labels are"),
])
def test_classes_without_training_rows_are_trained_with_a_warning(tmp_path, shift, classes, message):
    arrays = _probe()
    arrays["y_train"], arrays["y_test"] = arrays["y_train"] + shift, arrays["y_test"] + shift   # 1-based labels
    arrays["classes"] = classes
    f = _write_npz(tmp_path / "emb.npz", **{k: v for k, v in arrays.items() if v is not None})
    cfg = tmp_path / "probe.yaml"
    cfg.write_text(f"features:\n  kind: npz\n  path: {f}\ndata:\n  num_val: 50\n")
    res = train_cli(cfg, tmp_path / "d", tmp_path / "run", "--json")
    assert res.exit_code == 0, res.output
    warned = [line for line in res.stderr.splitlines() if line.startswith("warning:")]
    assert len(warned) == 1 and warned[0].startswith(f"warning: {f}: {message}")
    assert json.loads(res.stdout)["test_accuracy"] > 0.9


def test_a_feature_file_under_home_is_found_by_every_command(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    _write_npz(tmp_path / "emb.npz", **_probe())
    cfg = tmp_path / "probe.yaml"
    cfg.write_text("features:\n  kind: npz\n  path: ~/emb.npz\ndata:\n  num_val: 50\n")
    for command in (("features", "--config", cfg, "--quiet"), ("gradcheck", "--config", cfg, "--checks", "3")):
        res = invoke(*command)
        assert res.exit_code == 0, res.output


@pytest.mark.parametrize("content, why", [
    (b"", "(empty (0 bytes))"),
    (b"\x93NUMPY\x01\x00", "(it holds one array, an .npy)"),
    (b"x = 1\n", "(it starts with b'x = 1\\n')"),
])
def test_a_feature_file_that_is_no_npz_says_what_it_is(tmp_path, content, why):
    f = tmp_path / "emb.npz"
    f.write_bytes(content)
    cfg = tmp_path / "probe.yaml"
    cfg.write_text(f"features:\n  kind: npz\n  path: {f}\n")
    res = train_cli(cfg, tmp_path / "d", tmp_path / "run")
    assert res.exit_code == 1
    assert f"features.path: {f} is not an .npz {why}; a feature file is an .npz holding X_train" in \
        one_line_error(res, only=True)


def test_a_feature_file_with_a_member_that_is_no_array(tmp_path):
    f = _write_npz(tmp_path / "emb.npz", **{k: v for k, v in _probe().items() if k != "classes"})
    with zipfile.ZipFile(f, "a") as z:
        z.writestr("classes.npy", b"garbage")
    cfg = tmp_path / "probe.yaml"
    cfg.write_text(f"features:\n  kind: npz\n  path: {f}\n")
    res = train_cli(cfg, tmp_path / "d", tmp_path / "run")
    assert res.exit_code == 1 and "classes is not a NumPy array (.npy member)" in one_line_error(res, only=True)


def test_a_missing_or_truncated_feature_file(tmp_path):
    cfg = tmp_path / "probe.yaml"
    cfg.write_text(f"features:\n  kind: npz\n  path: {tmp_path / 'nope.npz'}\n")
    res = train_cli(cfg, tmp_path / "d", tmp_path / "run")
    assert res.exit_code == 2 and "no feature file" in one_line_error(res, only=True)
    cfg.write_text("features:\n  kind: npz\n  path: nope.npz\n")
    res = train_cli(cfg, tmp_path / "d", tmp_path / "run")
    assert res.exit_code == 2
    assert re.search(r"no feature file at nope\.npz \(relative to the working directory /", one_line_error(res))
    cfg.write_text(f"features:\n  kind: npz\n  path: {tmp_path}\n")
    res = train_cli(cfg, tmp_path / "d", tmp_path / "run")
    assert res.exit_code == 2 and "is a folder, not an .npz file" in one_line_error(res)
    f = _write_npz(tmp_path / "emb.npz", **_probe())
    f.write_bytes(f.read_bytes()[:500])
    cfg.write_text(f"features:\n  kind: npz\n  path: {f}\n")
    res = train_cli(cfg, tmp_path / "d", tmp_path / "run2")
    assert res.exit_code == 1 and "not a readable .npz" in one_line_error(res, only=True)


# ------------------------------------------------------------------ gradcheck


@pytest.fixture
def checked_rows(monkeypatch):
    """The rows X (batch, D) every gradient check of the test was run on."""
    import linclf.training.gradients as gradients

    seen = []
    real = gradients.check_loss

    def spy(W, X, y, **kwargs):
        seen.append(np.array(X))
        return real(W, X, y, **kwargs)

    monkeypatch.setattr(gradients, "check_loss", spy)
    return seen


def _gradcheck(cfg, *extra):
    res = invoke("gradcheck", "--config", cfg, "--json", "--quiet", *extra)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def _rows_of(A: np.ndarray, B: np.ndarray) -> bool:
    """Every row of A is a row of B (exactly)."""
    rows = {r.tobytes() for r in np.asarray(B, np.float64)}
    return all(r.tobytes() in rows for r in np.asarray(A, np.float64))


RAW = ["--set", "features.standardize=false", "--set", "preprocess.mean=false"]


def test_gradcheck_of_a_feature_file_checks_its_rows_standardised(tmp_path, checked_rows):
    arrays = _probe()
    f = _write_npz(tmp_path / "emb.npz", **arrays)
    cfg = tmp_path / "probe.yaml"
    cfg.write_text(KMEANS.replace("  kind: kmeans\n  k: 8\n  patches: 2000\n  iterations: 3\n",
                                  f"  kind: npz\n  path: {f}\n"))
    res = _gradcheck(cfg, "--batch", "40")
    assert res["passed"] and res["dim"] == 21 and res["features"] == "npz" and res["data"] == "feature file"
    assert res["expected_init_loss"] == pytest.approx(np.log(3))          # the file's 3 classes
    raw = _gradcheck(cfg, "--batch", "40", *RAW)
    standardised, plain = checked_rows
    assert standardised.shape == plain.shape == (40, 21)
    np.testing.assert_array_equal(plain[:, -1], 1.0)                      # the bias column
    assert _rows_of(plain[:, :-1], arrays["X_train"])                     # the file's training rows, as stored
    # the same rows standardised: per column (x - mean) / std of the training split, not pixels' mean only
    slope = (standardised[1, :-1] - standardised[0, :-1]) / (plain[1, :-1] - plain[0, :-1])
    np.testing.assert_allclose(standardised[:, :-1], (plain[:, :-1] - plain[0, :-1]) * slope + standardised[0, :-1],
                               rtol=1e-6, atol=1e-6)
    assert np.all(slope > 0) and not np.allclose(slope, 1.0)
    assert raw["dim"] == 21


def test_gradcheck_of_hog_color_checks_the_hog_rows_and_fills_the_cache(tmp_path, learnable_data_dir, checked_rows,
                                                                        monkeypatch):
    from linclf.data.cifar10 import load_cifar10
    from linclf.features.hog_color import HogColorFeatures

    cfg = tmp_path / "hog.yaml"
    cfg.write_text(HOG)
    res = _gradcheck(cfg, "--data-dir", learnable_data_dir, "--batch", "50", *RAW)
    D = HogColorFeatures().n_features
    assert D == 154 and res["dim"] == D + 1 and res["features"] == "hog_color" and res["data"] == "cifar-10"
    assert res["passed"]
    (X,) = checked_rows
    assert X.shape == (50, D + 1)                                         # features, not 3072 pixels + 1
    images = load_cifar10(learnable_data_dir).X_train
    hog = HogColorFeatures().transform(images).astype(cache.FEATURE_DTYPE)   # as the cache stores them
    assert _rows_of(X[:, :-1], hog)                                       # HOG rows of training images
    assert len(list((learnable_data_dir / "features-cache").glob("hog_color-*/*.npy"))) == 1   # the train split

    table = invoke("gradcheck", "--config", cfg, "--data-dir", learnable_data_dir, "--batch", "50", "--quiet")
    assert table.exit_code == 0 and "50 cifar-10 rows of 155 values (hog_color)" in table.output


def test_gradcheck_of_kmeans_builds_what_train_reuses(tmp_path, km_config, learnable_data_dir, checked_rows,
                                                      monkeypatch):
    res = _gradcheck(km_config, "--data-dir", learnable_data_dir)
    assert res["passed"] and res["dim"] == 4 * 8 + 1 and checked_rows[0].shape == (100, 33)
    assert len(_feature_files(learnable_data_dir)) == 1                   # the training split only
    train_features = _feature_files(learnable_data_dir)[0].read_bytes()

    def no_fit(self, X, y=None):
        raise AssertionError("the extractor was fitted again")

    extracted = []
    real = KMeansFeatures.transform

    def counting(self, X, out=None, **kw):
        extracted.append(len(X))
        return real(self, X, out, **kw)

    monkeypatch.setattr(KMeansFeatures, "fit", no_fit)                    # train takes the fitted extractor
    monkeypatch.setattr(KMeansFeatures, "transform", counting)
    res = train_cli(km_config, learnable_data_dir, tmp_path / "run")
    assert res.exit_code == 0, res.output
    assert extracted == [50, 100]                                         # val and test; train's were cached
    assert len(_feature_files(learnable_data_dir)) == 3
    assert train_features in [p.read_bytes() for p in _feature_files(learnable_data_dir)]


@pytest.mark.parametrize("kind,dim", [("hog_color", 155), ("kmeans", 4 * 8 + 1), ("pixels", 3073)])
def test_synthetic_gradcheck_has_the_feature_width(tmp_path, kind, dim, checked_rows):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(KMEANS.replace("  kind: kmeans\n", f"  kind: {kind}\n"))
    res = _gradcheck(cfg, "--synthetic", "--batch", "30")
    assert res["passed"] and res["dim"] == dim and res["data"] == "synthetic"
    assert checked_rows[0].shape == (30, dim)
    assert not (tmp_path / "features-cache").exists()


def test_a_failed_check_on_standardised_features_gives_no_standardisation_hint(tmp_path, learnable_data_dir,
                                                                              monkeypatch):
    import linclf.core.gradcheck as gradcheck

    real = gradcheck.linear_loss

    def wrong(loss, W, X, y, reg=0.0, delta=1.0):
        value, dW = real(loss, W, X, y, reg, delta)
        return value, 1.01 * dW

    monkeypatch.setattr(gradcheck, "linear_loss", wrong)
    cfg = tmp_path / "hog.yaml"
    cfg.write_text(HOG)
    for extra, hinted in (([], False), (["--set", "features.standardize=false"], True)):
        res = invoke("gradcheck", "--config", cfg, "--data-dir", learnable_data_dir, "--quiet", *extra)
        line = one_line_error(res)
        assert res.exit_code == 1 and "gradient check failed" in line and "reg part" not in line
        assert ("try --set preprocess.std=true" in line) is hinted


ROOT = Path(__file__).resolve().parent.parent
SMALL_KMEANS = ["--set", "features.k=8", "--set", "features.patches=2000", "--set", "features.iterations=3"]


# (config, its width, the width with k = 8): the k-means configs split the soft codes and pool 2x2
@pytest.mark.parametrize("name,dim,small_dim", [("hog_color", 155, 155), ("kmeans", 2 * 4 * 1600 + 1, 2 * 4 * 8 + 1),
                                                ("kmeans_large", 2 * 4 * 2400 + 1, 2 * 4 * 8 + 1)])
@pytest.mark.parametrize("method", ["centered", "forward"])
def test_gradcheck_passes_every_shipped_feature_config(name, dim, small_dim, method, learnable_data_dir):
    cfg = ROOT / "configs" / f"{name}.yaml"
    res = _gradcheck(cfg, "--synthetic", "--method", method)
    assert res["passed"] and res["dim"] == dim                            # the configured width, no data needed
    small = SMALL_KMEANS if name.startswith("kmeans") else []             # a k-means fit the tiny data allows
    res = _gradcheck(cfg, "--data-dir", learnable_data_dir, "--method", method, "--set", "data.num_val=50", *small)
    assert res["passed"] and res["dim"] == small_dim


# ---------------------------------------------------------------- Python API


def test_pipeline_of_extractor_and_classifier():
    optional("sklearn")
    from sklearn.pipeline import Pipeline

    from conftest import make_arrays
    from linclf import HogColorFeatures, KMeansFeatures as Exported, SoftmaxClassifier, mirrored

    assert Exported is KMeansFeatures
    fake = make_arrays(per_batch=40, n_test=50, seed=3, separable=True)
    for features in (KMeansFeatures(k=8, patches=2000, iterations=3), HogColorFeatures()):
        pipe = Pipeline([("features", features), ("clf", SoftmaxClassifier(epochs=5, lr=1e-3))])
        pipe.fit(fake.X_train, fake.y_train)
        assert pipe.predict(fake.X_test).shape == (50,)
        assert pipe.score(fake.X_test, fake.y_test) > 0.3
        # model.flip_average by hand, as the README shows it: the mean of the image's and its mirror's scores
        scores = pipe.decision_function(fake.X_test) + pipe.decision_function(mirrored(fake.X_test))
        flipped = pipe.predict(mirrored(fake.X_test))
        agree = pipe.predict(fake.X_test) == flipped
        assert np.array_equal(pipe.classes_[scores.argmax(axis=1)][agree], flipped[agree])


def test_grid_search_over_the_number_of_centroids_in_a_pipeline():
    optional("sklearn")
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import Pipeline

    from conftest import make_arrays
    from linclf import SoftmaxClassifier

    fake = make_arrays(per_batch=60, n_test=50, seed=4, separable=True)       # 300 uint8 rows
    features = KMeansFeatures(k=4, patches=500, iterations=2, stride=2, threads=1)      # a 14x14 map: quick
    pipe = Pipeline([("features", features), ("clf", SoftmaxClassifier(epochs=3, lr=1e-3))])
    assert pipe.get_params()["features__k"] == 4 and clone(pipe).get_params()["features__k"] == 4
    search = GridSearchCV(pipe, {"features__k": [2, 4], "features__pool": [1, 2]}, cv=2)
    search.fit(fake.X_train, fake.y_train)
    assert [p for p in search.cv_results_["params"]] == [
        {"features__k": 2, "features__pool": 1}, {"features__k": 2, "features__pool": 2},
        {"features__k": 4, "features__pool": 1}, {"features__k": 4, "features__pool": 2}]
    best = search.best_estimator_
    k, pool = search.best_params_["features__k"], search.best_params_["features__pool"]
    assert best.named_steps["features"].centroids_.shape == (k, 108)
    assert best.named_steps["clf"].n_features_in_ == pool * pool * k          # the grid reached the extractor
    assert not features.__sklearn_is_fitted__()                                # the search fitted clones
    assert search.predict(fake.X_test).shape == (50,)


def test_features_beyond_float16_are_refused_and_nothing_is_cached(tmp_path, km_config, learnable_data_dir,
                                                                   monkeypatch):
    real = KMeansFeatures.transform

    def huge(self, X, out=None, **kw):
        out = real(self, X, out=out, **kw)
        out[-1, -1] = np.inf                         # what 1e5 becomes in float16
        return out

    monkeypatch.setattr(KMeansFeatures, "transform", huge)
    res = train_cli(km_config, learnable_data_dir, tmp_path / "a")
    assert res.exit_code == 1
    assert "exceed float16's range (65,504) or are not finite; they cannot be cached" in one_line_error(res)
    assert _feature_files(learnable_data_dir) == []
    assert not list((learnable_data_dir / "features-cache").glob("kmeans-*/*.json"))


def test_a_probe_run_records_its_feature_file_absolute_and_evaluates_from_any_directory(tmp_path, monkeypatch):
    """A relative features.path is recorded absolute in the run, as data.dir is: eval works from elsewhere."""
    work, elsewhere = tmp_path / "cfg", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    f = _write_npz(work / "emb.npz", **_probe())
    (work / "probe.yaml").write_text(KMEANS.replace("  kind: kmeans\n  k: 8\n  patches: 2000\n  iterations: 3\n",
                                                    "  kind: npz\n  path: emb.npz\n"))
    monkeypatch.chdir(work)
    res = train_cli("probe.yaml", tmp_path / "d", tmp_path / "run")
    assert res.exit_code == 0, res.output
    monkeypatch.chdir(elsewhere)
    recorded = Path(load_config(tmp_path / "run" / "config.yaml").features.path)
    assert recorded.is_absolute() and recorded.resolve() == f.resolve()
    res = invoke("eval", "--model", tmp_path / "run", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["accuracy"] > 0.9


def test_the_best_config_of_a_kmeans_sweep_rebuilds_the_features_it_was_scored_on(tmp_path, km_config,
                                                                                   learnable_data_dir, monkeypatch):
    """The trials share the sweep's k-means fit (features.seed = the sweep's seed) while each trains with its own
    seed; best.yaml records both, so training it reuses that fit and scores what the sweep scored."""
    res = invoke("sweep", "--config", km_config, "--data-dir", learnable_data_dir, "--out", tmp_path / "sw",
                 "--quiet", "--param", "model.reg=grid:0.001,0.01", "--jobs", "1")
    assert res.exit_code == 0, res.output
    best = load_config(tmp_path / "sw" / "best.yaml")
    assert best.features.seed == load_config(km_config).seed and best.seed != best.features.seed
    scored = max(row["val_accuracy"] for row in json.loads((tmp_path / "sw" / "results.json").read_text()))

    def fail(*a, **k):
        raise AssertionError("k-means fitted again")

    monkeypatch.setattr(KMeansFeatures, "fit", fail)
    res = train_cli(tmp_path / "sw" / "best.yaml", learnable_data_dir, tmp_path / "run", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.strip().splitlines()[-1])["val_accuracy"] == scored


def test_a_sweep_of_a_feature_key_builds_each_trials_features_and_not_the_base_configs(tmp_path, km_config,
                                                                                       learnable_data_dir):
    res = invoke("sweep", "--config", km_config, "--data-dir", learnable_data_dir, "--out", tmp_path / "sw",
                 "--quiet", "--param", "features.k=grid:4,6", "--param", "model.reg=grid:0.001,0.01", "--jobs", "1")
    assert res.exit_code == 0, res.output
    root = learnable_data_dir / "features-cache"
    assert len(list(root.glob("fit-kmeans-*.npz"))) == 2                       # k = 4 and 6, not the config's 8
    widths = sorted({np.load(p, mmap_mode="r").shape[1] for p in _feature_files(learnable_data_dir)})
    assert widths == [16, 24]

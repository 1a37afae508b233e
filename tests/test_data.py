"""The data layer end to end: prepare (archive, folder, download), cache, load, splits, CLI."""
from __future__ import annotations

import errno
import http.server
import json
import os
import re
import shutil
import tarfile
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from linclf.data import cifar10 as data_mod
from linclf.cli import cli
from linclf.data.cifar10 import load_cifar10, prepare, resolve_data_dir
from linclf.data.splits import mirrored, split, with_mirrors
from linclf.data.extract import safe_extract
from linclf.data.layout import LAYOUTS, SOURCE_FILE
from linclf.errors import ChecksumError, ConfigError, DataError, LinclfWarning
from linclf.fsutil import LOCK_FILE

from conftest import binary_members, invoke, python_members, small_config, train_cli, write_tar_gz


def tree(root: Path) -> dict[str, bytes]:
    """Every file under root (relative path -> bytes)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def assert_same(d, fake) -> None:
    np.testing.assert_array_equal(d.X_train, fake.X_train)
    np.testing.assert_array_equal(d.y_train, fake.y_train)
    np.testing.assert_array_equal(d.X_test, fake.X_test)
    np.testing.assert_array_equal(d.y_test, fake.y_test)
    assert list(d.classes) == fake.classes
    assert d.X_train.dtype == np.uint8 and d.y_train.dtype == np.int64


@pytest.mark.parametrize("fmt", ["binary", "python"])
def test_load_from_archive_gives_the_exact_arrays(tmp_path, fake_archive, fake_cifar, fmt):
    path, md5 = fake_archive(fmt)
    with pytest.warns(LinclfWarning, match="not the official archive"):
        d = load_cifar10(tmp_path / "data", fmt, archive=path)
    assert_same(d, fake_cifar)
    # the second load comes from the memory-mapped cache
    d2 = load_cifar10(tmp_path / "data", fmt, archive=path, md5=md5)
    assert isinstance(d2.X_train, np.memmap)
    assert_same(d2, fake_cifar)


def test_both_formats_yield_identical_arrays(tmp_path, fake_archive):
    a = load_cifar10(tmp_path / "a", "binary", archive=fake_archive("binary")[0], md5=fake_archive("binary")[1])
    b = load_cifar10(tmp_path / "b", "python", archive=fake_archive("python")[0], md5=fake_archive("python")[1])
    for name in ("X_train", "y_train", "X_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.classes == b.classes


def test_format_is_taken_from_the_archive_itself(tmp_path, fake_archive):
    path, md5 = fake_archive("python")
    prepared = prepare(tmp_path / "data", "binary", archive=path, md5=md5)
    assert prepared.format == "python" and prepared.folder.name == "cifar-10-batches-py"


def test_prepare_is_idempotent_and_force_redoes(tmp_path, fake_archive):
    path, md5 = fake_archive("binary")
    first = prepare(tmp_path / "data", archive=path, md5=md5)
    assert first.status == "extracted"
    stamp = (first.folder / "data_batch_1.bin").stat().st_mtime_ns
    again = prepare(tmp_path / "data", archive=path, md5=md5)
    assert again.status == "already present"
    assert (first.folder / "data_batch_1.bin").stat().st_mtime_ns == stamp
    # without --archive the extraction in the data dir is used as it is
    assert prepare(tmp_path / "data", download=False).status == "already present"
    forced = prepare(tmp_path / "data", archive=path, md5=md5, force=True)
    assert forced.status == "extracted"


def test_an_archive_deleted_after_its_extraction_is_not_needed_again(tmp_path, fake_archive, fake_cifar):
    path, md5 = fake_archive("binary")
    prepare(tmp_path / "data", archive=path, md5=md5)
    path.unlink()
    again = prepare(tmp_path / "data", archive=path, md5=md5)      # as a run's recorded config names it
    assert again.status == "already present"
    assert_same(load_cifar10(tmp_path / "data", archive=path), fake_cifar)
    with pytest.raises(DataError, match=f"--archive {re.escape(str(path.with_name('other.tar.gz')))}: no such file"):
        prepare(tmp_path / "data", archive=path.with_name("other.tar.gz"))    # not what the data came from


def test_a_run_trained_from_an_archive_since_deleted_still_evaluates(tmp_path, fake_archive):
    path, md5 = fake_archive("binary")
    data = tmp_path / "data"
    r = invoke("train", "--config", "smoke", "--archive", path, "--set", f"data.md5={md5}", "--data-dir", data, "--out",
               tmp_path / "run", "--quiet", "--set", "optimizer.iterations=2", "--set", "data.num_val=10",
               "--set", "data.num_train=30")
    assert r.exit_code == 0, r.output
    path.unlink()
    r = invoke("eval", "--model", tmp_path / "run", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["split"] == "test"


def _in_thread(fn):
    """Start fn on a thread; the returned dict gets its "result" or its "error"."""
    out = {}

    def run():
        try:
            out["result"] = fn()
        except BaseException as e:               # re-raised by the test that reads it
            out["error"] = e

    out["thread"] = threading.Thread(target=run)
    out["thread"].start()
    return out


def _waiting_spy(monkeypatch, data):
    """An Event set when prepare() says it waits for another process's lock on ``data``."""
    waiting, real_warn = threading.Event(), warnings.warn

    def warn(message, *args, **kwargs):
        if str(message) == f"waiting for another linclf process preparing the data in {data}":
            waiting.set()
        return real_warn(message, *args, **kwargs)

    monkeypatch.setattr(data_mod.warnings, "warn", warn)      # the module's warnings is the global module
    return waiting


@pytest.mark.filterwarnings("ignore:waiting for another linclf process")
def test_a_second_process_preparing_the_same_folder_waits_and_finds_the_work_done(tmp_path, fake_archive,
                                                                                   monkeypatch):
    fcntl = pytest.importorskip("fcntl")
    path, md5 = fake_archive("binary")
    made = prepare(tmp_path / "elsewhere", archive=path, md5=md5).folder     # what the first process will make
    data = tmp_path / "data"
    data.mkdir()
    waiting = _waiting_spy(monkeypatch, data)
    with open(data / LOCK_FILE, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)                      # the first process holds the folder
        second = _in_thread(lambda: prepare(data, archive=path, md5=md5))
        assert waiting.wait(60)
        shutil.copytree(made, data / made.name)             # the first one's work, done while the second waits
    second["thread"].join(60)
    assert "error" not in second, second.get("error")
    assert second["result"].status == "already present"    # not downloaded or extracted a second time


@pytest.mark.filterwarnings("ignore:waiting for another linclf process")
def test_a_first_process_that_fails_in_a_fresh_folder_hands_the_lock_on_whole(tmp_path, fake_archive, monkeypatch):
    """The first removes the folder it made in vain; the waiting second must lock the folder it makes anew, so
    that a third is still kept out."""
    fcntl = pytest.importorskip("fcntl")
    path, md5 = fake_archive("binary")
    data = tmp_path / "fresh"
    waiting = _waiting_spy(monkeypatch, data)
    inside = [threading.Event(), threading.Event()]         # each process is hashing the archive, under the lock
    go = [threading.Event(), threading.Event()]
    calls, real_md5sum = [], data_mod.md5sum

    def md5sum(p):
        n = len(calls)
        calls.append(n)
        inside[n].set()
        assert go[n].wait(60)
        return real_md5sum(p)

    monkeypatch.setattr(data_mod, "md5sum", md5sum)
    first = _in_thread(lambda: prepare(data, archive=path, md5="0" * 32))      # will fail: wrong md5
    assert inside[0].wait(60)
    second = _in_thread(lambda: prepare(data, archive=path, md5=md5))
    assert waiting.wait(60)
    go[0].set()
    first["thread"].join(60)
    assert isinstance(first.get("error"), ChecksumError)
    assert inside[1].wait(60)                                # the second is at work now
    with open(data / LOCK_FILE, "a") as fh:                  # a third: the lock file on disk is held
        with pytest.raises(BlockingIOError):
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    go[1].set()
    second["thread"].join(60)
    assert "error" not in second, second.get("error")
    assert second["result"].status == "extracted"


def test_a_file_system_without_locks_prepares_unlocked(tmp_path, fake_archive, monkeypatch):
    fcntl = pytest.importorskip("fcntl")
    path, md5 = fake_archive("binary")

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")           # e.g. an NFS mount without a lock daemon

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.raises(ChecksumError):
        prepare(tmp_path / "fresh", archive=path, md5="0" * 32)
    assert not (tmp_path / "fresh").exists()                         # the folder made for it is gone again
    assert prepare(tmp_path / "fresh", archive=path, md5=md5).status == "extracted"


def test_checksum_mismatch_leaves_the_previous_extraction_alone(tmp_path, fake_archive):
    path, md5 = fake_archive("binary")
    good = prepare(tmp_path / "data", archive=path, md5=md5)
    before = tree(tmp_path / "data")
    with pytest.raises(ChecksumError, match=f"expected {'0' * 32}, got {md5}"):
        prepare(tmp_path / "data", archive=path, md5="0" * 32, force=True)
    assert tree(tmp_path / "data") == before and good.folder.is_dir()


def test_a_non_archive_is_refused(tmp_path):
    page = tmp_path / "cifar-10-binary.tar.gz"
    page.write_text("<!DOCTYPE html><html><body>Please log in</body></html>")
    with pytest.raises(DataError, match="not a gzip file but an HTML page"):
        prepare(tmp_path / "data", archive=page)
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())


def test_an_archive_whose_first_member_escapes_names_it(tmp_path, fake_cifar):
    import io
    import tarfile

    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        info = tarfile.TarInfo("../outside")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
        for name, blob in binary_members(fake_cifar).items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    r = CliRunner().invoke(cli, ["download", "--data-dir", str(tmp_path / "data"), "--archive", str(evil)])
    assert r.exit_code == 1 and "../outside" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "outside").exists()
    assert not (tmp_path / "data" / "cifar-10-batches-bin").exists()


def test_an_extracted_folder_elsewhere_can_stand_in(tmp_path, fake_archive, fake_cifar):
    path, md5 = fake_archive("python")
    extracted = prepare(tmp_path / "elsewhere", archive=path, md5=md5).folder
    root = tmp_path / "torchvision-root"
    shutil.copytree(extracted, root / "cifar-10-batches-py")
    statuses = [prepare(tmp_path / "data", archive=given) for given in (root, root / "cifar-10-batches-py")]
    assert [(p.status, p.format) for p in statuses] == [("copied", "python"), ("already present", "python")]
    assert statuses[0].folder == tmp_path / "data" / "cifar-10-batches-py"
    assert_same(load_cifar10(tmp_path / "data", archive=root), fake_cifar)
    # the data folder itself, given as --archive, is used as it is
    assert prepare(tmp_path / "data", archive=tmp_path / "data").status == "already present"
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds neither cifar-10-batches-bin/ nor cifar-10-batches-py/$"):
        prepare(tmp_path / "data", archive=tmp_path / "empty")
    with pytest.raises(DataError, match=f"holds neither cifar-10-batches-bin/ nor cifar-10-batches-py/; give the "
                                        f"archive inside it: --archive {re.escape(str(path))}$"):
        prepare(tmp_path / "data", archive=path.parent)           # a torchvision root before its extraction
    binary, _ = fake_archive("binary")                             # both archives there: the format asked for
    for fmt, named in (("binary", binary), ("python", path)):
        with pytest.raises(DataError, match=f"--archive {re.escape(str(named))}$"):
            prepare(tmp_path / "data", fmt, archive=path.parent)


@pytest.mark.parametrize("fmt", ["binary", "python"])
def test_download_of_a_folder_puts_the_data_in_the_data_folder(tmp_path, fake_archive, fake_cifar, fmt):
    """`download --archive DIR` (DIR holding cifar-10-batches-*/), then plain commands on the data folder."""
    root = tmp_path / "datasets" / "cifar10"
    safe_extract(fake_archive(fmt)[0], root, LAYOUTS[fmt])
    data = tmp_path / "data"
    r = invoke("download", "--data-dir", data, "--archive", root)
    assert r.exit_code == 0, r.output
    assert f"copied: {data / LAYOUTS[fmt].folder} (40 training and 10 test images)" in r.output
    r = invoke("download", "--data-dir", data, "--archive", root)
    assert r.exit_code == 0 and "already present" in r.output, r.output
    shutil.rmtree(root)                     # the data folder needs nothing outside it
    assert_same(load_cifar10(data), fake_cifar)          # the default format, no archive, no download
    r = invoke("download", "--data-dir", data)
    assert r.exit_code == 0 and f"already present: {data / LAYOUTS[fmt].folder}" in r.output, r.output
    config = tmp_path / "small.yaml"
    config.write_text(small_config(epochs=1))
    r = train_cli(config, data, tmp_path / "run", "--set", "data.num_val=10")
    assert r.exit_code == 0, r.output


def test_a_copied_folder_is_copied_again_when_its_source_changes(tmp_path, fake_archive, fake_cifar):
    root = tmp_path / "root"
    safe_extract(fake_archive("binary")[0], root, LAYOUTS["binary"])
    prepare(tmp_path / "data", archive=root)
    other = fake_cifar.__class__(**{**fake_cifar.__dict__})
    other.X_test = 255 - fake_cifar.X_test
    write_tar_gz(tmp_path / "other.tar.gz", binary_members(other))
    safe_extract(tmp_path / "other.tar.gz", root, LAYOUTS["binary"])       # the same sizes, new files
    assert prepare(tmp_path / "data", archive=root).status == "copied"
    np.testing.assert_array_equal(load_cifar10(tmp_path / "data").X_test, other.X_test)


def test_a_folder_with_a_link_is_refused_and_the_data_folder_kept(tmp_path, fake_archive):
    path, md5 = fake_archive("binary")
    good = prepare(tmp_path / "data", archive=path, md5=md5).folder
    before = tree(tmp_path / "data")
    root = tmp_path / "root"
    folder = safe_extract(path, root, LAYOUTS["binary"])
    (folder / "test_batch.bin").unlink()
    (folder / "test_batch.bin").symlink_to(good / "test_batch.bin")
    with pytest.raises(DataError, match="test_batch.bin is not a regular file"):
        prepare(tmp_path / "data", archive=root)
    assert tree(tmp_path / "data") == before


def test_missing_data_without_download_says_how_to_get_it(tmp_path):
    with pytest.raises(DataError, match="linclf download"):
        load_cifar10(tmp_path / "empty")


def test_unwritable_data_dir(tmp_path, fake_archive):
    path, md5 = fake_archive("binary")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DataError, match="cannot create the data folder"):
        prepare(blocker / "data", archive=path, md5=md5)
    assert blocker.read_text() == "x"


def test_cache_is_rebuilt_when_the_batches_change(tmp_path, fake_archive, fake_cifar):
    path, md5 = fake_archive("binary")
    load_cifar10(tmp_path / "data", archive=path, md5=md5)
    # re-extract a different archive over it: the cache must not serve the old arrays
    other = fake_cifar.__class__(**{**fake_cifar.__dict__})
    other.X_train = 255 - fake_cifar.X_train
    p2 = tmp_path / "other.tar.gz"
    md5_2 = write_tar_gz(p2, binary_members(other))
    d = load_cifar10(tmp_path / "data", archive=p2, md5=md5_2)
    np.testing.assert_array_equal(d.X_train, 255 - fake_cifar.X_train)


def test_corrupt_cache_is_ignored(tmp_path, fake_archive, fake_cifar):
    path, md5 = fake_archive("binary")
    load_cifar10(tmp_path / "data", archive=path, md5=md5)
    (tmp_path / "data" / "cifar-10-binary-cache" / "X_train.npy").write_bytes(b"garbage")
    with pytest.warns(LinclfWarning, match="X_train.npy is not a .npy file; rebuilding the cache"):
        assert_same(load_cifar10(tmp_path / "data", archive=path, md5=md5), fake_cifar)


def _set_label(path: Path, index: int, value: int) -> None:
    """Overwrite label ``index`` of a cached int64 label file in place (its header untouched)."""
    blob = bytearray(path.read_bytes())
    start = len(blob) - 8 * (len(np.load(path)) - index)
    blob[start:start + 8] = np.int64(value).tobytes()
    path.write_bytes(bytes(blob))


def _classes(path: Path, names: list) -> None:
    meta = json.loads(path.read_text())
    path.write_text(json.dumps({**meta, "classes": names}))


DAMAGES = [   # (file of the cache, how it is damaged, what the warning says)
    ("y_train.npy", lambda p: _set_label(p, 0, -1), r"y_train.npy holds labels in \[-1, 9\], expected 0-9"),
    ("y_test.npy", lambda p: _set_label(p, 3, 10), r"y_test.npy holds labels in \[0, 10\], expected 0-9"),
    ("X_train.npy", lambda p: p.write_bytes(b"garbage"), r"X_train.npy is not a .npy file"),
    ("y_test.npy", lambda p: p.unlink(), r"y_test.npy is missing"),
    ("X_test.npy", lambda p: p.write_bytes(p.read_bytes()[:-100]), r"X_test.npy cannot be read \(ValueError"),
    ("source.json", lambda p: _classes(p, ["cat"] * 10), "source.json does not list 10 distinct class names"),
]


@pytest.mark.parametrize("name, damage, said", DAMAGES,
                         ids=["train-label", "test-label", "not-npy", "missing", "truncated", "classes"])
def test_a_damaged_cache_is_named_and_rebuilt(tmp_path, fake_archive, fake_cifar, name, damage, said):
    path, md5 = fake_archive("binary")
    load_cifar10(tmp_path / "data", archive=path, md5=md5)
    damage(tmp_path / "data" / "cifar-10-binary-cache" / name)
    r = invoke("download", "--data-dir", tmp_path / "data")
    assert r.exit_code == 0, r.output
    warning, done = r.output.strip().splitlines()
    assert warning.startswith("warning: ") and "rebuilding the cache from" in warning
    assert re.search(said, warning), warning
    assert done.startswith("CIFAR-10 (binary) already present")
    with warnings.catch_warnings():
        warnings.simplefilter("error")               # rebuilt: no warning any more
        assert_same(load_cifar10(tmp_path / "data"), fake_cifar)


def test_train_on_a_cache_with_a_bad_label_is_no_internal_error(tmp_path, fake_archive):
    path, md5 = fake_archive("binary")
    load_cifar10(tmp_path / "data", archive=path, md5=md5)
    _set_label(tmp_path / "data" / "cifar-10-binary-cache" / "y_train.npy", 0, -1)
    config = tmp_path / "small.yaml"
    config.write_text(small_config(epochs=1))
    r = train_cli(config, tmp_path / "data", tmp_path / "run", "--set", "data.num_val=10")
    assert r.exit_code == 0, r.output
    assert "y_train.npy holds labels in [-1, 9]" in r.output and "internal error" not in r.output


def test_a_damaged_extraction_is_extracted_again_from_its_archive_still_on_disk(tmp_path, fake_archive, fake_cifar):
    path, md5 = fake_archive("binary")
    folder = prepare(tmp_path / "data", archive=path, md5=md5).folder
    (folder / "data_batch_3.bin").write_bytes(b"x" * 1000)
    with pytest.warns(LinclfWarning, match=rf"data_batch_3.bin is 1000 bytes, .*; extracting {re.escape(str(path))} "
                                           "again$"):
        data = load_cifar10(tmp_path / "data")                 # no download: the archive it came from is there
    assert_same(data, fake_cifar)
    (folder / "data_batch_3.bin").write_bytes(b"x" * 1000)
    with pytest.raises(DataError, match="is damaged"):         # another archive pinned: not this one's extraction
        prepare(tmp_path / "data", md5="0" * 32, download=False)


def test_a_damaged_extraction_is_named_when_nothing_can_replace_it(tmp_path, fake_archive):
    path, md5 = fake_archive("binary")
    folder = prepare(tmp_path / "data", archive=path, md5=md5).folder
    path.unlink()                                               # the archive it came from is gone
    (folder / "data_batch_3.bin").write_bytes(b"x" * 1000)
    with pytest.raises(DataError, match=r"is damaged: \S+/data_batch_3.bin is 1000 bytes, not a whole number of "
                                        r"3073-byte records; run `linclf download`"):
        load_cifar10(tmp_path / "data")


def test_data_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("LINCLF_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    assert resolve_data_dir() == tmp_path / "cache" / "linclf"          # the user cache, not ./data
    assert resolve_data_dir(None, "cfg") == tmp_path / "cfg"             # made absolute
    monkeypatch.setenv("LINCLF_DATA_DIR", "env")
    assert resolve_data_dir(None, "cfg") == tmp_path / "env"
    assert resolve_data_dir("flag", "cfg") == tmp_path / "flag"
    assert not (tmp_path / "cache").exists()                            # resolving creates nothing


# --------------------------------------------------------------------- splits


def test_split_sizes_and_order(fake_cifar):
    d = data_mod.CIFAR10(fake_cifar.X_train, fake_cifar.y_train, fake_cifar.X_test, fake_cifar.y_test,
                         tuple(fake_cifar.classes))
    s = split(d, num_val=10)
    assert len(s.X_train) == 30 and len(s.X_val) == 10 and len(s.X_test) == 10
    np.testing.assert_array_equal(s.X_val, fake_cifar.X_train[30:])    # carved from the end
    np.testing.assert_array_equal(s.X_train, fake_cifar.X_train[:30])
    s2 = split(d, num_train=5, num_val=10, num_test=3)
    assert len(s2.X_train) == 5 and len(s2.X_test) == 3
    dev1 = split(d, num_val=10, num_dev=7, rng=np.random.default_rng(1))
    dev2 = split(d, num_val=10, num_dev=7, rng=np.random.default_rng(1))
    assert len(dev1.X_train) == 7
    np.testing.assert_array_equal(dev1.X_train, dev2.X_train)


def test_mirrored_against_a_pixel_loop():
    X = np.random.default_rng(0).integers(0, 256, (3, 3072), dtype=np.uint8)
    expected = np.empty_like(X)
    for n in range(3):
        for c in range(3):
            for r in range(32):
                for col in range(32):
                    expected[n, c * 1024 + r * 32 + col] = X[n, c * 1024 + r * 32 + 31 - col]
    M = mirrored(X)
    assert M.dtype == np.uint8 and M.flags.c_contiguous
    np.testing.assert_array_equal(M, expected)
    np.testing.assert_array_equal(mirrored(M), X)
    with pytest.raises(ValueError, match=r"expected CIFAR rows of shape \(N, 3072\), got \(3, 3071\)"):
        mirrored(X[:, :-1])


def test_with_mirrors_appends_the_training_mirrors_only(fake_cifar):
    d = data_mod.CIFAR10(fake_cifar.X_train, fake_cifar.y_train, fake_cifar.X_test, fake_cifar.y_test,
                         tuple(fake_cifar.classes))
    s = split(d, num_val=10)
    f = with_mirrors(s)
    assert len(f.X_train) == 60 and len(f.y_train) == 60
    np.testing.assert_array_equal(f.X_train[:30], s.X_train)
    np.testing.assert_array_equal(f.X_train[30:], mirrored(s.X_train))
    np.testing.assert_array_equal(f.y_train, np.concatenate([s.y_train, s.y_train]))
    for name in ("X_val", "y_val", "X_test", "y_test"):
        np.testing.assert_array_equal(getattr(f, name), getattr(s, name))


@pytest.mark.parametrize("kwargs, key", [
    (dict(num_val=40), "data.num_val"),
    (dict(num_val=10, num_train=31), "data.num_train"),
    (dict(num_val=10, num_test=11), "data.num_test"),
    (dict(num_val=10, num_train=5, num_dev=6), "data.num_dev"),
])
def test_split_sizes_beyond_the_archive_are_config_errors(fake_cifar, kwargs, key):
    d = data_mod.CIFAR10(fake_cifar.X_train, fake_cifar.y_train, fake_cifar.X_test, fake_cifar.y_test,
                         tuple(fake_cifar.classes))
    with pytest.raises(ConfigError, match=key):
        split(d, rng=np.random.default_rng(0), **kwargs)


# ------------------------------------------------------------ download via CLI


class _Server:
    """A tiny HTTP server on 127.0.0.1 serving given paths (anything else: 404)."""

    def __init__(self, files: dict[str, bytes]):
        outer = self
        self.requests: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                outer.requests.append(self.path)
                body = files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/gzip")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(fake_archive):
    path, md5 = fake_archive("binary")
    s = _Server({"/mirror/cifar-10-binary.tar.gz": path.read_bytes()})
    s.md5 = md5
    yield s
    s.close()


def test_cli_download_from_a_mirror_then_already_present(tmp_path, server, monkeypatch, fake_cifar):
    monkeypatch.setattr(data_mod, "BASE_URL", server.url + "/official/")
    runner = CliRunner()
    args = ["download", "--data-dir", str(tmp_path / "d"), "--url", server.url + "/mirror/cifar-10-binary.tar.gz",
            "--md5", server.md5]
    r = runner.invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert "downloaded and extracted" in r.output
    assert (tmp_path / "d" / "cifar-10-binary.tar.gz").is_file()
    n = len(server.requests)
    r2 = runner.invoke(cli, args)
    assert r2.exit_code == 0 and "already present" in r2.output
    assert len(server.requests) == n      # nothing downloaded again
    assert_same(load_cifar10(tmp_path / "d"), fake_cifar)


def test_cli_download_all_mirrors_fail(tmp_path, server, monkeypatch):
    monkeypatch.setattr(data_mod, "BASE_URL", server.url + "/official/")
    r = CliRunner().invoke(cli, ["download", "--data-dir", str(tmp_path / "d"), "--url", server.url + "/a/x.tar.gz",
                                 "--md5", server.md5, "--quiet"])
    assert r.exit_code == 1
    assert "/a/x.tar.gz" in r.output and "/official/cifar-10-binary.tar.gz" in r.output
    assert r.output.count("\n") == 1 and "Traceback" not in r.output
    assert not any(p.name == "cifar-10-binary.tar.gz" for p in (tmp_path / "d").rglob("*"))


def test_cli_damaged_extraction_is_named_before_the_download(tmp_path, server, monkeypatch):
    monkeypatch.setattr(data_mod, "BASE_URL", server.url + "/official/")
    data = tmp_path / "d"
    r = invoke("download", "--data-dir", data, "--url", server.url + "/mirror/cifar-10-binary.tar.gz", "--md5",
               server.md5, "--quiet")
    assert r.exit_code == 0, r.output
    batch = data / "cifar-10-batches-bin" / "data_batch_3.bin"
    good = batch.read_bytes()
    batch.write_bytes(good[:1000])
    # with the archive in the data folder: named, then extracted again
    r = invoke("download", "--data-dir", data, "--md5", server.md5, "--quiet")
    assert r.exit_code == 0, r.output
    assert r.output == (f"warning: {batch} is 1000 bytes, not a whole number of 3073-byte records; "
                        f"extracting {data / 'cifar-10-binary.tar.gz'} again\n")
    assert batch.read_bytes() == good
    # without it, and the download fails: named in a notice before the one-line error
    (data / "cifar-10-binary.tar.gz").unlink()
    batch.write_bytes(good[:1000])
    r = invoke("download", "--data-dir", data, "--md5", server.md5, "--quiet")
    assert r.exit_code == 1, r.output
    notice, error = r.output.strip().splitlines()
    assert notice == (f"warning: {batch} is 1000 bytes, not a whole number of 3073-byte records; "
                      "downloading CIFAR-10 again")
    assert error.startswith("error: could not download cifar-10-binary.tar.gz")


def test_cli_tarball_of_an_extracted_folder_is_accepted(tmp_path, fake_archive, fake_cifar):
    """`tar czf x.tar.gz -C DATA cifar-10-batches-bin`: linclf's record inside is skipped, not trusted."""
    path, md5 = fake_archive("binary")
    folder = prepare(tmp_path / "d1", archive=path, md5=md5).folder
    assert (folder / SOURCE_FILE).is_file()
    own = tmp_path / "own.tar.gz"
    with tarfile.open(own, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    r = invoke("download", "--data-dir", tmp_path / "d2", "--archive", own)
    assert r.exit_code == 0, r.output
    assert "not the official archive" in r.output and "extracted" in r.output
    record = json.loads((tmp_path / "d2" / "cifar-10-batches-bin" / SOURCE_FILE).read_text())
    assert record["archive"] == str(own.resolve())          # linclf's own, about this archive
    assert_same(load_cifar10(tmp_path / "d2"), fake_cifar)


@pytest.mark.parametrize("how, source", [("env", "$LINCLF_DATA_DIR"), ("config", "data.dir")])
def test_a_data_folder_that_is_a_file_is_a_usage_error_naming_its_source(tmp_path, fake_archive, monkeypatch, how,
                                                                         source):
    path, _ = fake_archive("binary")
    blocker = tmp_path / "afile"
    blocker.write_text("keep")
    args = ["download", "--archive", str(path)]
    if how == "env":
        monkeypatch.setenv("LINCLF_DATA_DIR", str(blocker))
    else:
        args += ["--set", f"data.dir={blocker}"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 2 and r.output.splitlines()[-1] == (
        f"error: the data folder {blocker} ({source}) is a file, not a folder; give a folder")
    assert blocker.read_text() == "keep"


def test_the_extracted_folder_given_as_the_data_folder_names_its_parent(tmp_path, fake_archive):
    path, md5 = fake_archive("binary")
    folder = prepare(tmp_path / "data", archive=path, md5=md5).folder
    before = tree(tmp_path / "data")
    r = CliRunner().invoke(cli, ["train", "--config", "smoke", "--data-dir", str(folder)])
    assert r.exit_code == 2 and r.output.splitlines()[-1] == (
        f"error: the data folder {folder} is an extracted CIFAR-10 folder itself; give the folder that holds it: "
        f"{tmp_path / 'data'}")
    assert tree(tmp_path / "data") == before
    empty = tmp_path / "new" / "cifar-10-batches-bin"          # a folder of that name without batches is a folder
    empty.mkdir(parents=True)
    with pytest.raises(DataError, match=f"CIFAR-10 \\(binary\\) is not in {re.escape(str(empty))};"):
        prepare(empty, download=False)


def test_cli_env_var_sets_the_data_dir(tmp_path, fake_archive, monkeypatch):
    path, md5 = fake_archive("binary")
    monkeypatch.setenv("LINCLF_DATA_DIR", str(tmp_path / "from-env"))
    r = CliRunner().invoke(cli, ["download", "--archive", str(path), "--md5", md5])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "from-env" / "cifar-10-batches-bin").is_dir()


def test_cli_unsafe_archive_exits_1_and_keeps_the_good_extraction(tmp_path, fake_archive, fake_cifar):
    import io
    import tarfile

    path, md5 = fake_archive("binary")
    runner = CliRunner()
    assert runner.invoke(cli, ["download", "--data-dir", str(tmp_path / "d"), "--archive", str(path)]).exit_code == 0
    before = tree(tmp_path / "d")
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        for name, blob in binary_members(fake_cifar).items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
        info = tarfile.TarInfo("cifar-10-batches-bin/../../escaped")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    r = runner.invoke(cli, ["download", "--data-dir", str(tmp_path / "d"), "--archive", str(evil), "--force"])
    assert r.exit_code == 1 and "escaped" in r.output
    assert tree(tmp_path / "d") == before
    assert not (tmp_path / "escaped").exists()


def test_cli_download_bad_config_is_exit_2(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data:\n  format: jpeg\n")
    r = CliRunner().invoke(cli, ["download", "--config", str(cfg), "--data-dir", str(tmp_path / "d")])
    assert r.exit_code == 2 and "data.format" in r.output


def test_python_format_archive_through_the_cli(tmp_path, fake_archive, fake_cifar):
    path, md5 = fake_archive("python")
    r = CliRunner().invoke(cli, ["download", "--format", "python", "--data-dir", str(tmp_path / "d"),
                                 "--archive", str(path), "--md5", md5])
    assert r.exit_code == 0, r.output
    assert_same(load_cifar10(tmp_path / "d", "python"), fake_cifar)
    assert os.path.isdir(tmp_path / "d" / "cifar-10-python-cache")


class _Evil:
    """Unpickling this would run a shell command."""

    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_cli_refuses_a_malicious_pickle_before_it_runs(tmp_path, fake_cifar):
    import pickle

    members = python_members(fake_cifar)
    pwned = tmp_path / "pwned"
    members["cifar-10-batches-py/data_batch_3"] = pickle.dumps({b"data": _Evil(pwned), b"labels": [0]}, protocol=2)
    evil = tmp_path / "cifar-10-python.tar.gz"
    write_tar_gz(evil, members)
    r = CliRunner().invoke(cli, ["download", "--format", "python", "--data-dir", str(tmp_path / "d"),
                                 "--archive", str(evil)])
    assert r.exit_code == 1, r.output
    line = r.output.strip().splitlines()[-1]
    assert "os.system" in line and "data_batch_3" in line
    assert not pwned.exists()
    assert not (tmp_path / "d" / "cifar-10-python-cache").exists()


def test_a_missing_data_folder_says_how_to_point_elsewhere_from_python_too(tmp_path):
    with pytest.raises(DataError, match=r"is not in .*--data-dir DIR \(data_dir= in Python\).*"
                                        r"--archive PATH \(archive=\)"):
        load_cifar10(tmp_path / "empty")

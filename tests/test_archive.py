"""Tests of the untrusted CIFAR-10 files: data.extract, data.unpickle, data.batches (and data.layout).

Every failure test checks the exception type, that the message names the
member or file, that nothing was written outside the target folder, that no
temporary folder is left behind, and that a previous good extraction is
byte-for-byte untouched.
"""
from __future__ import annotations

import builtins
import gzip
import io
import os
import pickle
import struct
import subprocess
import tarfile
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from conftest import CLASSES, FakeCifar, binary_members, make_arrays, python_members, write_tar_gz
from linclf.data import extract
from linclf.data import layout as layout_mod
from linclf.data.batches import read_batch, read_classes
from linclf.data.extract import copy_folder, safe_extract
from linclf.data.layout import LAYOUTS, SOURCE_FILE, check_folder
from linclf.data.unpickle import safe_unpickle
from linclf.errors import DataError, UnsafeArchiveError, UsageError

FMTS = ["binary", "python"]
MEMBERS = {"binary": binary_members, "python": python_members}


# --------------------------------------------------------------------------- helpers

def snapshot(root: Path) -> dict[str, object]:
    """Everything under ``root``: relative path -> file bytes, ("dir",) or ("link", target)."""
    out: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p))
            elif p.is_dir():
                out[rel] = ("dir",)
            else:
                out[rel] = p.read_bytes()
    return out


def reg(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    """A regular-file tar entry."""
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 1262304000
    return info, data


def special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    """A non-regular tar entry (link, device, fifo, directory) of tar type ``kind``."""
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, linkname, 0o755 if kind == tarfile.DIRTYPE else 0o644
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = 1, 3
    return info, None


def write_entries(path: Path, entries: list) -> Path:
    """Write tar entries ``[(TarInfo, bytes | None), ...]`` as a .tar.gz at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def good_entries(fmt: str, fake: FakeCifar | None = None) -> list:
    """The regular-file entries of a good fake archive of ``fmt``."""
    return [reg(n, d) for n, d in MEMBERS[fmt](fake or make_arrays()).items()]


class World:
    """A tmp tree with a previous good extraction in ``dest``; checks a failed attempt changed nothing."""

    def __init__(self, tmp_path: Path, fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root, self.fmt, self.layout = tmp_path, fmt, LAYOUTS[fmt]
        self.work = tmp_path / "work"
        self.dest = self.work / "data"
        self.src = tmp_path / "src"
        self.src.mkdir()
        good = self.src / ("good-" + self.layout.archive_name)
        write_tar_gz(good, MEMBERS[fmt](make_arrays()))
        self.folder = safe_extract(good, self.dest, self.layout)
        monkeypatch.chdir(self.work)
        self.before: dict[str, object] | None = None

    def archive(self, entries: list) -> Path:
        """Write a (bad) archive of ``entries`` next to the good one."""
        return write_entries(self.src / self.layout.archive_name, entries)

    def freeze(self) -> None:
        """Record the whole tree (taken after the bad archive was written)."""
        self.before = snapshot(self.root)

    def attempt(self, path: Path, exc: type[Exception]) -> str:
        """Run safe_extract on ``path``, expect ``exc`` and an unchanged tree; return the message."""
        if self.before is None:
            self.freeze()
        with pytest.raises(exc) as info:
            safe_extract(path, self.dest, self.layout)
        assert type(info.value) is exc
        assert snapshot(self.root) == self.before, "a failed extraction changed files"
        assert sorted(os.listdir(self.dest)) == [self.layout.folder], "a temporary folder was left behind"
        message = str(info.value)
        assert "\n" not in message
        return message


@pytest.fixture(params=FMTS)
def world(request, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    """A World for each format."""
    return World(tmp_path, request.param, monkeypatch)


class Py2Pickler(pickle._Pickler):
    """Protocol-2 pickler writing str and bytes as Python-2 str and numpy.core names, as the official files do."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj: str | bytes) -> None:
        data = obj if isinstance(obj, bytes) else obj.encode("latin-1")
        self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_str

    def save_global(self, obj, name=None) -> None:
        if getattr(obj, "__name__", "") == "_reconstruct":
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)


def py2_dumps(obj: object) -> bytes:
    """``obj`` pickled the way the official (Python 2 cPickle) files are."""
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def batch_dict(X: np.ndarray, y) -> dict:
    """A python-format batch dict with bytes keys."""
    return {b"batch_label": b"training batch 1 of 5", b"labels": y, b"data": X,
            b"filenames": [b"f.png"] * len(y)}


# --------------------------------------------------------------------------- layouts

def test_layouts_match_the_official_archives() -> None:
    b, p = LAYOUTS["binary"], LAYOUTS["python"]
    assert (b.archive_name, b.folder, b.test_file, b.meta_file) == (
        "cifar-10-binary.tar.gz", "cifar-10-batches-bin", "test_batch.bin", "batches.meta.txt")
    assert b.train_files == tuple(f"data_batch_{i}.bin" for i in range(1, 6))
    assert (p.archive_name, p.folder, p.test_file, p.meta_file) == (
        "cifar-10-python.tar.gz", "cifar-10-batches-py", "test_batch", "batches.meta")
    assert p.train_files == tuple(f"data_batch_{i}" for i in range(1, 6))
    assert b.optional_files == p.optional_files == ("readme.html",)
    assert set(binary_members(make_arrays())) == set(b.member_names)
    assert set(python_members(make_arrays())) == set(p.member_names)


# --------------------------------------------------------------------------- good archives

def load_all(folder: Path, fmt: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Read every batch and the classes of an extracted folder."""
    layout = LAYOUTS[fmt]
    parts = [read_batch(folder / name, fmt) for name in layout.train_files]
    X_test, y_test = read_batch(folder / layout.test_file, fmt)
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
            X_test, y_test, read_classes(folder / layout.meta_file, fmt))


@pytest.mark.parametrize("fmt", FMTS)
def test_good_archive_extracts_and_reads_back_exactly(tmp_path: Path, fmt: str, fake_cifar, fake_archive) -> None:
    path, _ = fake_archive(fmt)
    layout = LAYOUTS[fmt]
    folder = safe_extract(path, tmp_path / "data", layout, quiet=False)
    assert folder == tmp_path / "data" / layout.folder
    assert sorted(os.listdir(tmp_path / "data")) == [layout.folder]
    members = MEMBERS[fmt](fake_cifar)
    assert snapshot(folder) == {n.split("/", 1)[1]: d for n, d in members.items()}
    check_folder(folder, layout)
    X_train, y_train, X_test, y_test, classes = load_all(folder, fmt)
    for X in (X_train, X_test):
        assert X.dtype == np.uint8 and X.flags.c_contiguous and X.shape[1] == 3072
    for y in (y_train, y_test):
        assert y.dtype == np.uint8 and y.ndim == 1
    np.testing.assert_array_equal(X_train, fake_cifar.X_train)
    np.testing.assert_array_equal(y_train, fake_cifar.y_train)
    np.testing.assert_array_equal(X_test, fake_cifar.X_test)
    np.testing.assert_array_equal(y_test, fake_cifar.y_test)
    assert classes == CLASSES


def test_both_formats_give_identical_arrays(tmp_path: Path, fake_archive) -> None:
    loaded = {}
    for fmt in FMTS:
        path, _ = fake_archive(fmt)
        loaded[fmt] = load_all(safe_extract(path, tmp_path / "data", LAYOUTS[fmt]), fmt)
    for a, b in zip(loaded["binary"], loaded["python"]):
        if isinstance(a, np.ndarray):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)
        else:
            assert a == b


def test_python2_style_pickles_read(tmp_path: Path) -> None:
    """The official python batches: Python-2 str keys and values, numpy.core names."""
    fake = make_arrays()
    root = "cifar-10-batches-py/"
    members = {root + "batches.meta": py2_dumps({"num_cases_per_batch": 8, "label_names": CLASSES, "num_vis": 3072})}
    for i, (Xb, yb) in enumerate(zip(np.array_split(fake.X_train, 5), np.array_split(fake.y_train, 5)), 1):
        members[root + f"data_batch_{i}"] = py2_dumps(
            {"batch_label": f"training batch {i} of 5", "labels": [int(v) for v in yb], "data": Xb,
             "filenames": [f"img_{j}.png" for j in range(len(yb))]})
    members[root + "test_batch"] = py2_dumps({"batch_label": "testing batch 1 of 1",
                                              "labels": [int(v) for v in fake.y_test],
                                              "data": fake.X_test, "filenames": ["t.png"] * len(fake.y_test)})
    assert b"numpy.core.multiarray" in members[root + "test_batch"]
    path = tmp_path / "cifar-10-python.tar.gz"
    write_tar_gz(path, members)  # no readme.html: it is optional
    folder = safe_extract(path, tmp_path / "data", LAYOUTS["python"])
    X_train, y_train, X_test, y_test, classes = load_all(folder, "python")
    np.testing.assert_array_equal(X_train, fake.X_train)
    np.testing.assert_array_equal(y_train, fake.y_train)
    np.testing.assert_array_equal(X_test, fake.X_test)
    assert classes == CLASSES


@pytest.mark.parametrize("fmt", FMTS)
def test_folder_directory_entry_is_accepted(tmp_path: Path, fmt: str) -> None:
    layout = LAYOUTS[fmt]
    path = write_entries(tmp_path / layout.archive_name,
                         [special(layout.folder + "/", tarfile.DIRTYPE)] + good_entries(fmt))
    folder = safe_extract(path, tmp_path / "data", layout)
    check_folder(folder, layout)


@pytest.mark.parametrize("fmt", FMTS)
def test_reextraction_replaces_previous_folder(tmp_path: Path, fmt: str, fake_archive) -> None:
    layout = LAYOUTS[fmt]
    path, _ = fake_archive(fmt)
    folder = safe_extract(path, tmp_path / "data", layout)
    expected = snapshot(folder)
    (folder / layout.test_file).write_bytes(b"damaged")
    (folder / "stray.txt").write_text("left over")
    assert safe_extract(path, tmp_path / "data", layout) == folder
    assert snapshot(folder) == expected
    assert sorted(os.listdir(tmp_path / "data")) == [layout.folder]


def test_single_record_batch_is_accepted(tmp_path: Path) -> None:
    p = tmp_path / "one.bin"
    p.write_bytes(bytes([9]) + bytes(range(256)) * 12)
    X, y = read_batch(p, "binary")
    assert X.shape == (1, 3072) and y.tolist() == [9]
    np.testing.assert_array_equal(X[0], np.tile(np.arange(256, dtype=np.uint8), 12))


def test_fortran_ordered_data_comes_back_c_contiguous(tmp_path: Path) -> None:
    X = np.asfortranarray(make_arrays().X_test)
    p = tmp_path / "batch"
    p.write_bytes(pickle.dumps(batch_dict(X, list(range(len(X)))), protocol=2))
    X2, _ = read_batch(p, "python")
    assert X2.flags.c_contiguous and X2.flags.writeable
    np.testing.assert_array_equal(X2, X)


def test_linclfs_record_in_a_tarball_of_its_extraction_is_skipped(world: World) -> None:
    """`tar czf x.tar.gz -C DATA cifar-10-batches-bin` holds linclf's record: not written, the rest accepted."""
    record = reg(f"{world.layout.folder}/{SOURCE_FILE}", b'{"md5": "not this archive"}')
    path = world.archive(good_entries(world.fmt) + [record])
    folder = safe_extract(path, world.root / "other", world.layout)
    assert sorted(os.listdir(folder)) == sorted(world.layout.all_files)
    # a record that is not a small regular file is refused like any unexpected member
    bad = special(f"{world.layout.folder}/{SOURCE_FILE}", tarfile.SYMTYPE, "/etc/passwd")
    message = world.attempt(world.archive(good_entries(world.fmt) + [bad]), UnsafeArchiveError)
    assert "symbolic link" in message and SOURCE_FILE in message


@pytest.mark.parametrize("fmt", FMTS)
def test_copy_folder_copies_the_required_files_only(tmp_path: Path, fmt: str, fake_archive) -> None:
    layout = LAYOUTS[fmt]
    src = safe_extract(fake_archive(fmt)[0], tmp_path / "src-root", layout)
    (src / SOURCE_FILE).write_text("{}")
    (src / "stray.py").write_text("import os")
    folder = copy_folder(src, tmp_path / "data", layout)
    assert folder == tmp_path / "data" / layout.folder
    assert snapshot(folder) == {name: (src / name).read_bytes() for name in layout.required_files}
    assert os.listdir(tmp_path / "data") == [layout.folder]


def test_copy_folder_refuses_a_link_or_a_huge_file_and_keeps_the_previous_copy(
        tmp_path: Path, fake_archive, monkeypatch: pytest.MonkeyPatch) -> None:
    layout = LAYOUTS["binary"]
    src = safe_extract(fake_archive("binary")[0], tmp_path / "src-root", layout)
    copy_folder(src, tmp_path / "data", layout)
    before = snapshot(tmp_path / "data")
    (src / layout.test_file).unlink()
    (src / layout.test_file).symlink_to(tmp_path / "data" / layout.folder / layout.train_files[0])
    with pytest.raises(DataError, match=f"{layout.test_file} is not a regular file"):
        copy_folder(src, tmp_path / "data", layout)
    assert snapshot(tmp_path / "data") == before
    (src / layout.test_file).unlink()
    (src / layout.test_file).write_bytes(b"\0" * 3073 * 10)            # the training batches hold 8 records
    monkeypatch.setattr(layout_mod, "MAX_MEMBER_BYTES", 3073 * 9)
    with pytest.raises(DataError, match=f"{layout.test_file} is 30730 bytes, above the 27657-byte cap"):
        copy_folder(src, tmp_path / "data", layout)
    assert snapshot(tmp_path / "data") == before


# --------------------------------------------------------------------------- unsafe archives

def escape_entries(world: World) -> dict[str, tuple[list, str]]:
    """Case id -> (extra entries to append to a good archive, text the message must contain)."""
    folder = world.layout.folder
    absolute = str(world.root / "abs_x")
    return {
        "dotdot": ([reg("../x", b"pwned")], "'../x'"),
        "dotdot2": ([reg("../../x", b"pwned")], "'../../x'"),
        "absolute": ([reg(absolute, b"pwned")], absolute),
        "inner-dotdot": ([reg(f"{folder}/../../x", b"pwned")], f"{folder}/../../x"),
        "inner-dotdot-known-name": ([reg(f"{folder}/../{folder}/readme.html", b"pwned")],
                                    f"{folder}/../{folder}/readme.html"),
        "symlink-out": ([special(f"{folder}/readme.html", tarfile.SYMTYPE, "/etc/passwd")], "symbolic link"),
        "symlink-dir": ([special("evil", tarfile.SYMTYPE, str(world.root))], "symbolic link"),
        "hardlink": ([special(f"{folder}/readme.html", tarfile.LNKTYPE, "/etc/passwd")], "hard link"),
        "chrdev": ([special(f"{folder}/readme.html", tarfile.CHRTYPE)], "device"),
        "blkdev": ([special(f"{folder}/readme.html", tarfile.BLKTYPE)], "device"),
        "fifo": ([special(f"{folder}/readme.html", tarfile.FIFOTYPE)], "FIFO"),
        "extra-member": ([reg(f"{folder}/extra.py", b"import os")], "unexpected member"),
        "extra-top-level": ([reg("x", b"pwned")], "unexpected member"),
        "extra-dir": ([special(f"{folder}/sub", tarfile.DIRTYPE)], "unexpected member"),
        "other-folder": ([reg(f"other/{world.layout.train_files[0]}", b"x")], "unexpected member"),
    }


CASES = ["dotdot", "dotdot2", "absolute", "inner-dotdot", "inner-dotdot-known-name", "symlink-out", "symlink-dir",
         "hardlink", "chrdev", "blkdev", "fifo", "extra-member", "extra-top-level", "extra-dir", "other-folder"]


@pytest.mark.parametrize("where", ["last", "first"])
@pytest.mark.parametrize("case", CASES)
def test_unsafe_member_is_refused(world: World, case: str, where: str) -> None:
    extra, needle = escape_entries(world)[case]
    good = good_entries(world.fmt)
    if case.startswith(("symlink-out", "hardlink", "chrdev", "blkdev", "fifo")):
        good = [e for e in good if not e[0].name.endswith("readme.html")]  # the special entry takes its name
    path = world.archive(good + extra if where == "last" else extra + good)
    message = world.attempt(path, UnsafeArchiveError)
    assert needle in message
    assert repr(extra[0][0].name) in message and str(path) in message
    assert not (world.work / "x").exists() and not (world.root / "x").exists()
    assert not (world.root / "abs_x").exists()


def test_unexpected_member_message_lists_the_layout(world: World) -> None:
    path = world.archive(good_entries(world.fmt) + [reg(f"{world.layout.folder}/extra.py", b"")])
    message = world.attempt(path, UnsafeArchiveError)
    layout = world.layout
    assert f"unexpected member; a CIFAR-10 archive ({layout.archive_name}) holds only {layout.folder}/" in message
    assert world.layout.test_file in message


def test_duplicate_member_is_refused(world: World) -> None:
    good = good_entries(world.fmt)
    twice = [e for e in good if e[0].name.endswith(world.layout.train_files[0])]
    path = world.archive(good + twice)
    message = world.attempt(path, UnsafeArchiveError)
    assert "twice" in message and f"{world.layout.folder}/{world.layout.train_files[0]}" in message


def test_member_over_the_size_cap_is_refused(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    path = world.archive(good_entries(world.fmt))
    monkeypatch.setattr(extract, "MAX_MEMBER_BYTES", 1000)
    message = world.attempt(path, UnsafeArchiveError)
    assert "1000-byte cap" in message and world.layout.folder in message


def test_header_claiming_a_huge_member_is_refused_before_reading(world: World) -> None:
    """A tar bomb's header: 300 MB claimed, a few bytes present; refused on the header alone."""
    info = tarfile.TarInfo(f"{world.layout.folder}/{world.layout.train_files[0]}")
    info.size = 300 * 2**20
    path = world.src / world.layout.archive_name
    path.write_bytes(gzip.compress(info.tobuf(format=tarfile.USTAR_FORMAT) + b"\0" * 4096))
    message = world.attempt(path, UnsafeArchiveError)
    assert str(info.size) in message and info.name in message


# --------------------------------------------------------------------------- broken archives

@pytest.mark.parametrize("drop", ["test", "meta", "train"])
def test_missing_required_member(world: World, drop: str) -> None:
    name = {"test": world.layout.test_file, "meta": world.layout.meta_file, "train": world.layout.train_files[2]}[drop]
    path = world.archive([e for e in good_entries(world.fmt) if not e[0].name.endswith("/" + name)])
    message = world.attempt(path, DataError)
    assert f"{world.layout.folder}/{name}" in message and "download" in message


def test_missing_optional_member_is_fine(tmp_path: Path) -> None:
    for fmt in FMTS:
        entries = [e for e in good_entries(fmt) if not e[0].name.endswith("readme.html")]
        path = write_entries(tmp_path / LAYOUTS[fmt].archive_name, entries)
        safe_extract(path, tmp_path / "data", LAYOUTS[fmt])


@pytest.mark.parametrize("cut", ["header", "half", "trailer"])
def test_truncated_archive(world: World, cut: str) -> None:
    path = world.archive(good_entries(world.fmt))
    data = path.read_bytes()
    path.write_bytes(data[:{"header": 30, "half": len(data) // 2, "trailer": len(data) - 4}[cut]])
    message = world.attempt(path, DataError)
    assert "truncated" in message and str(path) in message and "download" in message


def test_a_damaged_entry_mid_archive_is_named_corrupt_not_incomplete(world: World) -> None:
    """tarfile ends its iteration silently at a damaged header: the megabytes after it say it is not the end."""
    entries = [*good_entries(world.fmt), reg(f"{world.layout.folder}/filler.bin", os.urandom(3 << 20))]
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as t:
        for info, data in entries:
            t.addfile(info, io.BytesIO(data))
    raw = bytearray(tar.getvalue())
    second = 512 + -(-entries[0][0].size // 512) * 512          # the second entry's header
    raw[second:second + 100] = b"\xff" * 100
    path = world.src / world.layout.archive_name
    path.write_bytes(gzip.compress(bytes(raw)))
    message = world.attempt(path, DataError)
    assert message.startswith(f"{path} is corrupt: its files break off where a damaged entry starts, with more "
                              "data after it; ")


@pytest.mark.parametrize("content,needle", [
    (b"<!DOCTYPE html>\n<html><body>Please log in</body></html>\n", "HTML page"),
    (b"PK\x03\x04 a zip file", "not a gzip file"),
    (b"", "empty"),
])
def test_not_a_gzip_file(world: World, content: bytes, needle: str) -> None:
    path = world.src / world.layout.archive_name
    path.write_bytes(content)
    message = world.attempt(path, DataError)
    assert needle in message and str(path) in message and "download" in message


def test_gzip_of_something_else(world: World) -> None:
    path = world.src / world.layout.archive_name
    path.write_bytes(gzip.compress(b"just some text, not a tar archive\n" * 40))
    message = world.attempt(path, DataError)
    assert "corrupt" in message and str(path) in message


def test_missing_archive(world: World) -> None:
    message = world.attempt(world.src / "nope.tar.gz", DataError)
    assert "not found" in message and "nope.tar.gz" in message


def test_bad_batch_size_inside_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w = World(tmp_path, "binary", monkeypatch)
    name = f"{w.layout.folder}/{w.layout.test_file}"
    entries = [e if e[0].name != name else reg(name, b"\0" * 3074) for e in good_entries("binary")]
    message = w.attempt(w.archive(entries), DataError)
    assert name in message and "3074 bytes" in message


def test_first_extraction_failure_leaves_nothing(tmp_path: Path) -> None:
    path = write_entries(tmp_path / "src" / "a.tar.gz", good_entries("binary") + [reg("../x", b"pwned")])
    with pytest.raises(UnsafeArchiveError, match=r"\.\./x"):
        safe_extract(path, tmp_path / "data", LAYOUTS["binary"])
    assert os.listdir(tmp_path / "data") == []
    assert not (tmp_path / "x").exists()


# --------------------------------------------------------------------------- unpickling

class Reduce:
    """An object that pickles as ``func(*args)``."""

    def __init__(self, func: Callable, args: tuple) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def evil_payloads(target: Path) -> dict[str, tuple[object, str]]:
    """Case id -> (object whose unpickling would create ``target``, global the message must name)."""
    cmd = f"touch {target}"
    return {
        "os.system": (Reduce(os.system, (cmd,)), "os.system"),
        "builtins.eval": (Reduce(builtins.eval, (f"__import__('os').system({cmd!r})",)), "builtins.eval"),
        "builtins.exec": (Reduce(builtins.exec, (f"open({str(target)!r}, 'w')",)), "builtins.exec"),
        "subprocess.Popen": (Reduce(subprocess.Popen, (["touch", str(target)],)), "subprocess.Popen"),
        # pickled as io.open up to Python 3.12, as _io.open from 3.13
        "io.open": (Reduce(builtins.open, (str(target), "w")), f"{builtins.open.__module__}.open"),
        "numpy.load": (Reduce(np.load, (str(target),)), "numpy.load"),
    }


@pytest.mark.parametrize("case", ["os.system", "builtins.eval", "builtins.exec", "subprocess.Popen",
                                  "io.open", "numpy.load"])
@pytest.mark.parametrize("wrap", ["bare", "as-data", "as-label"])
def test_malicious_pickle_is_refused_before_running(tmp_path: Path, case: str, wrap: str) -> None:
    target = tmp_path / "pwned"
    payload, needle = evil_payloads(target)[case]
    X = make_arrays().X_test
    obj = {"bare": payload, "as-data": batch_dict(payload, [0, 1, 2]),
           "as-label": batch_dict(X, [payload] + [0] * (len(X) - 1))}[wrap]
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps(obj, protocol=2))
    with pytest.raises(UnsafeArchiveError) as info:
        read_batch(path, "python")
    message = str(info.value)
    assert f"refusing to unpickle {needle}" in message and str(path) in message
    assert "a CIFAR-10 batch needs only numpy arrays" in message
    assert not target.exists()


def test_protocol0_os_system_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    data = b"cos\nsystem\n(S'touch " + str(target).encode() + b"'\ntR."
    with pytest.raises(UnsafeArchiveError, match=r"refusing to unpickle os\.system in evil-source"):
        safe_unpickle(data, source="evil-source")
    assert not target.exists()


@pytest.mark.parametrize("data,needle", [
    (b"\x80\x02cnumpy\nndarray\nJ\x00\xca\x9a;\x85\x81.", "numpy.ndarray"),  # ndarray.__new__((10**9,))
    (b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nJ\x00\xca\x9a;\x85U\x01b\x87R.", "shape"),
    (b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\ndtype\nK\x00\x85U\x01b\x87R.", "only numpy.ndarray"),
    (b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x05\x00\x00\x00rot13\x86R.", "rot13"),
    (b"\x80\x02P1\n.", "persistent id"),
    (b"\x80\x02c__builtin__\nbytes\nJ\x00\xca\x9a;\x85R.", "builtins.bytes with arguments"),  # bytes(10**9)
])
def test_allowed_globals_are_used_only_as_numpy_pickles_use_them(data: bytes, needle: str) -> None:
    with pytest.raises(UnsafeArchiveError) as info:
        safe_unpickle(data, source="src-name")
    assert needle in str(info.value) and "src-name" in str(info.value) and "\n" not in str(info.value)


TRUNCATED_PICKLE = pickle.dumps(batch_dict(make_arrays().X_test, list(range(10))), protocol=2)[:5000]


@pytest.mark.parametrize("data", [b"", b"not a pickle at all", TRUNCATED_PICKLE])
def test_garbage_or_truncated_pickle_is_a_data_error(data: bytes) -> None:
    with pytest.raises(DataError) as info:
        safe_unpickle(data, source="some/test_batch")
    assert type(info.value) is DataError and "some/test_batch" in str(info.value)


def test_unpickle_normalises_keys_and_reads_numpy_arrays() -> None:
    X = make_arrays().X_test
    for dumps in (lambda o: pickle.dumps(o, protocol=2), py2_dumps, lambda o: pickle.dumps(o, protocol=4)):
        d = safe_unpickle(dumps({b"data": X, "labels": [1, 2]}), source="s")
        assert set(d) == {"data", "labels"}
        np.testing.assert_array_equal(d["data"], X)
    assert safe_unpickle(pickle.dumps(b"\xff\x00bytes", protocol=2), source="s") == b"\xff\x00bytes"
    assert safe_unpickle(pickle.dumps([b""], protocol=2), source="s") == [b""]  # Python 3 pickles b"" as bytes()


# --------------------------------------------------------------------------- field validation

def write_pickled(tmp_path: Path, obj: object, name: str = "data_batch_1") -> Path:
    """Pickle ``obj`` (protocol 2) into ``tmp_path/name``."""
    p = tmp_path / name
    p.write_bytes(pickle.dumps(obj, protocol=2))
    return p


X8 = make_arrays().X_test[:8]
Y8 = [0, 1, 2, 3, 4, 5, 6, 7]


@pytest.mark.parametrize("obj,needles", [
    (batch_dict(X8.reshape(8, 3, 1024), Y8), ["'data'", "shape (8, 3, 1024)", "(N, 3072)"]),
    (batch_dict(X8[:, :3071], Y8), ["'data'", "shape (8, 3071)"]),
    (batch_dict(X8[:0], []), ["'data'", "shape (0, 3072)"]),
    (batch_dict(X8.astype(np.int64), Y8), ["'data'", "dtype int64", "uint8"]),
    (batch_dict(X8.tolist(), Y8), ["'data'", "list", "numpy array"]),
    (batch_dict(X8, Y8[:-1] + [10]), ["'labels'", "entry 7", "10", "0-9"]),
    (batch_dict(X8, [-1] + Y8[1:]), ["'labels'", "entry 0", "-1"]),
    (batch_dict(X8, [2**70] + Y8[1:]), ["'labels'", "entry 0"]),
    (batch_dict(X8, Y8[:-1]), ["'labels'", "7 entries", "8 rows"]),
    (batch_dict(X8, Y8[:-1] + [1.5]), ["'labels'", "entry 7", "1.5", "not an int"]),
    (batch_dict(X8, Y8[:-1] + [True]), ["'labels'", "entry 7", "not an int"]),
    (batch_dict(X8, np.array(Y8, dtype=np.float64)), ["'labels'", "float64"]),
    (batch_dict(X8, "01234567"), ["'labels'", "str"]),
    ({b"labels": Y8}, ["no 'data' field"]),
    ({b"data": X8}, ["no 'labels' field"]),
    ([X8, Y8], ["holds a list", "dict"]),
])
def test_python_batch_fields_are_validated(tmp_path: Path, obj: object, needles: list[str]) -> None:
    path = write_pickled(tmp_path, obj)
    with pytest.raises(DataError) as info:
        read_batch(path, "python")
    message = str(info.value)
    assert type(info.value) is DataError and str(path) in message
    for needle in needles:
        assert needle in message


def test_python_batch_accepts_integer_label_array(tmp_path: Path) -> None:
    X, y = read_batch(write_pickled(tmp_path, batch_dict(X8, np.array(Y8, dtype=np.int32))), "python")
    assert y.dtype == np.uint8 and y.tolist() == Y8


@pytest.mark.parametrize("content,needles", [
    (b"", ["is empty"]),
    (b"\0" * 3074, ["is 3074 bytes, not a whole number of 3073-byte records"]),
    (b"\0" * 3072, ["is 3072 bytes"]),
    (b"\0" * 3073 * 2 + b"\x0a" + b"\0" * 3072, ["record 2", "byte offset 6146", "label byte 10", "0-9"]),
    (b"\xff" + b"\0" * 3072, ["record 0", "label byte 255"]),
])
def test_binary_batch_is_validated(tmp_path: Path, content: bytes, needles: list[str]) -> None:
    path = tmp_path / "data_batch_1.bin"
    path.write_bytes(content)
    with pytest.raises(DataError) as info:
        read_batch(path, "binary")
    message = str(info.value)
    assert str(path) in message
    for needle in needles:
        assert needle in message


@pytest.mark.parametrize("fmt", FMTS)
def test_missing_batch_file(tmp_path: Path, fmt: str) -> None:
    with pytest.raises(DataError, match="not found"):
        read_batch(tmp_path / "nope", fmt)
    with pytest.raises(DataError, match="not found"):
        read_classes(tmp_path / "nope", fmt)


def test_unknown_format_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="'tfrecord'"):
        read_batch(tmp_path / "x", "tfrecord")
    with pytest.raises(UsageError, match="'tfrecord'"):
        read_classes(tmp_path / "x", "tfrecord")


def meta_file(tmp_path: Path, fmt: str, names: list) -> Path:
    """A meta file of ``fmt`` listing ``names`` (text lines or a pickled dict)."""
    if fmt == "binary":
        p = tmp_path / "batches.meta.txt"
        p.write_bytes(("\n".join(map(str, names)) + "\n\n").encode())
    else:
        meta = {b"label_names": names, b"num_cases_per_batch": 8, b"num_vis": 3072}
        p = write_pickled(tmp_path, meta, "batches.meta")
    return p


@pytest.mark.parametrize("fmt", FMTS)
@pytest.mark.parametrize("names,needle", [
    (CLASSES[:9], "lists 9 class names, expected 10"),
    (CLASSES + ["extra"], "lists 11 class names"),
    ([], "lists 0 class names"),
    (CLASSES[:4] + [""] + CLASSES[5:], "class name 4 is empty"),
    (CLASSES[:9] + ["cat"], "'cat' appears twice"),
])
def test_meta_is_validated(tmp_path: Path, fmt: str, names: list, needle: str) -> None:
    path = meta_file(tmp_path, fmt, names)
    with pytest.raises(DataError) as info:
        read_classes(path, fmt)
    assert needle in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize("names", [[c.encode() for c in CLASSES], CLASSES])
def test_pickled_meta_accepts_bytes_or_str_names(tmp_path: Path, names: list) -> None:
    assert read_classes(meta_file(tmp_path, "python", names), "python") == CLASSES


def test_text_meta_accepts_crlf(tmp_path: Path) -> None:
    p = tmp_path / "batches.meta.txt"
    p.write_bytes(("\r\n".join(CLASSES) + "\r\n\r\n").encode())
    assert read_classes(p, "binary") == CLASSES


@pytest.mark.parametrize("meta,needle", [
    ({b"label_names": CLASSES[:9] + [3]}, "class name 9 is a int"),
    ({b"num_vis": 3072}, "no 'label_names' field"),
    ({b"label_names": "airplane"}, "'label_names' is a str"),
    (CLASSES, "holds a list"),
])
def test_pickled_meta_fields_are_validated(tmp_path: Path, meta: object, needle: str) -> None:
    path = write_pickled(tmp_path, meta, "batches.meta")
    with pytest.raises(DataError) as info:
        read_classes(path, "python")
    assert needle in str(info.value) and str(path) in str(info.value)


# --------------------------------------------------------------------------- check_folder

@pytest.mark.parametrize("fmt", FMTS)
def test_check_folder(tmp_path: Path, fmt: str, fake_archive) -> None:
    layout = LAYOUTS[fmt]
    path, _ = fake_archive(fmt)
    folder = safe_extract(path, tmp_path / "data", layout)
    check_folder(folder, layout)
    (folder / "readme.html").unlink()
    check_folder(folder, layout)  # optional

    with pytest.raises(DataError, match="not found"):
        check_folder(tmp_path / "nope", layout)

    test = folder / layout.test_file
    good = test.read_bytes()
    test.unlink()
    with pytest.raises(DataError, match=f"{layout.test_file} is missing"):
        check_folder(folder, layout)

    test.symlink_to(folder / layout.train_files[0])
    with pytest.raises(DataError, match=f"{layout.test_file} is not a regular file"):
        check_folder(folder, layout)
    test.unlink()

    test.write_bytes(b"")
    with pytest.raises(DataError, match=f"{layout.test_file} is empty"):
        check_folder(folder, layout)

    test.write_bytes(good + b"\0")
    if fmt == "binary":
        with pytest.raises(DataError, match=f"is {len(good) + 1} bytes, not a whole number of 3073-byte records"):
            check_folder(folder, layout)
    else:
        check_folder(folder, layout)  # contents are read_batch's job

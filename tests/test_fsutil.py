"""Atomic writes: the file asked for is whole or as it was, and no temporary file is left behind."""
from __future__ import annotations

import os
import stat
import threading

import pytest

from linclf import fsutil
from linclf.fsutil import atomic_open, hold_lock, write_text_atomic


def test_a_write_replaces_the_file_and_leaves_nothing_else(tmp_path):
    target = tmp_path / "best.yaml"
    target.write_text("old")
    write_text_atomic(target, "new")
    assert target.read_text() == "new" and os.listdir(tmp_path) == ["best.yaml"]


def test_a_new_file_gets_the_mode_the_umask_gives(tmp_path):
    old = os.umask(0o027)
    try:
        write_text_atomic(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o640


def test_a_failure_while_writing_keeps_the_old_file(tmp_path):
    target = tmp_path / "results.json"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="disk on fire"):
        with atomic_open(target, "w") as fh:
            fh.write("half")
            raise RuntimeError("disk on fire")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["results.json"]


def test_ctrl_c_as_the_temporary_file_comes_into_being_leaves_no_file(tmp_path, monkeypatch):
    real_open = os.open

    def open_then_interrupt(*args, **kwargs):
        os.close(real_open(*args, **kwargs))         # the file exists: Ctrl-C before its descriptor is used
        raise KeyboardInterrupt

    target = tmp_path / "best.yaml"
    target.write_text("old")
    monkeypatch.setattr(fsutil.os, "open", open_then_interrupt)     # fsutil.os is os: global for this test
    with pytest.raises(KeyboardInterrupt):
        write_text_atomic(target, "new")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["best.yaml"]


def test_a_missing_folder_is_named_not_the_temporary_file(tmp_path):
    target = tmp_path / "no" / "such.json"
    with pytest.raises(FileNotFoundError, match=f"'{target}'$"):
        write_text_atomic(target, "x")


def test_a_lock_waited_on_is_taken_on_the_file_on_disk_when_its_holder_removes_it(tmp_path):
    """A holder that removes the lock file as it lets go leaves its waiter a deleted file: the waiter must lock the
    new one, or a third process would hold the lock beside it."""
    fcntl = pytest.importorskip("fcntl")
    lock = tmp_path / ".linclf.lock"
    waiting, got = threading.Event(), {}
    with open(lock, "a") as first:
        fcntl.flock(first, fcntl.LOCK_EX)
        second = threading.Thread(target=lambda: got.update(fh=hold_lock(lock, wait=True, on_wait=waiting.set)))
        second.start()
        assert waiting.wait(60)
        os.unlink(lock)                              # the first lets go of a file it removed
    second.join(60)
    with got["fh"]:
        assert os.path.samestat(os.fstat(got["fh"].fileno()), os.stat(lock))
        with pytest.raises(BlockingIOError):                # a third is kept out
            hold_lock(lock, wait=False)


def test_a_lock_held_elsewhere_is_refused_without_wait(tmp_path):
    fcntl = pytest.importorskip("fcntl")
    lock = tmp_path / ".linclf.lock"
    with open(lock, "a") as first:
        fcntl.flock(first, fcntl.LOCK_EX)
        with pytest.raises(BlockingIOError):
            hold_lock(lock, wait=False)
    with hold_lock(lock, wait=False):                # free again
        pass

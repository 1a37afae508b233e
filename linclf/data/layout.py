"""What an official CIFAR-10 archive holds, and checking an extracted folder against it.

``LAYOUTS`` names, for each format (binary, python), the archive, its single
top-level folder and the files in that folder. ``check_folder`` checks the
structure of an extracted folder (required files present, regular, within
the size cap, binary batches a whole number of records) before ``batches``
reads their contents.
``SOURCE_FILE`` is linclf's own record, inside an extracted folder, of
where the folder came from (never part of an archive's data).
``REDOWNLOAD`` and ``REEXTRACT`` are the remedies that end the messages about
a bad archive (``extract``, ``unpickle``) or a bad extracted folder.

Shapes: a batch is X (N, 3072) uint8, rows of 1024 red, 1024 green, 1024 blue
pixels (32 x 32, row-major), and y (N,) uint8 labels in [0, 10).
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError

__all__ = [
    "Layout", "LAYOUTS", "FORMATS", "IMAGE_BYTES", "RECORD_BYTES", "NUM_CLASSES", "MAX_MEMBER_BYTES",
    "SOURCE_FILE", "REDOWNLOAD", "REEXTRACT", "check_folder", "folder_problem",
]

IMAGE_BYTES = 3072            # 32 x 32 x 3 pixels of one image
RECORD_BYTES = 1 + IMAGE_BYTES  # a binary record: 1 label byte, then the pixels
NUM_CLASSES = 10
MAX_MEMBER_BYTES = 200 * 2**20  # the largest member we write (official batches are ~30 MB)
SOURCE_FILE = ".linclf-source.json"  # in an extracted folder: the archive or folder it came from


@dataclass(frozen=True)
class Layout:
    """Where an official CIFAR-10 archive keeps its files (names relative to ``folder``)."""

    archive_name: str               # e.g. "cifar-10-binary.tar.gz"
    folder: str                     # the archive's single top-level folder
    train_files: tuple[str, ...]    # the five training batches, in order
    test_file: str
    meta_file: str                  # class names
    optional_files: tuple[str, ...] = ()

    @property
    def required_files(self) -> tuple[str, ...]:
        """Names of the files an archive must hold (train batches, test batch, meta)."""
        return (*self.train_files, self.test_file, self.meta_file)

    @property
    def all_files(self) -> tuple[str, ...]:
        """Names of every file an archive may hold."""
        return (*self.required_files, *self.optional_files)

    @property
    def member_names(self) -> tuple[str, ...]:
        """Tar member names of every file an archive may hold (``folder/name``)."""
        return tuple(f"{self.folder}/{name}" for name in self.all_files)


LAYOUTS: dict[str, Layout] = {
    "binary": Layout(
        archive_name="cifar-10-binary.tar.gz",
        folder="cifar-10-batches-bin",
        train_files=tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
        test_file="test_batch.bin",
        meta_file="batches.meta.txt",
        optional_files=("readme.html",),
    ),
    "python": Layout(
        archive_name="cifar-10-python.tar.gz",
        folder="cifar-10-batches-py",
        train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test_file="test_batch",
        meta_file="batches.meta",
        optional_files=("readme.html",),
    ),
}
FORMATS = tuple(LAYOUTS)

REDOWNLOAD = "delete it and download the archive again"
REEXTRACT = "delete the folder and extract the archive again"


def check_folder(folder: str | os.PathLike, layout: Layout) -> None:
    """Check an extracted folder's structure: required files present, regular, capped, binary sizes whole records.

    Raises DataError naming the first file that is wrong. Contents are checked
    by ``read_batch`` / ``read_classes``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        what = "not found" if not os.path.lexists(folder) else "not a folder"
        raise DataError(f"CIFAR-10 folder {folder} {what}; extract {layout.archive_name} into its parent folder")
    problem = folder_problem(folder, layout)
    if problem is not None:
        name, why = problem
        raise DataError(f"{folder / name} {why}; {REEXTRACT}")


def folder_problem(folder: Path, layout: Layout) -> tuple[str, str] | None:
    """(file name, what is wrong) for the first bad file of ``folder``, or None if its structure is right."""
    for name in layout.required_files:
        try:
            st = os.lstat(folder / name)
        except FileNotFoundError:
            return name, "is missing"
        except OSError as e:
            return name, f"cannot be read ({e.strerror or e})"
        if not stat.S_ISREG(st.st_mode):
            return name, "is not a regular file (a link, folder or device)"
        if st.st_size == 0:
            return name, "is empty"
        if st.st_size > MAX_MEMBER_BYTES:
            return name, f"is {st.st_size} bytes, above the {MAX_MEMBER_BYTES}-byte cap for a CIFAR-10 file"
        if name.endswith(".bin") and st.st_size % RECORD_BYTES:
            return name, f"is {st.st_size} bytes, not a whole number of {RECORD_BYTES}-byte records"
    return None


def folder_id(folder: Path, layout: Layout) -> dict:
    """Who an extracted folder is, cheaply: its resolved path and each required file's size and mtime."""
    files = {}
    for name in layout.required_files:
        st = (folder / name).stat()
        files[name] = [st.st_size, st.st_mtime_ns]
    return {"folder": str(folder.resolve()), "files": files}

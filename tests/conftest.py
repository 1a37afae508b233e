"""Shared fixtures: tiny fake CIFAR-10 archives in both official layouts.

A fake archive holds a few dozen random images in exactly the official member
layout (five training batches, a test batch, the meta file, readme.html), so
every code path that reads the real archives runs on it in milliseconds.
"""
from __future__ import annotations

import hashlib
import importlib
import os
import io
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

# CI checks the same examples every run, so a failure there reproduces and a pass is not a lottery
# (the seed-dependent search found a squared-hinge example once); locally Hypothesis searches afresh.
if os.environ.get("LINCLF_REQUIRE_OPTIONAL") == "1" or os.environ.get("CI"):
    settings.register_profile("linclf-ci", derandomize=True, database=None)
    settings.load_profile("linclf-ci")

def optional(module: str, minversion: str | None = None):
    """Import an optional dependency, skipping the test without it, unless CI requires it.

    ``.ci/run`` sets LINCLF_REQUIRE_OPTIONAL=1 and installs every extra plus
    scikit-learn, so there a missing package fails instead of skipping.
    """
    if os.environ.get("LINCLF_REQUIRE_OPTIONAL") == "1":
        mod = importlib.import_module(module)
        if minversion is not None:
            top = importlib.import_module(module.split(".")[0])

            def numbers(v: str) -> tuple[int, ...]:
                return tuple(int(p) for p in v.split(".")[:2])

            assert numbers(top.__version__) >= numbers(minversion), f"{module} is older than {minversion}"
        return mod
    return pytest.importorskip(module, minversion=minversion)


CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@dataclass
class FakeCifar:
    """Arrays of a fake archive and where it was written."""

    X_train: np.ndarray  # (5 * per_batch, 3072) uint8
    y_train: np.ndarray  # (5 * per_batch,) int64
    X_test: np.ndarray   # (n_test, 3072) uint8
    y_test: np.ndarray   # (n_test,) int64
    classes: list[str]


def make_arrays(per_batch: int = 8, n_test: int = 10, seed: int = 0, separable: bool = False) -> FakeCifar:
    """Random images and labels (every class present in train) for a fake archive.

    ``separable``: each class is a fixed random template plus noise, so a linear
    classifier can learn it (tests of training reach high accuracy on it).
    """
    rng = np.random.default_rng(seed)
    n = 5 * per_batch
    y_train = np.arange(n) % 10
    rng.shuffle(y_train)
    y_test = np.arange(n_test) % 10
    if separable:
        templates = rng.integers(40, 216, (10, 3072))

        def images(y: np.ndarray) -> np.ndarray:
            noise = rng.integers(-40, 41, (len(y), 3072))
            return np.clip(templates[y] + noise, 0, 255).astype(np.uint8)

        X_train, X_test = images(y_train), images(y_test)
    else:
        X_train = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        X_test = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
    return FakeCifar(X_train=X_train, y_train=y_train.astype(np.int64), X_test=X_test,
                     y_test=y_test.astype(np.int64), classes=list(CLASSES))


def tar_add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    """Add a regular file ``name`` with content ``data`` to an open tar."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = 1262304000
    tar.addfile(info, io.BytesIO(data))


def binary_members(fake: FakeCifar) -> dict[str, bytes]:
    """Member name -> bytes of a ``cifar-10-binary.tar.gz`` holding ``fake``."""

    def records(X: np.ndarray, y: np.ndarray) -> bytes:
        return np.concatenate([y.astype(np.uint8)[:, None], X], axis=1).tobytes()

    root = "cifar-10-batches-bin/"
    out = {root + "batches.meta.txt": ("\n".join(fake.classes) + "\n\n").encode()}
    for i, (Xb, yb) in enumerate(zip(np.array_split(fake.X_train, 5), np.array_split(fake.y_train, 5)), 1):
        out[root + f"data_batch_{i}.bin"] = records(Xb, yb)
    out[root + "test_batch.bin"] = records(fake.X_test, fake.y_test)
    out[root + "readme.html"] = b"<html><body>fake</body></html>\n"
    return out


def python_members(fake: FakeCifar) -> dict[str, bytes]:
    """Member name -> bytes of a ``cifar-10-python.tar.gz`` holding ``fake`` (protocol-2 pickles)."""
    root = "cifar-10-batches-py/"

    def batch(X: np.ndarray, y: np.ndarray, label: str) -> bytes:
        d = {b"batch_label": label.encode(), b"labels": [int(v) for v in y], b"data": X,
             b"filenames": [f"img_{i}.png".encode() for i in range(len(y))]}
        return pickle.dumps(d, protocol=2)

    meta = {b"num_cases_per_batch": len(fake.X_train) // 5,
            b"label_names": [c.encode() for c in fake.classes], b"num_vis": 3072}
    out = {root + "batches.meta": pickle.dumps(meta, protocol=2)}
    for i, (Xb, yb) in enumerate(zip(np.array_split(fake.X_train, 5), np.array_split(fake.y_train, 5)), 1):
        out[root + f"data_batch_{i}"] = batch(Xb, yb, f"training batch {i} of 5")
    out[root + "test_batch"] = batch(fake.X_test, fake.y_test, "testing batch 1 of 1")
    out[root + "readme.html"] = b"<html><body>fake</body></html>\n"
    return out


def write_tar_gz(path: Path, members: dict[str, bytes]) -> str:
    """Write ``members`` as a .tar.gz at ``path``; return its md5 hex digest."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            tar_add(tar, name, data)
    return hashlib.md5(path.read_bytes()).hexdigest()


def small_config(epochs: int = 3, log_every: int = 10, schedule: str = "cosine") -> str:
    """YAML of a config that trains in a fraction of a second on the learnable fake data."""
    return f"""\
data:
  num_val: 50
preprocess:
  std: true
model:
  loss: softmax
  reg: 0.001
optimizer:
  update: adam
  lr: 1.0e-3
  batch_size: 32
  epochs: {epochs}
  schedule: {schedule}
train:
  log_every: {log_every}
"""


ARCHIVE_NAMES = {"binary": "cifar-10-binary.tar.gz", "python": "cifar-10-python.tar.gz"}


@pytest.fixture
def fake_cifar() -> FakeCifar:
    """The arrays every fake archive of a test holds (40 train, 10 test images)."""
    return make_arrays()


@pytest.fixture
def fake_archive(tmp_path: Path, fake_cifar: FakeCifar):
    """Factory: ``fake_archive("binary"|"python") -> (path, md5)`` of a fake official-layout archive."""

    def build(fmt: str = "binary", folder: str = "src") -> tuple[Path, str]:
        d = tmp_path / folder
        d.mkdir(exist_ok=True)
        members = binary_members(fake_cifar) if fmt == "binary" else python_members(fake_cifar)
        path = d / ARCHIVE_NAMES[fmt]
        return path, write_tar_gz(path, members)

    return build


@pytest.fixture
def learnable_data_dir(tmp_path: Path) -> Path:
    """A data folder holding an extracted, cached, linearly separable fake CIFAR-10 (400 train, 100 test)."""
    from linclf.data.cifar10 import load_cifar10

    fake = make_arrays(per_batch=80, n_test=100, seed=1, separable=True)
    path = tmp_path / "learnable.tar.gz"
    md5 = write_tar_gz(path, binary_members(fake))
    data_dir = tmp_path / "data"
    load_cifar10(data_dir, archive=path, md5=md5)
    return data_dir


def invoke(*args):
    """Run the CLI in-process with ``args`` (any path-like turned into text); the click Result."""
    from click.testing import CliRunner

    from linclf.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args])


def one_line_error(result, only: bool = False) -> str:
    """The error line a command ended with (``only``: and nothing else was printed); never a traceback."""
    lines = result.output.strip().splitlines()
    if only:
        assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    else:
        assert lines and lines[-1].startswith("error:"), result.output
    assert "Traceback" not in result.output
    return lines[-1]


def train_cli(config, data_dir, out, *extra):
    """``linclf train --config config --data-dir data_dir --out out --quiet [extra...]``."""
    return invoke("train", "--config", config, "--data-dir", data_dir, "--out", out, "--quiet", *extra)


@pytest.fixture
def config(request, tmp_path: Path) -> Path:
    """The test module's CONFIG text written to a YAML file."""
    p = tmp_path / "small.yaml"
    p.write_text(request.module.CONFIG)
    return p


@pytest.fixture(autouse=True)
def _no_user_data_folders(tmp_path_factory, monkeypatch):
    """Every test gets an empty user cache (the default data folder) and no $LINCLF_DATA_DIR."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
    monkeypatch.delenv("LINCLF_DATA_DIR", raising=False)


def preprocessed(X, mean, scale, bias, dtype=np.float64):
    """[(X - mean) * scale, 1] built the obvious way: the reference for folded preprocessing."""
    Xp = X.astype(np.float64)
    if mean is not None:
        Xp = Xp - mean
    if scale is not None:
        Xp = Xp * scale
    if bias:
        Xp = np.hstack([Xp, np.ones((len(X), 1))])
    return Xp.astype(dtype)

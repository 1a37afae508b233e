"""The user's own pictures as CIFAR-10 rows, and their top classes under a saved model.

``load_image_rows(paths)`` reads each file with Pillow (the optional extra
``image``: ``pip install 'linclf[image]'``, imported on first use) and makes it
look like a CIFAR-10 image:

1. only PNG, JPEG, GIF (first frame), BMP and WEBP are opened (no plugin that
   runs external programs or parses exotic containers);
2. a picture of more than ``MAX_PIXELS`` pixels is refused from its header,
   before anything is decoded (a decompression bomb: a few kB of PNG can
   claim gigabytes of pixels); large JPEGs are decoded at a reduced scale
   (both sides kept >= 512, so the result barely differs from a full decode);
3. the EXIF orientation of camera photos is applied;
4. any mode becomes RGB: transparent pixels are laid over white, 16-bit
   grayscale is scaled to 8 bits, palette, grayscale and CMYK are converted;
5. the largest centred square is cut out and resized to 32x32 with Lanczos
   filtering (it averages over the whole footprint when shrinking, so no
   aliasing). Cropping keeps the proportions CIFAR-10's objects have, at the
   cost of the edges of a wide or tall picture; stretching would keep them
   but squash the object;
6. the pixels are laid out as a CIFAR row: 1024 red, 1024 green, 1024 blue
   values, each plane row-major (``np.asarray(img).transpose(2, 0, 1).reshape(3072)``).

A file that cannot be read becomes an error naming it; the others are still
read. ``image_files`` turns folders into the picture files directly inside
them. ``classify(model, rows, top)`` gives each row's top classes with softmax
probabilities (softmax models) or raw scores (SVM models).
"""
from __future__ import annotations

import os
import struct
import warnings
import zlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Sequence

import numpy as np

from .errors import LinclfError
from .core.losses import softmax
from .core.model import LinearClassifier

__all__ = ["SIDE", "NUM_VALUES", "MAX_PIXELS", "FORMATS", "SUFFIXES", "PillowMissingError", "ImageReadError",
           "ImageRows", "Prediction", "require_pillow", "image_row", "read_image_row", "image_files",
           "load_image_rows", "classify"]

SIDE = 32                         # CIFAR-10 images are 32x32
NUM_VALUES = 3 * SIDE * SIDE      # 3072 values a row
MAX_PIXELS = 89_478_485           # above this a picture is refused: Pillow's default limit (a 64 MP photo passes)
DRAFT_SIDE = 16 * SIDE            # JPEGs decode at a reduced scale only while both sides stay >= this
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP")
SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp")   # what a folder's picture files are named
BACKGROUND = (255, 255, 255)      # what transparent pixels are laid over
INSTALL_HINT = "pip install 'linclf[image]'"


class PillowMissingError(LinclfError):
    """Reading images needs Pillow, which is not installed (exit 2, as for every missing extra)."""

    exit_code = 2


class ImageReadError(LinclfError):
    """One file could not be read as an image; the message names it."""


@dataclass(frozen=True)
class ImageRows:
    """The images that could be read, as rows (N, 3072) uint8 with their paths, and (path, message) errors."""

    rows: np.ndarray
    paths: list[str]
    errors: list[tuple[str, str]]


@dataclass(frozen=True)
class Prediction:
    """The top classes of one image, best first, with their probabilities or scores (``kind``)."""

    classes: list[str]
    values: list[float]
    kind: str                     # "probability" (softmax models) or "score" (SVM models)


def require_pillow() -> ModuleType:
    """The ``PIL.Image`` module, or PillowMissingError with the install command."""
    try:
        from PIL import Image
    except ImportError:
        raise PillowMissingError(f"reading images needs Pillow, which is not installed: {INSTALL_HINT}") from None
    return Image


def image_row(img: Any, Image: ModuleType) -> np.ndarray:
    """A decoded Pillow image of any size and mode as a CIFAR row (3072,) uint8 (steps 3 to 6 above)."""
    from PIL import ImageOps

    img = ImageOps.exif_transpose(img)
    rgb = _to_rgb(img, Image)
    w, h = rgb.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    small = rgb.resize((SIDE, SIDE), Image.Resampling.LANCZOS, box=(left, top, left + side, top + side),
                       reducing_gap=3.0)
    return np.asarray(small, dtype=np.uint8).transpose(2, 0, 1).reshape(NUM_VALUES)


def _to_rgb(img: Any, Image: ModuleType) -> Any:
    """Any Pillow mode as RGB: alpha over white, 16-bit and 32-bit grayscale scaled to 0..255."""
    if img.mode in ("I", "F") or img.mode.startswith("I;"):
        img = img.convert("I") if img.mode != "F" else img
        hi = img.getextrema()[1]
        img = img.point(lambda v: v * (255.0 / 65535.0)) if hi > 255 else img
        img = img.convert("L")
    if img.mode == "P" or img.mode in ("LA", "La", "PA", "RGBa"):
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        base = Image.new("RGBA", img.size, BACKGROUND + (255,))
        return Image.alpha_composite(base, img).convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


def read_image_row(path: str | os.PathLike, Image: ModuleType | None = None) -> np.ndarray:
    """The image file at ``path`` as a CIFAR row (3072,) uint8; ImageReadError says why it cannot be."""
    Image = Image or require_pillow()
    p = os.fspath(path)
    if os.path.isdir(p):
        raise ImageReadError(f"{p}: is a folder, not an image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(p, formats=FORMATS) as img:
                _check_size(p, img.size)
                img.draft("RGB", (DRAFT_SIDE, DRAFT_SIDE))  # JPEG: decode big photos at 1/2..1/8 scale
                img.load()
                return image_row(img, Image)
    except ImageReadError:
        raise
    except FileNotFoundError:
        raise ImageReadError(f"{p}: no such file") from None
    except PermissionError:
        raise ImageReadError(f"{p}: permission denied") from None
    except Image.UnidentifiedImageError:
        raise ImageReadError(f"{p}: not an image ({', '.join(FORMATS)} can be read)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageReadError(f"{p}: refused as a possible decompression bomb: {e}") from None
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, struct.error, zlib.error) as e:
        raise ImageReadError(f"{p}: the image is damaged or truncated ({type(e).__name__}: {e})") from None


def _check_size(path: str, size: tuple[int, int]) -> None:
    """Refuse a picture whose header claims more than MAX_PIXELS pixels (or none)."""
    w, h = size
    if w < 1 or h < 1:
        raise ImageReadError(f"{path}: the image is empty ({w}x{h} pixels)")
    if w * h > MAX_PIXELS:
        raise ImageReadError(f"{path}: {w}x{h} is {w * h:,} pixels, more than the {MAX_PIXELS:,} linclf reads "
                             "(a decompression bomb?); shrink the picture first")


def image_files(paths: Sequence[str | os.PathLike]) -> tuple[list[str], dict[str, str]]:
    """``paths`` with each folder replaced by its picture files (by ``SUFFIXES``, directly inside, by name),
    and {folder: message} of the folders that hold none (they stay in the list, where they were given)."""
    files: list[str] = []
    empty: dict[str, str] = {}
    for path in map(os.fspath, paths):
        if not os.path.isdir(path):
            files.append(path)
            continue
        try:
            names = sorted(n for n in os.listdir(path) if n.lower().endswith(SUFFIXES))
        except OSError as e:
            files.append(path)
            empty[path] = f"{path}: the folder cannot be read ({e.strerror})"
            continue
        found = [f for f in (os.path.join(path, n) for n in names) if os.path.isfile(f)]
        files += found or [path]
        if not found:
            empty[path] = f"{path}: a folder with no {', '.join(FORMATS)} files in it"
    return files, empty


def load_image_rows(paths: Sequence[str | os.PathLike]) -> ImageRows:
    """Rows (N, 3072) uint8 of the files that could be read, in order, and (path, message) of the others."""
    Image = require_pillow()
    rows: list[np.ndarray] = []
    ok: list[str] = []
    errors: list[tuple[str, str]] = []
    for path in paths:
        try:
            rows.append(read_image_row(path, Image))
            ok.append(os.fspath(path))
        except ImageReadError as e:
            errors.append((os.fspath(path), str(e)))
    stacked = np.stack(rows) if rows else np.empty((0, NUM_VALUES), dtype=np.uint8)
    return ImageRows(stacked, ok, errors)


def classify(model: LinearClassifier, rows: np.ndarray, top: int = 3,
             mirror_rows: np.ndarray | None = None) -> list[Prediction]:
    """The ``top`` classes of each row (N, P) the model takes (pixels, or an extractor's features), best first:
    probabilities or SVM scores.

    With ``mirror_rows`` (N, P), the rows of each picture's mirror, from the mean of both scores.
    """
    scores = model.scores(rows, mirror_rows)                      # (N, C), preprocessing folded in
    kind = "probability" if model.loss == "softmax" else "score"
    values = softmax(scores) if kind == "probability" else scores.astype(np.float64)
    k = min(max(int(top), 1), model.num_classes)
    order = np.argsort(-values, axis=1, kind="stable")[:, :k]     # (N, k), ties keep class order
    return [Prediction([model.classes[c] for c in idx], [float(values[i, c]) for c in idx], kind)
            for i, idx in enumerate(order)]

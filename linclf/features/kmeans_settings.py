"""The parameters of ``KMeansFeatures`` once checked: one frozen dataclass and the check that builds it.

``check_settings`` takes the estimator's ``get_params()`` as given (scikit-learn
stores them unchecked) and returns ints, floats, a numpy dtype and the thread
count resolved, or raises a ValueError naming the first bad parameter. The
estimator (``kmeans``) and its extraction work (``encode``) both read it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..threads import PARALLEL, resolve_workers
from .checks import check_float, check_int
from .patches import CHANNELS, IMAGE, map_size

__all__ = ["ENCODERS", "KMeansSettings", "check_settings"]

ENCODERS = ("triangle", "soft")


@dataclass(frozen=True)
class KMeansSettings:
    """A KMeansFeatures's parameters once checked (ints, floats, a numpy dtype, the thread count resolved)."""

    k: int
    patch: int
    stride: int
    patches: int
    iterations: int
    encoder: str
    alpha: float
    pool: int
    power: float
    norm_eps: float
    zca_eps: float
    seed: int
    progress: bool
    dtype: np.dtype
    threads: int
    split: bool
    parallel: str
    block_patches: int
    block_images: int

    @property
    def patch_dim(self) -> int:
        return CHANNELS * self.patch * self.patch

    @property
    def map_size(self) -> int:
        return map_size(self.patch, self.stride)

    @property
    def n_codes(self) -> int:
        return self.k * (2 if self.split else 1)

    @property
    def n_features(self) -> int:
        return self.pool * self.pool * self.n_codes


def check_settings(p: dict[str, Any]) -> KMeansSettings:
    """The parameters ``p`` (KMeansFeatures's get_params) checked; ValueError naming the first bad one."""
    k = check_int("k", p["k"], 1)
    patch = check_int("patch", p["patch"], 1, IMAGE, " (a patch must fit a 32x32 image)")
    stride = check_int("stride", p["stride"], 1, IMAGE - patch + 1,
                       f" (at most 32 - patch + 1 = {IMAGE - patch + 1})")
    patches = check_int("patches", p["patches"], 1)
    if k > patches:
        raise ValueError(f"k: expected at most the number of sampled patches (patches={patches}), got {k}")
    iterations = check_int("iterations", p["iterations"], 1)
    encoder = p["encoder"]
    if not isinstance(encoder, str) or encoder not in ENCODERS:
        raise ValueError(f"encoder: expected one of {', '.join(ENCODERS)}, got {encoder!r}")
    alpha = check_float("alpha", p["alpha"])
    m = map_size(patch, stride)
    pool = check_int("pool", p["pool"], 1, m, f" (the map of patch {patch}, stride {stride} is {m}x{m})")
    power = check_float("power", p["power"], 0.0, strict=True)
    norm_eps = check_float("norm_eps", p["norm_eps"], 0.0, strict=True)
    zca_eps = check_float("zca_eps", p["zca_eps"], 0.0, strict=True)
    seed = check_int("seed", p["seed"], 0)
    try:
        dtype = np.dtype(p["dtype"])
    except TypeError:
        dtype = None
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype: expected float32 or float64, got {p['dtype']!r}")
    threads = check_int("threads", resolve_workers() if p["threads"] is None else p["threads"], 1)
    split = p["split"]
    if not isinstance(split, (bool, np.bool_)):
        raise ValueError(f"split: expected true or false, got {split!r}")
    if split and encoder != "soft":
        raise ValueError(f"split: expected false with encoder {encoder!r} (the sign split is for 'soft')")
    parallel = p["parallel"]
    if not isinstance(parallel, str) or parallel not in PARALLEL:
        raise ValueError(f"parallel: expected one of {', '.join(PARALLEL)}, got {parallel!r}")
    return KMeansSettings(k, patch, stride, patches, iterations, encoder, alpha, pool, power, norm_eps, zca_eps, seed,
                          bool(p["progress"]), dtype, threads, bool(split), parallel,
                          check_int("block_patches", p["block_patches"], 1),
                          check_int("block_images", p["block_images"], 1))

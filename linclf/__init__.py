"""linclf: linear classifiers (multiclass SVM, softmax, one-vs-all squared hinge) on CIFAR-10 with NumPy.

The public API (``from linclf import ...``):

- data: ``load_cifar10`` (uint8 rows X (N, 3072), int64 labels, class names);
- losses: ``svm_loss``, ``softmax_loss``, ``squared_hinge_loss`` (W (C, D), X (N, D), y (N,) -> loss, dW),
  their naive twins, ``l2_reg``, ``data_loss`` (raw rows, folded preprocessing);
- gradient checking: ``numerical_gradient``, ``sparse_check``, ``check_loss``, ``rel_error``;
- update rules and schedules: ``make_update``, ``lr_at``;
- the model: ``LinearClassifier``; configs: ``Config``, ``load_config``;
- scikit-learn style estimators: ``LinearSVM``, ``SoftmaxClassifier``, and the feature
  extractors ``KMeansFeatures``, ``HogColorFeatures`` (fit / transform on uint8 image rows),
  so ``Pipeline([("features", KMeansFeatures()), ("clf", SoftmaxClassifier())])`` works.

Submodules are imported on first use, so ``import linclf`` stays cheap.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "load_cifar10": "data.cifar10", "CIFAR10": "data.arrays", "mirrored": "data.splits",
    "svm_loss": "core.losses", "softmax_loss": "core.losses", "svm_loss_naive": "core.losses",
    "softmax_loss_naive": "core.losses", "squared_hinge_loss": "core.losses",
    "squared_hinge_loss_naive": "core.losses", "l2_reg": "core.losses", "data_loss": "core.objective",
    "numerical_gradient": "core.gradcheck", "sparse_check": "core.gradcheck", "check_loss": "core.gradcheck",
    "rel_error": "core.gradcheck",
    "make_update": "core.optim", "lr_at": "core.optim",
    "LinearClassifier": "core.model",
    "Config": "config", "load_config": "config",
    "LinearSVM": "estimators", "SoftmaxClassifier": "estimators",
    "KMeansFeatures": "features.kmeans", "HogColorFeatures": "features.hog_color",
    "LinclfError": "errors",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    """Import the submodule that defines ``name`` on first access (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'linclf' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__

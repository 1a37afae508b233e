"""What linclf says of a run's settings before it trains, and what it advises when a run ends at chance level.

The messages name config keys (``optimizer.lr``); the estimators reword them
into their parameters (``lr``), so the CLI and the Python API say the same.
"""
from __future__ import annotations

from ..config import Config
from ..core.optim import l2_diverges
from ..core.search import SEARCH_METHODS

__all__ = ["setting_warnings", "chance_advice", "l2_growth"]


def setting_warnings(cfg: Config, n_train: int) -> dict[str, str]:
    """What in ``cfg`` will not do what it seems to on ``n_train`` training rows: a one-line message by the key
    it is about."""
    o, m = cfg.optimizer, cfg.model
    out = {}
    if o.method in SEARCH_METHODS:
        # a length set by hand (epochs, or iterations off their default) would be silently ignored
        key = ("optimizer.epochs" if o.epochs is not None else
               "optimizer.iterations" if o.iterations != Config().optimizer.iterations else None)
        if key:
            out[key] = (f"{key} {o.epochs if o.epochs is not None else o.iterations:g} is not used by {o.method}: "
                        f"it tries optimizer.trials ({o.trials}) candidates")
        return out
    if o.method == "sgd" and o.batch_size > n_train:
        out["optimizer.batch_size"] = (f"optimizer.batch_size {o.batch_size} is more than the {n_train} training "
                                       "rows: every step takes all of them (full-batch gradient descent)")
    if l2_diverges(o.update, o.lr, m.reg):
        out["optimizer.lr"] = l2_growth(o.lr, m.reg)
    return out


def chance_advice(method: str) -> str:
    """The settings to look at when a run of optimizer.method ``method`` ends at chance level ("check ...")."""
    if method in SEARCH_METHODS:
        return "optimizer.trials (more candidates), model.init_scale and the data"
    return ("optimizer.lr (too high or too low), model.reg (too high: it holds W at 0), the length "
            "(optimizer.epochs or optimizer.iterations) and the data")


def l2_growth(lr: float, reg: float) -> str:
    """Why plain SGD at ``lr`` with L2 strength ``reg`` (lr x reg > 1, ``optim.l2_diverges``) grows W whatever the
    data, and what to change."""
    return (f"with optimizer.update sgd the L2 term alone grows W when optimizer.lr x model.reg > 1 (here "
            f"{lr * reg:g}: each step multiplies W by 1 - 2 lr reg = {1 - 2 * lr * reg:g}); use optimizer.lr below "
            f"{1 / reg:.3g} or a smaller model.reg")

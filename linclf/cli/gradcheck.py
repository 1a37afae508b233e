"""``linclf gradcheck``: analytic against numerical gradients, as a table or JSON."""
from __future__ import annotations

from typing import Any

import click

from .app import cli, command_config, config_options, data_options, echo_json, quiet_option, show_progress, workers


@cli.command(short_help="Check analytic gradients against numerical ones.")
@config_options
@data_options
@click.option("--checks", type=click.IntRange(1, 100000), default=20, show_default=True,
              help="Random coordinates of W checked per part (data, reg, total).")
@click.option("--h", "h", type=click.FloatRange(0, 1, min_open=True), default=1e-5, show_default=True,
              help="Finite-difference step.")
@click.option("--method", type=click.Choice(["centered", "forward"]), default="centered", show_default=True,
              help="centered (f(x+h)-f(x-h))/2h, or the lecture's one-sided (f(x+h)-f(x))/h.")
@click.option("--batch", type=click.IntRange(1, 100000), default=100, show_default=True,
              help="Training rows (or synthetic rows of the same width) the loss is evaluated on.")
@click.option("--synthetic", is_flag=True, help="Use small random data instead of CIFAR-10 (no download).")
@click.option("--threshold", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="Largest relative error that passes (default 1e-7); a coordinate within the method's own "
                   "error bound (rounding; forward: its truncation error h*f''/2) passes too, where that bound is "
                   "below a tenth of the gradient.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as one JSON object.")
@quiet_option
def gradcheck(config_path: str | None, overrides: tuple[str, ...], data_dir: str | None, archive: str | None,
              checks: int, h: float, method: str, batch: int, synthetic: bool, threshold: float | None,
              as_json: bool, quiet: bool) -> None:
    """Compare the analytic gradient of the configured loss with a numerical one (float64).

    Checks the data loss alone, the L2 term alone and their sum at the
    configured initial W, on the rows the classifier is trained on: pixels,
    or the features of features.kind (k-means and HOG features are built and
    cached as `linclf train` builds them). SVM coordinates whose perturbation
    crosses a hinge (a kink) are reported, not failed, and so are those the
    difference cannot resolve at this h (its error bound above a tenth of the
    gradient). Exit 0 when every other coordinate passes, 1 when one fails or
    a part has none left to judge (inconclusive).
    """
    from ..errors import GradcheckError
    from ..training.gradients import run_gradcheck

    cfg = command_config(config_path, overrides, {"data.archive": archive})
    res = run_gradcheck(cfg, synthetic=synthetic, batch=batch, checks=checks, h=h, method=method,
                        threshold=threshold, data_dir=data_dir, quiet=not show_progress(quiet), workers=workers())
    if as_json:
        echo_json(res)
    else:
        click.echo(_gradcheck_table(res))
    failed = [(n, p) for n, p in res["parts"].items() if not p["passed"] and not p["inconclusive"]]
    if not failed and not res["passed"]:
        name, part = next((n, p) for n, p in res["parts"].items() if p["inconclusive"])
        raise GradcheckError(f"gradient check inconclusive: the {name} part judged none of its {len(part['checks'])} "
                             f"coordinates ({', '.join(_not_judged(res, part))}); use {_inconclusive_hint(res, part)}")
    if failed:
        name, part = max(failed, key=lambda item: item[1]["worst_rel_error"])
        worst = next(c for c in part["checks"] if list(c["index"]) == list(part["worst_index"]))
        raise GradcheckError(f"gradient check failed: the {name} part's worst relative error is "
                             f"{part['worst_rel_error']:.3g} at W{list(part['worst_index'])} (analytic "
                             f"{worst['analytic']:.6g}, numerical {worst['numerical']:.6g}), above the threshold "
                             f"{res['threshold']:g} ({res['method']}, h={res['h']:g}){_gradcheck_hint(cfg, res, name)}")


def _not_judged(res: dict, part: dict) -> list[str]:
    """The part's coordinates left out of the verdict, and why: at a kink, or beyond the difference's resolution."""
    from ..core.gradcheck import RESOLUTION

    return [f"{part['kinks']} at a kink"] * bool(part["kinks"]) + \
        [f"{part['unresolved']} where the {res['method']} difference's error bound at h={res['h']:g} exceeds "
         f"{RESOLUTION:g} of the gradient"] * bool(part["unresolved"])


def _inconclusive_hint(res: dict, part: dict) -> str:
    """What would let the check judge some coordinates: centered differences, the default h, more of them."""
    ways = ["--method centered"] * (res["method"] == "forward") + ["--h 1e-5"] * (res["h"] != 1e-5) + \
        ["more --checks"] * bool(part["kinks"])
    return " or ".join(ways) if ways else "more --checks, or float64 data at a W away from 0"


def _gradcheck_hint(cfg: Any, res: dict, part: str) -> str:
    """Why a correct gradient can still miss the threshold, when the settings suggest it."""
    if res["method"] == "forward":
        return ("; the difference is outside even the forward method's error bound (h*f''/2): the gradient "
                "is likely wrong; confirm with --method centered")
    standardized = cfg.preprocess.std or (cfg.features.kind != "pixels" and cfg.features.standardize)
    if part != "reg" and cfg.model.loss == "softmax" and not standardized and res["data"] != "synthetic":
        return ("; on pixel-scale features (preprocess.std false) the centered difference's h^2 error is "
                "large for softmax: try --set preprocess.std=true or a looser --threshold")
    return ""


def _gradcheck_table(res: dict) -> str:
    """The gradient check as text: a table per part and the loss at initialisation."""
    lines = [f"{res['loss']} loss at init {res['init_loss']:.4f} (expected about {res['expected_init_loss']:.4f} "
             f"for small W; init_scale {res['init_scale']:g}); reg term {res['values']['reg']:.4g}",
             f"{res['method']} differences, h={res['h']:g}, threshold {res['threshold']:g} (or within the error "
             f"bound), {res['batch']} {res['data']} rows of {res['dim']} values ({res['features']}), float64"]
    for name, part in res["parts"].items():
        verdict = "ok" if part["passed"] else "INCONCLUSIVE" if part["inconclusive"] else "FAILED"
        worst = "n/a" if part["worst_rel_error"] is None else f"{part['worst_rel_error']:.3g}"
        apart = _not_judged(res, part)
        lines += ["", f"[{name}] {verdict}: worst relative error {worst} over {part['checked']} coordinates"
                  + (f", {' and '.join(apart)} (not counted)" if apart else ""),
                  f"{'coordinate':>14}  {'analytic':>14}  {'numerical':>14}  {'rel error':>10}  "
                  f"{'error bound':>11}  kink"]
        for c in part["checks"]:
            lines.append(f"{str(tuple(c['index'])):>14}  {c['analytic']:>14.6e}  {c['numerical']:>14.6e}  "
                         f"{c['rel_error']:>10.3g}  {c['bound']:>11.3g}  {'yes' if c['kink'] else ''}")
    inconclusive = not res["passed"] and all(p["passed"] or p["inconclusive"] for p in res["parts"].values())
    lines += ["", "PASSED" if res["passed"] else "INCONCLUSIVE" if inconclusive else "FAILED"]
    return "\n".join(lines)

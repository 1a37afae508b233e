"""The ``linclf`` command line: thin Click commands over the library.

This is the only module that imports click or prints. Library errors become
one line on stderr and an exit code: 0 ok, 1 runtime failure, 2 usage or
config error, 3 accuracy below ``--expect-accuracy``, 130 interrupted.
``linclf --debug COMMAND`` shows the traceback instead.
"""
from __future__ import annotations

import json
import sys
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable

import click

from . import __version__
from .errors import AccuracyError, LinclfError, UsageError
from .fsutil import json_text

_DEBUG = False


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line on stderr: ``warning: ...``."""
    click.echo(f"warning: {message}", err=True)


class _Group(click.Group):
    """A group that maps library exceptions to one-line messages and exit codes."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        """Click's own usage errors (unknown option or command, bad value) as one line, exit 2, like ours."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as e:
            where = f"; see `{e.ctx.command_path} --help`" if e.ctx is not None else ""
            click.echo(f"error: {e.format_message().rstrip('.')}{where}", err=True)
            sys.exit(e.exit_code)
        except click.ClickException as e:
            click.echo(f"error: {e.format_message()}", err=True)
            sys.exit(e.exit_code)
        except click.exceptions.Abort:
            click.echo("interrupted", err=True)
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        from .errors import LinclfWarning

        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            warnings.simplefilter("always", LinclfWarning)     # each of ours once per command, every command
            # deprecation notices are for developers (Python hides them outside __main__); a test
            # runner's filters must not turn them into user-facing lines
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                return super().invoke(ctx)
            except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
                raise
            except LinclfError as e:
                if _DEBUG:
                    traceback.print_exc()
                click.echo(f"error: {e}", err=True)
                ctx.exit(e.exit_code)
            except KeyboardInterrupt:
                click.echo("interrupted", err=True)
                ctx.exit(130)
            except OSError as e:
                if _DEBUG:
                    traceback.print_exc()
                where = f" ({e.filename})" if getattr(e, "filename", None) else ""
                click.echo(f"error: {e.strerror or e}{where}", err=True)
                ctx.exit(1)
            except Exception as e:  # a bug: say so in one line, the traceback with --debug
                if _DEBUG:
                    traceback.print_exc()
                click.echo(f"internal error: {type(e).__name__}: {e} (run `linclf --debug ...` for the "
                           "traceback and please report it)", err=True)
                ctx.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="linclf")
@click.option("--debug", is_flag=True, help="Show the full traceback of an error.")
@click.option("--workers", type=click.IntRange(min=1), default=None, metavar="N",
              help="CPUs to compute on (default: $LINCLF_WORKERS, else all usable); the results do not "
                   "depend on it.")
@click.pass_context
def cli(ctx: click.Context, debug: bool, workers: int | None) -> None:
    """Linear classifiers (multiclass SVM, softmax) on CIFAR-10 with NumPy.

    \b
    linclf download --archive cifar-10-binary.tar.gz   verify, extract, cache (user cache folder)
    linclf train --config configs/softmax.yaml         train, evaluate, write runs/<name>-<time>/
    linclf features --config configs/kmeans.yaml       build the feature cache ahead of training
    linclf eval --model runs/.../model.npz             accuracy, per class, confusion matrix
    linclf gradcheck --config configs/svm.yaml         analytic vs numerical gradients
    linclf sweep --config configs/softmax.yaml --param optimizer.lr=log:1e-4:1e-2
    linclf plot runs/...                               loss, accuracy, templates, confusion
    linclf predict --model runs/.../model.npz cat.jpg  top 3 classes of your own images

    Exit codes: 0 ok, 1 failure, 2 usage or config error, 3 accuracy below
    --expect-accuracy, 130 interrupted.
    """
    global _DEBUG
    _DEBUG = debug
    from .threads import resolve_workers

    ctx.obj = {"workers": resolve_workers(workers)}     # a bad $LINCLF_WORKERS: exit 2 before any work


# --------------------------------------------------------------- shared options


def _workers() -> int:
    """The CPUs ``linclf --workers`` (or $LINCLF_WORKERS) allows, resolved by the group."""
    return click.get_current_context().find_root().obj["workers"]


def _config_options(f: Callable) -> Callable:
    f = click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
                     help="Override one config value (repeatable), e.g. --set optimizer.lr=1e-3.")(f)
    f = click.option("--config", "config_path", type=click.Path(dir_okay=True), default=None,
                     help="YAML config; holds only what differs from the defaults (`linclf config` shows them).")(f)
    return f


def _data_options(f: Callable) -> Callable:
    f = click.option("--archive", type=click.Path(), default=None,
                     help="Use a CIFAR-10 archive or extracted folder already on disk instead of downloading.")(f)
    f = click.option("--data-dir", type=click.Path(file_okay=False), default=None,
                     help="Data folder (default: $LINCLF_DATA_DIR, then data.dir, then the user cache folder, "
                          "e.g. ~/.cache/linclf; a run remembers the folder it was trained from).")(f)
    return f


def _quiet_option(f: Callable) -> Callable:
    return click.option("--quiet", "-q", is_flag=True, help="No progress bars or summaries on stderr.")(f)


def _progress(quiet: bool) -> bool:
    """Show progress bars only on a terminal and when not asked to be quiet."""
    return not quiet and sys.stderr.isatty()


def _load_config(config_path: str | None, overrides: tuple[str, ...], extra: dict | None = None):
    from .config import load_config, with_values

    cfg = load_config(config_path, overrides)
    if extra:
        cfg = with_values(cfg, {k: v for k, v in extra.items() if v is not None}, source="command line")
    return cfg


def _check_accuracy(name: str, value: float, expect: float | None) -> None:
    if expect is not None and not value >= expect:
        raise AccuracyError(f"{name} accuracy {value:.4f} is below the expected {expect:.4f}")


# --------------------------------------------------------------------- config


@cli.command("config", short_help="Print the resolved config.")
@_config_options
def config_cmd(config_path: str | None, overrides: tuple[str, ...]) -> None:
    """Print the resolved config (defaults, then FILE, then --set) as YAML."""
    from .config import to_yaml

    click.echo(to_yaml(_load_config(config_path, overrides)), nl=False)


# ------------------------------------------------------------------- download


@cli.command(short_help="Download, verify, extract and cache CIFAR-10.")
@_data_options
@click.option("--format", "fmt", type=click.Choice(["binary", "python"]), default=None,
              help="Archive format: binary (default; no pickle is ever loaded) or python.")
@click.option("--url", "urls", multiple=True, metavar="URL",
              help="A mirror to try before the official URL (repeatable, tried in order).")
@click.option("--md5", default=None, metavar="HEX", help="Expected md5 of the archive (a mirror's or --archive's).")
@click.option("--force", is_flag=True, help="Verify, download and extract again even if already present.")
@_config_options
@_quiet_option
def download(data_dir: str | None, archive: str | None, fmt: str | None, urls: tuple[str, ...], md5: str | None,
             force: bool, config_path: str | None, overrides: tuple[str, ...], quiet: bool) -> None:
    """Download, verify, extract and cache CIFAR-10 (or take an archive already on disk)."""
    from .data.cifar10 import load_prepared, prepare, resolve_data_dir

    cfg = _load_config(config_path, overrides, {"data.format": fmt, "data.md5": md5, "data.archive": archive,
                                                "data.urls": list(urls) or None})
    d = cfg.data
    target = resolve_data_dir(data_dir, d.dir)
    prepared = prepare(target, d.format, archive=d.archive, md5=d.md5, urls=d.urls, download=True, force=force,
                       timeout=d.timeout, retries=d.retries, quiet=not _progress(quiet))
    data = load_prepared(prepared, target, rebuild=force)     # every batch read and validated once, then cached
    if not quiet:
        click.echo(f"CIFAR-10 ({prepared.format}) {prepared.status}: {prepared.folder} "
                   f"({len(data.y_train)} training and {len(data.y_test)} test images)", err=True)


# ---------------------------------------------------------------------- train


@cli.command("train", short_help="Train, evaluate and save a linear classifier.")
@_config_options
@_data_options
@click.option("--out", type=click.Path(), default=None,
              help="Run folder (default: runs/<config name>-<timestamp>/).")
@click.option("--overwrite", is_flag=True, help="Allow --out to replace the files of an earlier run.")
@click.option("--resume", type=click.Path(), default=None, metavar="CHECKPOINT",
              help="Continue a run from its checkpoint.npz (optimizer state and step count included).")
@click.option("--expect-accuracy", type=click.FloatRange(0, 1), default=None, metavar="X",
              help="Exit with code 3 when the test accuracy is below X (a fraction), for CI gates.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as one JSON object on stdout.")
@click.option("--plots", is_flag=True,
              help="After training, write loss, accuracy, templates and confusion PNGs into the run folder "
                   "(needs matplotlib: pip install 'linclf[plot]').")
@_quiet_option
def train_cmd(config_path: str | None, overrides: tuple[str, ...], data_dir: str | None, archive: str | None,
              out: str | None, overwrite: bool, resume: str | None, expect_accuracy: float | None,
              as_json: bool, plots: bool, quiet: bool) -> None:
    """Train a linear classifier as the config says; report train / val / test accuracy."""
    from .config import parse_override, with_values
    from .training.runs import check_out_dir, config_of_checkpoint, default_out_dir, run_train

    if plots:
        from .plots.figure import require_matplotlib

        require_matplotlib()            # before training, not after an hour of it
    resume_arrays = None
    if resume is not None:
        if config_path is not None:
            raise UsageError("--resume takes its config from the checkpoint; drop --config (use --set to change values)")
        cfg, resume_arrays = config_of_checkpoint(resume, dict(parse_override(o) for o in overrides))
        if archive is not None:
            cfg = with_values(cfg, {"data.archive": archive}, source="--archive")
        out_dir = Path(out) if out else Path(resume).parent
    else:
        cfg = _load_config(config_path, overrides, {"data.archive": archive})
        out_dir = Path(out) if out else default_out_dir(config_path)
    out_dir = check_out_dir(out_dir, overwrite=overwrite, resuming=resume is not None)
    if cfg.optimizer.method in ("random_search", "random_local_search") and resume is not None:
        raise UsageError(f"--resume works for sgd and gd runs, not {cfg.optimizer.method}")
    res = run_train(cfg, out_dir, data_dir=data_dir, resume=resume, resume_arrays=resume_arrays,
                    progress=_progress(quiet), quiet=not _progress(quiet), workers=_workers())
    m = res.metrics
    figures = _plot_run(out_dir, None, "val", data_dir, None, quiet) if plots else []
    if as_json:
        extra = {"plots": [str(f) for f in figures]} if plots else {}
        click.echo(json_text({**m, "out_dir": str(out_dir), **extra}))
    if not quiet:
        val = "n/a" if m["val_accuracy"] is None else f"{m['val_accuracy']:.4f}"
        stream_err = as_json
        o = cfg.optimizer
        what = (f"{cfg.model.loss} / {o.method}: {m['steps']} trials" if o.method in ("random_search",
                "random_local_search") else f"{cfg.model.loss} / {o.method} ({o.update}): {m['steps']} steps")
        for line in (
            f"run folder: {out_dir}",
            *(f"figure: {f}" for f in figures),
            f"{what}, {m['seconds']['train']:.2f} s training, final loss {m['final_loss']:.4f}"
            + (f"; {m['stopped']}" if m["stopped"] != "completed" else ""),
            f"train accuracy {m['train_accuracy']:.4f}   val accuracy {val}",
            f"test accuracy {m['test_accuracy']:.4f}",
        ):
            click.echo(line, err=stream_err)
    _check_accuracy("test", m["test_accuracy"], expect_accuracy)


# ------------------------------------------------------------------- features


@cli.command("features", short_help="Fit the feature extractor and cache every split's features.")
@_config_options
@_data_options
@click.option("--json", "as_json", is_flag=True, help="Print what was built as one JSON object on stdout.")
@_quiet_option
def features_cmd(config_path: str | None, overrides: tuple[str, ...], data_dir: str | None, archive: str | None,
                 as_json: bool, quiet: bool) -> None:
    """Build the features the config's ``features`` section asks for, ahead of training.

    Fits the extractor on the training split (k-means: patches, whitening,
    centroids) and writes the train, val and test features (float32) into the
    feature cache in the data folder; `linclf train`, `sweep` and `eval` then
    reuse them. A stale or corrupt cache entry is rebuilt with a notice.
    """
    from .training.runs import run_features

    cfg = _load_config(config_path, overrides, {"data.archive": archive})
    info = run_features(cfg, data_dir=data_dir, progress=_progress(quiet), quiet=not _progress(quiet),
                        workers=_workers())
    if as_json:
        click.echo(json.dumps(info))
    if not quiet:
        for name, shape in info["splits"].items():
            click.echo(f"{name}: {shape[0]} rows x {shape[1]} features", err=as_json)
        click.echo(f"{info['kind']} features ready in {info['cache']} ({info['seconds']:.1f} s)", err=as_json)


# ----------------------------------------------------------------------- eval


@cli.command("eval", short_help="Score a saved model: accuracy, per class, confusion.")
@click.option("--model", "model_path", type=click.Path(), required=True, help="A model.npz written by train.")
@click.option("--split", "split_name", type=click.Choice(["test", "val", "train"]), default="test",
              help="Which split of the model's own config to score.")
@_data_options
@click.option("--expect-accuracy", type=click.FloatRange(0, 1), default=None, metavar="X",
              help="Exit with code 3 when the accuracy is below X (a fraction).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as one JSON object.")
@_quiet_option
def eval_cmd(model_path: str, split_name: str, data_dir: str | None, archive: str | None,
             expect_accuracy: float | None, as_json: bool, quiet: bool) -> None:
    """Accuracy, per-class accuracy and confusion matrix of a saved model."""
    from .training.runs import run_eval

    model, ev = run_eval(model_path, split_name, data_dir=data_dir, archive=archive, quiet=not _progress(quiet),
                         progress=_progress(quiet), workers=_workers())
    if as_json:
        click.echo(json_text({"model": model_path, "split": split_name, **ev.to_dict(model.classes)}))
    else:
        click.echo(_eval_table(model.classes, ev, split_name))
    _check_accuracy(split_name, ev.accuracy, expect_accuracy)


def _eval_table(classes: tuple[str, ...], ev: Any, split_name: str) -> str:
    """Accuracy, per-class accuracy and the confusion matrix as aligned text."""
    width = max(6, max(len(c) for c in classes))
    short = [c[:5] for c in classes]
    lines = [f"{split_name} accuracy {ev.accuracy:.4f} ({int(round(ev.accuracy * ev.count))} of {ev.count})", "",
             f"{'class':<{width}}  accuracy   " + " ".join(f"{s:>5}" for s in short)]
    for c, acc, row in zip(classes, ev.per_class, ev.confusion):
        a = "   n/a" if acc != acc else f"{acc:6.4f}"
        lines.append(f"{c:<{width}}  {a}     " + " ".join(f"{v:>5d}" for v in row))
    lines.append("(rows: true class, columns: predicted class)")
    return "\n".join(lines)


# ------------------------------------------------------------------ gradcheck


@cli.command(short_help="Check analytic gradients against numerical ones.")
@_config_options
@_data_options
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
                   "error bound (rounding; forward: its truncation error h*f''/2) passes too.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as one JSON object.")
@_quiet_option
def gradcheck(config_path: str | None, overrides: tuple[str, ...], data_dir: str | None, archive: str | None,
              checks: int, h: float, method: str, batch: int, synthetic: bool, threshold: float | None,
              as_json: bool, quiet: bool) -> None:
    """Compare the analytic gradient of the configured loss with a numerical one (float64).

    Checks the data loss alone, the L2 term alone and their sum at the
    configured initial W, on the rows the classifier is trained on: pixels,
    or the features of features.kind (k-means and HOG features are built and
    cached as `linclf train` builds them). SVM coordinates whose perturbation
    crosses a hinge (a kink) are reported, not failed. Exit 0 when every other
    relative error is at most the threshold, 1 otherwise.
    """
    from .errors import GradcheckError
    from .training.runs import run_gradcheck

    cfg = _load_config(config_path, overrides, {"data.archive": archive})
    res = run_gradcheck(cfg, synthetic=synthetic, batch=batch, checks=checks, h=h, method=method,
                        threshold=threshold, data_dir=data_dir, quiet=not _progress(quiet))
    if as_json:
        click.echo(json_text(res))
    else:
        click.echo(_gradcheck_table(res))
    if not res["passed"]:
        name, part = max(((n, p) for n, p in res["parts"].items() if not p["passed"]),
                         key=lambda item: item[1]["worst_rel_error"])
        worst = next(c for c in part["checks"] if list(c["index"]) == list(part["worst_index"]))
        raise GradcheckError(f"gradient check failed: the {name} part's worst relative error is "
                             f"{part['worst_rel_error']:.3g} at W{list(part['worst_index'])} (analytic "
                             f"{worst['analytic']:.6g}, numerical {worst['numerical']:.6g}), above the threshold "
                             f"{res['threshold']:g} ({res['method']}, h={res['h']:g}){_gradcheck_hint(cfg, res, name)}")


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
        verdict = "ok" if part["passed"] else "FAILED"
        worst = "n/a" if part["worst_rel_error"] is None else f"{part['worst_rel_error']:.3g}"
        lines += ["", f"[{name}] {verdict}: worst relative error {worst} over {part['checked']} coordinates"
                  + (f", {part['kinks']} at a kink (not counted)" if part["kinks"] else ""),
                  f"{'coordinate':>14}  {'analytic':>14}  {'numerical':>14}  {'rel error':>10}  "
                  f"{'error bound':>11}  kink"]
        for c in part["checks"]:
            lines.append(f"{str(tuple(c['index'])):>14}  {c['analytic']:>14.6e}  {c['numerical']:>14.6e}  "
                         f"{c['rel_error']:>10.3g}  {c['bound']:>11.3g}  {'yes' if c['kink'] else ''}")
    lines += ["", "PASSED" if res["passed"] else "FAILED"]
    return "\n".join(lines)


# ---------------------------------------------------------------------- sweep


@cli.command("sweep", short_help="Search hyperparameters on the validation split.")
@_config_options
@_data_options
@click.option("--param", "params", multiple=True, required=True, metavar="KEY=SPEC",
              help="A config key to vary (repeatable): log:LOW:HIGH, uniform:LOW:HIGH, grid:A,B,C or choice:a,b,c, "
                   "e.g. --param optimizer.lr=log:1e-4:3e-3 --param optimizer.update=choice:sgd,adam.")
@click.option("--trials", type=click.IntRange(1), default=None,
              help="Random search: number of trials (default 20). Not allowed when every --param is a grid: "
                   "then all combinations run.")
@click.option("--jobs", type=click.IntRange(1), default=None,
              help="Trials at once: worker processes, or the workers of --scheduler local (default: the usable "
                   "CPUs).")
@click.option("--search", type=click.Choice(["random", "tpe"]), default="random", show_default=True,
              help="random: random draws (the full grid when every --param is a grid); tpe: Optuna's TPE "
                   "sampler picks each next trial from the results so far (pip install 'linclf[optuna]').")
@click.option("--prune", type=click.Choice(["none", "median", "hyperband"]), default="none", show_default=True,
              help="With --search tpe: stop trials whose per-epoch validation accuracy is behind (status "
                   "pruned).")
@click.option("--storage", default=None, metavar="URL",
              help="With --search tpe: the Optuna storage of the study, journal:PATH (processes on one "
                   "machine) or an RDB URL such as postgresql://user@host/db (machines sharing no disk); "
                   "the same command on several machines cooperates on one study, a rerun resumes it "
                   "(default: journal:<out>/study.log).")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="Run the trials on a Dask cluster: tcp://host:8786 (started with `dask scheduler` and "
                   "`dask worker`), or local for a LocalCluster of --jobs processes (pip install "
                   "'linclf[dask]').")
@click.option("--connect-timeout", type=click.FloatRange(0, min_open=True), default=10.0, show_default=True,
              help="Seconds to wait for the --scheduler to answer.")
@click.option("--out", type=click.Path(), default=None,
              help="Sweep folder (default: runs/sweep-<config name>-<timestamp>/); the same --out continues "
                   "an interrupted sweep, skipping finished trials.")
@_quiet_option
def sweep_cmd(config_path: str | None, overrides: tuple[str, ...], data_dir: str | None, archive: str | None,
              params: tuple[str, ...], trials: int | None, jobs: int | None, search: str, prune: str,
              storage: str | None, scheduler: str | None, connect_timeout: float, out: str | None,
              quiet: bool) -> None:
    """Search hyperparameters: train each trial on the training split, score it on the validation split.

    Random search by default (values drawn from a generator seeded by the config
    seed; trial i trains with seed + 1 + i), the full grid when every --param is
    a grid, or --search tpe. Never reads the test split. Writes results.csv,
    results.json and best.yaml (ready for `linclf train --config best.yaml`) and
    prints the trials, best validation accuracy first.
    """
    import time

    from .training.sweep import default_jobs, default_sweep_dir, format_table, parse_spec, run_sweep

    cfg = _load_config(config_path, overrides, {"data.archive": archive, "data.dir": data_dir})
    specs = [parse_spec(p) for p in params]
    out_dir = Path(out) if out else default_sweep_dir(config_path)
    jobs = jobs or min(default_jobs(), _workers())
    t0 = time.perf_counter()
    rows = run_sweep(cfg, specs, trials=trials, jobs=jobs, out_dir=out_dir, data_dir=data_dir,
                     progress=_progress(quiet), search=search, prune=prune, storage=storage, scheduler=scheduler,
                     connect_timeout=connect_timeout)
    click.echo(format_table(rows, [p.key for p in specs]))
    if not quiet:
        statuses = ("ok", "diverged", "pruned", "failed", "interrupted")
        counts = ", ".join(f"{sum(r['status'] == s for r in rows)} {s}" for s in statuses
                           if s in ("ok", "diverged", "failed") or any(r["status"] == s for r in rows))
        best = next(r for r in rows if r["status"] == "ok")
        epochs = sum(r["history"][-1]["epoch"] for r in rows if r.get("history"))
        where = f"--scheduler {scheduler}" if scheduler else f"--jobs {jobs}"
        for line in (f"sweep folder: {out_dir}",
                     f"{len(rows)} trials ({counts}), {epochs:.0f} training epochs, {where}, "
                     f"{time.perf_counter() - t0:.1f} s",
                     f"best: trial {best['trial']}, val accuracy {best['val_accuracy']:.4f}; "
                     f"train it with `linclf train --config {out_dir / 'best.yaml'}`"):
            click.echo(line, err=True)


# ----------------------------------------------------------------------- plot


@cli.command("plot", short_help="Write PNG figures of a run or sweep folder.")
@click.argument("folder", type=click.Path())
@click.option("--out", type=click.Path(), default=None, help="Folder for the PNG files (default: FOLDER itself).")
@click.option("--split", "split_name", type=click.Choice(["test", "val", "train"]), default="val",
              show_default=True, help="Split of the run's own config the confusion matrix is computed on.")
@_data_options
@_quiet_option
def plot_cmd(folder: str, out: str | None, split_name: str, data_dir: str | None, archive: str | None,
             quiet: bool) -> None:
    """Write PNG figures of a run folder or a sweep folder; print the path of each file written.

    \b
    run folder:   loss.png accuracy.png templates.png confusion.png (needs the data)
    sweep folder: sweep_lr_reg.png, and sweep_updates.png when optimizer.update was swept
    """
    from .plots.figure import require_matplotlib
    from .plots.folders import folder_kind
    from .plots.sweeps import plot_sweep

    kind = folder_kind(folder)
    require_matplotlib()
    if kind == "sweep":
        paths = plot_sweep(folder, out)
    else:
        paths = _plot_run(Path(folder), out, split_name, data_dir, archive, quiet)
    for p in paths:
        click.echo(str(p))


def _plot_run(run_dir: Path, out: str | None, split_name: str, data_dir: str | None, archive: str | None,
              quiet: bool) -> list[Path]:
    """A run folder's figures; confusion.png only when the split's data loads (else a one-line warning)."""
    from .errors import ModelFileError
    from .plots.folders import run_model_file
    from .plots.runs import plot_run
    from .training.runs import run_eval

    evaluation = None
    model_file = run_model_file(run_dir)
    if model_file is not None:
        try:
            evaluation = run_eval(model_file, split_name, data_dir=data_dir, archive=archive,
                                  quiet=not _progress(quiet), workers=_workers())[1]
        except ModelFileError:
            raise
        except (LinclfError, OSError) as e:
            click.echo(f"warning: confusion.png skipped: no {split_name} data ({e})", err=True)
    return plot_run(run_dir, out, evaluation=evaluation, split=split_name)


# -------------------------------------------------------------------- predict


@cli.command("predict", short_help="Classify your own images with a saved model.")
@click.option("--model", "model_path", type=click.Path(), required=True,
              help="A model.npz written by train (or by an estimator's to_model().save(PATH)).")
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--top", type=click.IntRange(1), default=3, show_default=True,
              help="How many classes to print per image, best first.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object: a list of top classes per image, errors inline.")
def predict_cmd(model_path: str, images: tuple[str, ...], top: int, as_json: bool) -> None:
    """Classify your own pictures (PNG, JPEG, GIF, BMP, WEBP; any size and mode) with a saved model.

    Each picture is cut to its centred square and resized to 32x32 RGB with a
    Lanczos filter. Softmax models print probabilities, SVM models scores. A file
    that cannot be read is reported and skipped; the exit code is then 1.
    Needs Pillow: pip install 'linclf[image]'.
    """
    from .images import NUM_VALUES, classify, load_image_rows, require_pillow
    from .core.model import LinearClassifier

    from .features.cache import FEATURE_DTYPE
    from .training.featurize import model_extractor

    model = LinearClassifier.load(model_path)
    if model.features_kind == "npz":
        raise UsageError(f"{model_path} was trained on precomputed features (features.kind npz), so it cannot "
                         "turn a picture into its rows; score your own feature rows in Python with "
                         "LinearClassifier.load(PATH).predict(rows)")
    extractor = model_extractor(model, model_path)
    require_pillow()
    if extractor is None and model.in_dim != NUM_VALUES:
        raise UsageError(f"{model_path} takes rows of {model.in_dim} values; predict feeds it 32x32 RGB images "
                         f"({NUM_VALUES} values), so it needs a model trained on CIFAR-10-shaped data")
    loaded = load_image_rows(images)
    rows = loaded.rows
    if extractor is not None and loaded.paths:
        rows = extractor.transform(rows).astype(FEATURE_DTYPE)   # as the model's training rows were stored
    found = dict(zip(loaded.paths, classify(model, rows, top))) if loaded.paths else {}
    failed = dict(loaded.errors)
    kind = "probability" if model.loss == "softmax" else "score"
    entries = []
    for path in images:
        if path in found:
            p = found[path]
            entries.append({"path": path, "top": [{"class": c, kind: v} for c, v in zip(p.classes, p.values)]})
        else:
            entries.append({"path": path, "error": failed[path]})
    if as_json:
        click.echo(json_text({"model": model_path, "kind": kind, "images": entries}))
    short = "p" if kind == "probability" else "score"
    for e in entries:
        if "error" in e:
            click.echo(f"error: {e['error']}", err=True)
        elif not as_json:
            click.echo(f"{e['path']}: " + ", ".join(f"{t['class']} ({short}={t[kind]:.4f})" for t in e["top"]))
    if loaded.errors:
        raise LinclfError(f"{len(loaded.errors)} of {len(images)} files could not be classified")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``linclf`` console script."""
    import signal

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # started by a shell that ignores SIGINT (a background job of a script): Ctrl-C and
        # `kill -INT` still stop every command the same way (exit 130)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    cli.main(args=argv, prog_name="linclf")


if __name__ == "__main__":  # pragma: no cover
    main()

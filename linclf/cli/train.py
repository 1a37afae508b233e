"""``linclf train``: train a classifier into a run folder."""
from __future__ import annotations

from pathlib import Path

import click

from ..errors import UsageError
from ..fsutil import unlink_quiet
from .app import (check_accuracy, cli, command_config, config_options, data_options, echo_json, out_option,
                  quiet_option, show_progress, workers)


# ---------------------------------------------------------------------- train


@cli.command("train", short_help="Train, evaluate and save a linear classifier.")
@config_options
@data_options
@out_option("Run folder (default: runs/<config name>-<timestamp>/).")
@click.option("--overwrite", is_flag=True, help="Allow --out to replace the files of an earlier run.")
@click.option("--resume", type=click.Path(), default=None, metavar="RUN",
              help="Continue a run: its folder, or the checkpoint.npz in it (optimizer state and step count "
                   "included).")
@click.option("--expect-accuracy", type=click.FloatRange(0, 1), default=None, metavar="X",
              help="Exit with code 3 when the test accuracy is below X (a fraction), for CI gates.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as one JSON object on stdout.")
@click.option("--plots", is_flag=True,
              help="After training, write loss, accuracy, templates and confusion PNGs into the run folder "
                   "(needs matplotlib: pip install 'linclf[plot]').")
@quiet_option
def train_cmd(config_path: str | None, overrides: tuple[str, ...], data_dir: str | None, archive: str | None,
              out: str | None, overwrite: bool, resume: str | None, expect_accuracy: float | None,
              as_json: bool, plots: bool, quiet: bool) -> None:
    """Train a linear classifier as the config says; report train / val / test accuracy."""
    from ..config import parse_override, with_values
    from ..core.search import SEARCH_METHODS
    from ..training.run_folder import check_out_dir, checkpoint_file, config_of_checkpoint, default_out_dir
    from ..training.runs import run_train

    if plots:
        from ..plots.figure import require_matplotlib
        from .plot import plot_run_folder    # here, so that `plot` registers after `train` as before

        require_matplotlib()            # before training, not after an hour of it
    resume_arrays = None
    if resume is not None:
        if config_path is not None:
            raise UsageError("--resume takes its config from the checkpoint; drop --config (use --set to change values)")
        resume = str(checkpoint_file(resume))            # a run folder stands for its checkpoint.npz
        cfg, resume_arrays = config_of_checkpoint(resume, dict(parse_override(o) for o in overrides))
        if archive is not None:
            cfg = with_values(cfg, {"data.archive": archive}, source="--archive")
        out_dir = Path(out) if out else Path(resume).parent
    else:
        cfg = command_config(config_path, overrides, {"data.archive": archive})
        out_dir = Path(out) if out else default_out_dir(config_path)
    # resuming continues the checkpoint's own run folder; another --out is a new run's folder
    resuming = resume is not None and out_dir.absolute() == Path(resume).parent.absolute()
    out_dir = check_out_dir(out_dir, overwrite=overwrite, resuming=resuming)
    if cfg.optimizer.method in SEARCH_METHODS and resume is not None:
        raise UsageError(f"--resume works for sgd and gd runs, not {cfg.optimizer.method}")
    res = run_train(cfg, out_dir, data_dir=data_dir, resume=resume, resume_arrays=resume_arrays,
                    progress=show_progress(quiet), quiet=not show_progress(quiet), workers=workers(),
                    overwrite=overwrite)
    m = res.metrics
    if overwrite and not resuming:          # the replaced run's figures would pass for this one's
        from ..plots.runs import RUN_FIGURES

        for name in RUN_FIGURES:
            unlink_quiet(out_dir / name)
    figures = plot_run_folder(out_dir, None, "val", data_dir, None, quiet) if plots else []
    if as_json:
        extra = {"plots": [str(f) for f in figures]} if plots else {}
        echo_json({**m, "out_dir": str(out_dir.absolute()), **extra})   # a folder linclf may have named
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
    check_accuracy("test", m["test_accuracy"], expect_accuracy)

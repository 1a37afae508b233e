"""``linclf plot``: PNG figures of a run or sweep folder (also drawn by ``linclf train --plots``)."""
from __future__ import annotations

from pathlib import Path

import click

from ..errors import LinclfError
from .app import cli, data_options, out_option, quiet_option, show_progress, workers


@cli.command("plot", short_help="Write PNG figures of a run or sweep folder.")
@click.argument("folder", type=click.Path())
@out_option("Folder for the PNG files (default: FOLDER itself).")
@click.option("--split", "split_name", type=click.Choice(["test", "val", "train"]), default="val",
              show_default=True, help="Split of the run's own config the confusion matrix is computed on.")
@data_options
@quiet_option
def plot_cmd(folder: str, out: str | None, split_name: str, data_dir: str | None, archive: str | None,
             quiet: bool) -> None:
    """Write PNG figures of a run folder or a sweep folder; print the path of each file written.

    \b
    run folder:   loss.png accuracy.png templates.png or centroids.png (k-means) confusion.png (needs the data)
    sweep folder: sweep_lr_reg.png, and sweep_updates.png when optimizer.update was swept
    """
    from ..plots.figure import require_matplotlib
    from ..plots.folders import folder_kind
    from ..plots.sweeps import plot_sweep

    kind = folder_kind(folder)
    require_matplotlib()
    if kind == "sweep":
        paths = plot_sweep(folder, out)
    else:
        paths = plot_run_folder(Path(folder), out, split_name, data_dir, archive, quiet)
    for p in paths:
        click.echo(str(p))


def plot_run_folder(run_dir: Path, out: str | None, split_name: str, data_dir: str | None, archive: str | None,
                    quiet: bool) -> list[Path]:
    """Draw a run folder's figures into ``out`` (default: the folder); the files written.

    confusion.png only when the split's data loads (else a one-line warning).
    """
    from ..errors import ModelFileError
    from ..plots.folders import run_model_file
    from ..plots.runs import plot_run
    from ..training.evaluate import run_eval

    evaluation = None
    model_file = run_model_file(run_dir)
    if model_file is not None:
        try:
            evaluation = run_eval(model_file, split_name, data_dir=data_dir, archive=archive,
                                  quiet=not show_progress(quiet), workers=workers())[1]
        except ModelFileError:
            raise
        except (LinclfError, OSError) as e:
            click.echo(f"warning: confusion.png skipped: no {split_name} data ({e})", err=True)
    return plot_run(run_dir, out, evaluation=evaluation, split=split_name)

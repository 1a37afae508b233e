"""``linclf eval``: score a saved model; accuracy, per-class accuracy and the confusion matrix as text."""
from __future__ import annotations

from typing import Any

import click

from .app import check_accuracy, cli, data_options, echo_json, model_option, quiet_option, show_progress, workers


@cli.command("eval", short_help="Score a saved model: accuracy, per class, confusion.")
@model_option("A model.npz written by train, or its run folder.")
@click.option("--split", "split_name", type=click.Choice(["test", "val", "train"]), default="test",
              help="Which split of the model's own config to score.")
@data_options
@click.option("--expect-accuracy", type=click.FloatRange(0, 1), default=None, metavar="X",
              help="Exit with code 3 when the accuracy is below X (a fraction).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as one JSON object.")
@quiet_option
def eval_cmd(model_path: str, split_name: str, data_dir: str | None, archive: str | None,
             expect_accuracy: float | None, as_json: bool, quiet: bool) -> None:
    """Accuracy, per-class accuracy and confusion matrix of a saved model."""
    from ..training.evaluate import run_eval

    model, ev = run_eval(model_path, split_name, data_dir=data_dir, archive=archive, quiet=not show_progress(quiet),
                         progress=show_progress(quiet), workers=workers())
    if as_json:
        echo_json({"model": model_path, "split": split_name, **ev.to_dict(model.classes)})
    else:
        click.echo(_eval_table(model.classes, ev, split_name))
    check_accuracy(split_name, ev.accuracy, expect_accuracy)


def _eval_table(classes: tuple[str, ...], ev: Any, split_name: str) -> str:
    """Accuracy, per-class accuracy and the confusion matrix as aligned text."""
    short = [c[:5] for c in classes]
    if len(set(short)) < len(short):        # names alike in their first 5 letters: number the columns and rows
        short = [str(i) for i in range(len(classes))]
        classes = tuple(f"{i} {c}" for i, c in enumerate(classes))
    width = max(6, max(len(c) for c in classes))
    lines = [f"{split_name} accuracy {ev.accuracy:.4f} ({int(round(ev.accuracy * ev.count))} of {ev.count})", "",
             f"{'class':<{width}}  accuracy   " + " ".join(f"{s:>5}" for s in short)]
    for c, acc, row in zip(classes, ev.per_class, ev.confusion):
        a = "   n/a" if acc != acc else f"{acc:6.4f}"
        lines.append(f"{c:<{width}}  {a}     " + " ".join(f"{v:>5d}" for v in row))
    lines.append("(rows: true class, columns: predicted class)")
    return "\n".join(lines)

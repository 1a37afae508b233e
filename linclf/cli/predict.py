"""``linclf predict``: classify the user's own pictures with a saved model."""
from __future__ import annotations

import click

from ..errors import LinclfError
from .app import cli, echo_json, model_option


@cli.command("predict", short_help="Classify your own images with a saved model.")
@model_option("A model.npz written by train, or its run folder (or by an estimator's to_model().save(PATH)).")
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--top", type=click.IntRange(1), default=3, show_default=True,
              help="How many classes to print per image, best first.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object: a list of top classes per image, errors inline.")
def predict_cmd(model_path: str, images: tuple[str, ...], top: int, as_json: bool) -> None:
    """Classify your own pictures (PNG, JPEG, GIF, BMP, WEBP; any size and mode) with a saved model.

    IMAGES are files or folders (the pictures directly inside, by name). Each
    picture is cut to its centred square and resized to 32x32 RGB with a
    Lanczos filter. Softmax models print probabilities, SVM models scores. A
    file that cannot be read is reported and skipped; the exit code is then 1.
    Needs Pillow: pip install 'linclf[image]'.
    """
    from ..predict import predict_files

    result = predict_files(model_path, images, top)
    entries, kind = result["images"], result["kind"]
    if as_json:
        echo_json(result)
    if len(entries) == 1 and "error" in entries[0]:     # one file: its error is the whole story
        raise LinclfError(entries[0]["error"])
    short = "p" if kind == "probability" else "score"
    for e in entries:
        if "error" in e:
            click.echo(f"error: {e['error']}", err=True)
        elif not as_json:
            click.echo(f"{e['path']}: " + ", ".join(f"{t['class']} ({short}={t[kind]:.4f})" for t in e["top"]))
    bad = sum("error" in e for e in entries)
    if bad:
        raise LinclfError(f"{bad} of {len(entries)} files could not be classified")

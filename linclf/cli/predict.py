"""``linclf predict``: classify the user's own pictures with a saved model."""
from __future__ import annotations

import click

from ..errors import LinclfError, UsageError
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
    from ..images import NUM_VALUES, classify, image_files, load_image_rows, require_pillow
    from ..core.model import LinearClassifier

    from ..features.cache import FEATURE_DTYPE
    from ..data.splits import mirrored
    from ..training.featurize import model_extractor
    from ..training.evaluate import model_config

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
    files, empty = image_files(images)
    loaded = load_image_rows([f for f in files if f not in empty])
    rows = loaded.rows
    mirror = mirrored(rows) if model_config(model, model_path).model.flip_average else None
    if extractor is not None and loaded.paths:
        rows = extractor.transform(rows).astype(FEATURE_DTYPE)   # as the model's training rows were stored
        if mirror is not None:
            mirror = extractor.transform(mirror).astype(FEATURE_DTYPE)
    found = dict(zip(loaded.paths, classify(model, rows, top, mirror))) if loaded.paths else {}
    failed = {**dict(loaded.errors), **empty}
    kind = "probability" if model.loss == "softmax" else "score"
    entries = []
    for path in files:
        if path in found:
            p = found[path]
            entries.append({"path": path, "top": [{"class": c, kind: v} for c, v in zip(p.classes, p.values)]})
        else:
            entries.append({"path": path, "error": failed[path]})
    if as_json:
        echo_json({"model": model_path, "kind": kind, "images": entries})
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

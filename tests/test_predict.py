"""`linclf predict` and linclf.images: the user's own pictures through a saved model."""
from __future__ import annotations

import json
import struct
import sys
import zlib

import numpy as np
import pytest

from conftest import binary_members, invoke, make_arrays, optional, small_config, write_tar_gz
from linclf import images
from linclf.data.cifar10 import load_cifar10
from linclf.core.model import LinearClassifier

Image = optional("PIL.Image")

CONFIG = small_config()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A separable fake CIFAR-10, and a softmax and an SVM model trained on it: (data, {loss: model path})."""
    root = tmp_path_factory.mktemp("predict")
    fake = make_arrays(per_batch=80, n_test=100, seed=1, separable=True)
    archive = root / "learnable.tar.gz"
    md5 = write_tar_gz(archive, binary_members(fake))
    data = load_cifar10(root / "data", archive=archive, md5=md5)
    config = root / "small.yaml"
    config.write_text(CONFIG)
    models = {}
    for loss in ("softmax", "svm"):
        out = root / loss
        r = invoke("train", "--config", config, "--data-dir", root / "data", "--out", out, "--quiet",
                   "--set", f"model.loss={loss}")
        assert r.exit_code == 0, r.output
        models[loss] = out / "model.npz"
    return data, models


def as_image(row: np.ndarray) -> np.ndarray:
    """A CIFAR row (3072,) as an (32, 32, 3) uint8 picture."""
    return row.reshape(3, 32, 32).transpose(1, 2, 0)


@pytest.fixture
def pictures(tmp_path, trained):
    """PNG/JPEG files of test images in several modes and sizes: name -> (path, test index)."""
    data, _ = trained
    out = {}

    def save(name: str, img, i: int, **kw) -> None:
        path = tmp_path / name
        img.save(path, **kw)
        out[name] = (path, i)

    rgb = [Image.fromarray(as_image(data.X_test[i])) for i in range(5)]
    save("rgb.png", rgb[0], 0)
    rgba = rgb[1].convert("RGBA")                         # fully opaque: the same pixels as rgb[1]
    save("rgba.png", rgba, 1)
    save("gray.png", rgb[2].convert("L"), 2)
    save("palette.png", rgb[3].quantize(64), 3)
    save("photo.jpg", rgb[4], 4, quality=95)
    tall = Image.new("RGB", (32, 96), (255, 0, 0))        # the picture between red and green bands
    tall.paste(Image.new("RGB", (32, 32), (0, 255, 0)), (0, 64))
    tall.paste(rgb[0], (0, 32))
    save("tall.png", tall, 0)
    save("large.png", rgb[1].resize((256, 256), Image.Resampling.NEAREST), 1)
    return out


# ------------------------------------------------------------------ images.py


def test_rows_are_in_cifar_order_1024_red_then_green_then_blue(tmp_path):
    path = tmp_path / "color.png"
    Image.new("RGB", (300, 200), (10, 20, 30)).save(path)
    row = images.read_image_row(path)
    assert row.dtype == np.uint8 and row.shape == (3072,)
    assert (row[:1024] == 10).all() and (row[1024:2048] == 20).all() and (row[2048:] == 30).all()


def test_png_pixels_come_back_exactly_and_the_centre_square_is_kept(tmp_path, trained, pictures):
    data, _ = trained
    loaded = images.load_image_rows([pictures[n][0] for n in ("rgb.png", "rgba.png", "tall.png")])
    assert loaded.errors == [] and loaded.rows.shape == (3, 3072)
    np.testing.assert_array_equal(loaded.rows[0], data.X_test[0])
    np.testing.assert_array_equal(loaded.rows[1], data.X_test[1])     # opaque alpha changes nothing
    np.testing.assert_array_equal(loaded.rows[2], data.X_test[0])     # the red and green bands are cropped away


def test_large_pictures_are_shrunk_smoothly(trained, pictures):
    data, _ = trained
    row = images.read_image_row(pictures["large.png"][0])
    diff = np.abs(row.astype(int) - data.X_test[1].astype(int))
    assert diff.mean() < 25                                           # Lanczos blurs a little, no more


def test_transparent_pixels_become_white_and_16_bit_gray_is_scaled(tmp_path):
    clear = tmp_path / "clear.png"
    Image.new("RGBA", (40, 40), (0, 0, 0, 0)).save(clear)
    assert (images.read_image_row(clear) == 255).all()
    deep = tmp_path / "deep.png"
    Image.fromarray(np.full((32, 32), 65535, dtype=np.uint16)).save(deep)
    assert (images.read_image_row(deep) == 255).all()


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels (a decompression bomb's shape)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + \
        chunk(b"IEND", b"")


@pytest.mark.parametrize("name, content, text", [
    ("notes.png", b"this is not a picture\n", "not an image"),
    ("bomb.png", png_claiming(30000, 30000), "decompression bomb"),
    ("cut.png", None, "damaged or truncated"),
    ("missing.png", "absent", "no such file"),
])
def test_unreadable_files_are_errors_naming_them(tmp_path, name, content, text):
    path = tmp_path / name
    if content is None:
        buf = tmp_path / "whole.png"
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf)
        path.write_bytes(buf.read_bytes()[:300])
    elif isinstance(content, bytes):
        path.write_bytes(content)
    with pytest.raises(images.ImageReadError, match=text) as info:
        images.read_image_row(path)
    assert str(path) in str(info.value)


def test_a_folder_is_not_an_image(tmp_path):
    loaded = images.load_image_rows([tmp_path])
    assert loaded.rows.shape == (0, 3072) and loaded.paths == []
    assert loaded.errors == [(str(tmp_path), f"{tmp_path}: is a folder, not an image")]


# ---------------------------------------------------------------- the command


def parse_lines(output: str) -> dict[str, list[tuple[str, float]]]:
    """``path: cls (p=0.1234), ...`` lines -> {path: [(class, value), ...]}."""
    out = {}
    for line in output.strip().splitlines():
        path, _, rest = line.partition(": ")
        pairs = [part.rstrip(")").split(" (") for part in rest.split(", ")]
        out[path] = [(c, float(v.split("=")[1])) for c, v in pairs]
    return out


def test_predict_prints_the_top_3_probabilities_of_each_picture(trained, pictures):
    data, models = trained
    paths = [p for p, _ in pictures.values()]
    r = invoke("predict", "--model", models["softmax"], *paths)
    assert r.exit_code == 0, r.output
    got = parse_lines(r.stdout)
    assert list(got) == [str(p) for p in paths]
    model = LinearClassifier.load(models["softmax"])
    for name, (path, i) in pictures.items():
        top = got[str(path)]
        probs = [v for _, v in top]
        assert len(top) == 3 and probs == sorted(probs, reverse=True)
        assert sum(probs) <= 1 + 1e-3 and all(0 <= v <= 1 for v in probs)
        if name in ("rgb.png", "rgba.png", "tall.png"):                # exact pixels: the model's own answer
            assert top[0][0] == data.classes[int(model.predict(data.X_test[i:i + 1])[0])]
    assert "(p=" in r.stdout


def test_predict_json_has_a_list_per_picture(trained, pictures):
    data, models = trained
    paths = [pictures[n][0] for n in ("rgb.png", "tall.png", "photo.jpg")]
    r = invoke("predict", "--model", models["softmax"], "--json", "--top", "5", *paths)
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["kind"] == "probability" and [e["path"] for e in doc["images"]] == [str(p) for p in paths]
    for entry in doc["images"]:
        probs = [t["probability"] for t in entry["top"]]
        assert len(probs) == 5 and probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-9
        assert all(t["class"] in data.classes for t in entry["top"])
    assert doc["images"][0]["top"] == doc["images"][1]["top"]          # the same pixels once cropped
    model = LinearClassifier.load(models["softmax"])
    s = model.scores(data.X_test[:1]).astype(np.float64)[0]
    p = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
    assert doc["images"][0]["top"][0]["probability"] == pytest.approx(p.max(), rel=1e-6)


def test_a_flip_average_model_scores_each_picture_with_its_mirror(tmp_path, trained, pictures):
    """An untrained (random) W trained with model.flip_average: the top class is the argmax of the summed scores."""
    from conftest import preprocessed
    from linclf.data.splits import mirrored

    data, models = trained
    config = tmp_path / "small.yaml"
    config.write_text(CONFIG)
    out = tmp_path / "flip"
    r = invoke("train", "--config", config, "--data-dir", models["softmax"].parent.parent / "data", "--out", out,
               "--quiet", "--set", "model.flip_average=true", "--set", "optimizer.lr=1e-30",
               "--set", "optimizer.iterations=1")
    assert r.exit_code == 0, r.output
    model = LinearClassifier.load(out / "model.npz")
    names = ["rgb.png", "rgba.png", "gray.png", "palette.png", "large.png"]
    rows = np.stack([images.read_image_row(pictures[n][0]) for n in names])
    p, W = model.prep, model.W.astype(np.float64)
    plain = preprocessed(rows, p.mean, p.scale, p.bias) @ W.T
    both = plain + preprocessed(mirrored(rows), p.mean, p.scale, p.bias) @ W.T
    assert (both.argmax(1) != plain.argmax(1)).any()                   # the mirror matters here
    r = invoke("predict", "--model", out / "model.npz", "--json", *[pictures[n][0] for n in names])
    assert r.exit_code == 0, r.output
    top = [e["top"][0]["class"] for e in json.loads(r.stdout)["images"]]
    assert top == [data.classes[c] for c in both.argmax(1)]


def test_svm_models_print_scores(trained, pictures):
    data, models = trained
    path = pictures["rgb.png"][0]
    r = invoke("predict", "--model", models["svm"], "--top", "20", path)
    assert r.exit_code == 0, r.output
    top = parse_lines(r.stdout)[str(path)]
    assert len(top) == 10 and "(score=" in r.stdout and "(p=" not in r.stdout
    scores = LinearClassifier.load(models["svm"]).scores(data.X_test[:1])[0]
    assert [v for _, v in top] == pytest.approx(sorted(scores.tolist(), reverse=True), abs=1e-4)
    doc = json.loads(invoke("predict", "--model", models["svm"], "--json", path).stdout)
    assert doc["kind"] == "score" and "score" in doc["images"][0]["top"][0]


def test_a_bad_file_is_reported_and_the_others_still_classified(tmp_path, trained, pictures):
    _, models = trained
    fake = tmp_path / "fake.png"
    fake.write_text("hello, I am text\n")
    good = [pictures["rgb.png"][0], pictures["gray.png"][0]]
    r = invoke("predict", "--model", models["softmax"], good[0], fake, tmp_path / "gone.jpg", good[1])
    assert r.exit_code == 1
    assert set(parse_lines(r.stdout)) == {str(p) for p in good}
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert any(str(fake) in e and "not an image" in e for e in errors)
    assert any("gone.jpg" in e and "no such file" in e for e in errors)
    assert "2 of 4 files" in errors[-1] and "Traceback" not in r.output

    r = invoke("predict", "--model", models["softmax"], "--json", fake, good[0])
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    assert "not an image" in doc["images"][0]["error"] and len(doc["images"][1]["top"]) == 3


@pytest.mark.parametrize("name, reason", [("x.txt", "not an image (PNG, JPEG, GIF, BMP, WEBP can be read)"),
                                          ("gone.jpg", "no such file"),
                                          ("empty", "a folder with no PNG, JPEG, GIF, BMP, WEBP files in it")])
def test_a_single_bad_file_is_one_error_line(tmp_path, trained, name, reason):
    _, models = trained
    (tmp_path / "x.txt").write_text("not a picture\n")
    (tmp_path / "empty").mkdir()
    r = invoke("predict", "--model", models["softmax"], tmp_path / name)
    assert (r.exit_code, r.stdout, r.stderr) == (1, "", f"error: {tmp_path / name}: {reason}\n")

    r = invoke("predict", "--model", models["softmax"], "--json", tmp_path / name)
    assert (r.exit_code, r.stderr) == (1, f"error: {tmp_path / name}: {reason}\n")
    assert json.loads(r.stdout)["images"] == [{"path": str(tmp_path / name), "error": f"{tmp_path / name}: {reason}"}]


def test_a_folder_is_its_pictures_by_name_and_an_empty_one_an_error(tmp_path, trained, pictures):
    _, models = trained
    folder, empty = tmp_path / "holiday", tmp_path / "nothing"
    folder.mkdir()
    (folder / "sub").mkdir()                                           # not descended into
    (folder / "notes.txt").write_text("not a picture\n")               # not a picture's name: skipped
    for name in ("b.PNG", "a.jpg"):
        (folder / name).write_bytes(pictures["rgb.png" if name == "b.PNG" else "photo.jpg"][0].read_bytes())
    empty.mkdir()
    (empty / "readme.md").write_text("# hi\n")
    files, missing = images.image_files([pictures["gray.png"][0], folder, empty])
    assert files == [str(pictures["gray.png"][0]), str(folder / "a.jpg"), str(folder / "b.PNG"), str(empty)]
    assert missing == {str(empty): f"{empty}: a folder with no PNG, JPEG, GIF, BMP, WEBP files in it"}

    r = invoke("predict", "--model", models["softmax"], folder, "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert [e["path"] for e in doc["images"]] == [str(folder / "a.jpg"), str(folder / "b.PNG")]
    alone = json.loads(invoke("predict", "--model", models["softmax"], "--json", folder / "b.PNG").stdout)
    got, want = doc["images"][1]["top"], alone["images"][0]["top"]
    assert [t["class"] for t in got] == [t["class"] for t in want]
    assert [t["probability"] for t in got] == pytest.approx([t["probability"] for t in want], abs=1e-6)

    r = invoke("predict", "--model", models["softmax"], folder, empty)
    assert r.exit_code == 1
    assert set(parse_lines(r.stdout)) == {str(folder / "a.jpg"), str(folder / "b.PNG")}
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {empty}: a folder with no PNG, JPEG, GIF, BMP, WEBP files in it",
                      "error: 1 of 3 files could not be classified"]


def test_without_pillow_one_line_with_the_install_hint(trained, pictures, monkeypatch):
    _, models = trained
    for name in [m for m in sys.modules if m == "PIL" or m.startswith("PIL.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "PIL", None)                     # `import PIL` now raises ImportError
    r = invoke("predict", "--model", models["softmax"], pictures["rgb.png"][0])
    assert r.exit_code == 2
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "pip install 'linclf[image]'" in lines[0]


def no_preprocessing():
    """A Preprocessor that changes nothing (for hand-made models)."""
    from linclf.core.preprocess import Preprocessor

    return Preprocessor(mean=None, scale=None, bias=True)


def test_model_errors(tmp_path, pictures):
    path = pictures["rgb.png"][0]
    r = invoke("predict", "--model", tmp_path / "nope.npz", path)
    assert r.exit_code == 2 and "no model file" in r.output          # a wrong path is a usage error
    narrow = LinearClassifier(np.zeros((2, 5), np.float32), no_preprocessing(), ("a", "b"), "softmax")
    narrow.save(tmp_path / "narrow.npz")
    r = invoke("predict", "--model", tmp_path / "narrow.npz", path)
    assert r.exit_code == 2 and "3072" in r.output
    assert invoke("predict", "--model", tmp_path / "narrow.npz").exit_code == 2      # no IMAGE given


def test_help_lists_predict():
    assert "predict" in invoke("--help").output
    r = invoke("predict", "--help")
    assert r.exit_code == 0 and "--top" in r.output and "linclf[image]" in r.output

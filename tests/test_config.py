"""Config schema: defaults, YAML loading, overrides and every kind of bad input."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from linclf.config import Config, from_dict, load_config, parse_override, schema_keys, to_yaml, with_values
from linclf.errors import ConfigError


def write(tmp_path, text: str, name: str = "c.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_defaults_match_the_design_vocabulary():
    cfg = load_config()
    assert cfg.seed == 0
    assert cfg.data.dir is None and cfg.data.format == "binary" and cfg.data.num_val == 1000
    assert cfg.data.urls == [] and cfg.data.num_train is None and cfg.data.num_dev == 0
    assert cfg.preprocess.mean and not cfg.preprocess.std and cfg.preprocess.bias
    assert cfg.model.loss == "svm" and cfg.model.delta == 1.0 and cfg.model.reg == 2.5e4
    assert cfg.model.reg_bias and cfg.model.init_scale == 1e-4 and cfg.model.dtype == "float32"
    assert cfg.optimizer.method == "sgd" and cfg.optimizer.update == "sgd" and cfg.optimizer.lr == 1e-7
    assert cfg.optimizer.batch_size == 200 and cfg.optimizer.iterations == 1500 and cfg.optimizer.epochs is None
    assert cfg.train.log_every == 10 and cfg.train.keep_best and cfg.train.patience is None


def test_file_overrides_only_what_it_names(tmp_path):
    cfg = load_config(write(tmp_path, "model:\n  loss: softmax\noptimizer:\n  lr: 1.0e-3\n"))
    assert cfg.model.loss == "softmax" and cfg.optimizer.lr == 1e-3
    assert cfg.model.reg == 2.5e4  # untouched default


@pytest.mark.parametrize("text", ["1e-3", "'1e-3'", "0.001", "1.0e-3"])
def test_lr_written_without_a_dot_is_a_number(tmp_path, text):
    cfg = load_config(write(tmp_path, f"optimizer:\n  lr: {text}\n"))
    assert cfg.optimizer.lr == pytest.approx(0.001) and isinstance(cfg.optimizer.lr, float)


def test_integral_float_is_accepted_for_an_int():
    assert with_values(Config(), {"optimizer.iterations": "1e4"}).optimizer.iterations == 10000


def test_set_overrides_beat_the_file(tmp_path):
    p = write(tmp_path, "optimizer:\n  lr: 1.0e-3\n  batch_size: 100\n")
    cfg = load_config(p, ["optimizer.lr=5e-4", "model.loss=softmax", "data.urls=[http://a/x, http://b/x]"])
    assert cfg.optimizer.lr == 5e-4 and cfg.optimizer.batch_size == 100
    assert cfg.model.loss == "softmax" and cfg.data.urls == ["http://a/x", "http://b/x"]


def test_epochs_replaces_iterations_and_an_override_of_either_wins(tmp_path):
    cfg = load_config(write(tmp_path, "optimizer:\n  epochs: 3\n"))
    assert cfg.optimizer.epochs == 3 and cfg.optimizer.iterations is None
    cfg2 = load_config(write(tmp_path, "optimizer:\n  epochs: 3\n", "d.yaml"), ["optimizer.iterations=10"])
    assert cfg2.optimizer.iterations == 10 and cfg2.optimizer.epochs is None
    cfg3 = with_values(Config(), {"optimizer.epochs": 2})
    assert cfg3.optimizer.iterations is None and cfg3.optimizer.epochs == 2


def test_both_lengths_in_one_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="either iterations or epochs"):
        load_config(write(tmp_path, "optimizer:\n  epochs: 3\n  iterations: 5\n"))


def test_a_cosine_floor_above_the_learning_rate_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match=r"optimizer\.lr_min: 1 is above optimizer\.lr 0\.0006, so the cosine"):
        load_config(write(tmp_path, "optimizer:\n  lr: 6.0e-4\n  schedule: cosine\n  lr_min: 1.0\n"))
    loaded = load_config(write(tmp_path, "optimizer:\n  lr: 6.0e-4\n  lr_min: 1.0\n", "b.yaml"))   # constant
    assert loaded.optimizer.lr_min == 1.0


def test_patience_without_a_validation_split_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match=r"train\.patience: .*data\.num_val is 0"):
        load_config(write(tmp_path, "data:\n  num_val: 0\ntrain:\n  patience: 3\n"))
    assert load_config(write(tmp_path, "data:\n  num_val: 0\n", "b.yaml")).train.patience is None


def test_resolved_yaml_round_trips():
    cfg = with_values(Config(), {"optimizer.epochs": 4, "model.loss": "softmax", "data.urls": ["http://m/x"]})
    again = from_dict(yaml.safe_load(to_yaml(cfg)))
    assert again == cfg


@pytest.mark.parametrize("text, message", [
    ("optimizer:\n  lr: -1\n", r"optimizer\.lr: expected a number > 0.*-1"),
    ("optimizer:\n  lr: .nan\n", r"optimizer\.lr:.*not finite"),
    ("optimizer:\n  lr: .inf\n", r"optimizer\.lr:.*not finite"),
    ("optimizer:\n  lr: 'inf'\n", r"optimizer\.lr:.*not finite"),
    ("optimizer:\n  lr: fast\n", r"optimizer\.lr: expected a number"),
    ("optimizer:\n  batch_size: 2.5\n", r"optimizer\.batch_size:.*not a whole number"),
    ("optimizer:\n  batch_size: true\n", r"optimizer\.batch_size: expected an integer"),
    ("optimizer:\n  momentum: 1.0\n", r"optimizer\.momentum:.*< 1.*out of range"),
    ("model:\n  loss: softmx\n", r"model\.loss:.*did you mean 'softmax'"),
    ("model:\n  lsos: svm\n", r"unknown key model\.lsos; did you mean 'loss'"),
    ("modle:\n  loss: svm\n", r"unknown key modle; did you mean 'model'"),
    ("optimizer:\n  reg: 0.1\n", r"unknown key optimizer\.reg; did you mean 'model\.reg'"),
    ("preprocess:\n  mean: 1\n", r"preprocess\.mean: expected true or false"),
    ("data:\n  md5: abc\n", r"data\.md5: expected 32 hex digits \(or null\), got 'abc'"),
    ("data:\n  num_val: -5\n", r"data\.num_val:.*>= 0"),
    ("model: 5\n", r"model: expected a mapping"),
    ("seed: -1\n", r"seed:.*out of range"),
])
def test_bad_values_name_the_key_path(tmp_path, text, message):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as e:
        load_config(p)
    assert str(p) in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("text, message", [
    ("", "is empty"),
    ("# only a comment\n", "is empty"),
    ("- a\n- b\n", "top level must be a mapping.*list"),
    ("model:\n  loss: svm\n  loss: softmax\n", r"duplicate key 'loss' at line 3 \(first at line 2\)"),
    ("model: [unclosed\n", "is not valid YAML at line"),
    ("a: !!python/object/apply:os.system ['true']\n", "is not valid YAML"),
])
def test_malformed_files(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ConfigError, match=r"nope.yaml does not exist$"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="is a folder"):
        load_config(tmp_path)


@pytest.mark.parametrize("given, hint", [
    ("configs/softmax.yml", "configs/softmax.yaml"),       # the other extension
    ("configs/sofmax.yaml", "configs/softmax.yaml"),       # a typo
    ("configs/svm", "configs/svm.yaml"),                   # no extension
    ("configs/kmeans_lrge.yml", "configs/kmeans_large.yaml"),
    ("mysweeep", "mysweep.yaml"),                          # a bare name: the working directory first
    ("sofmax", "softmax"),                                 # then the shipped configs, by name
    ("configs/zzz.yaml", None),
    ("elsewhere/softmax.yaml", "the config that ships with linclf, --config softmax"),   # outside a clone
    ("elsewhere/kmeans_lrge.yml", "the config that ships with linclf, --config kmeans_large"),
    ("elsewhere/zzz.yaml", None),
])
def test_a_missing_config_names_a_close_one(tmp_path, monkeypatch, given, hint):
    (tmp_path / "configs").mkdir()
    for name in ("softmax.yaml", "svm.yaml", "kmeans.yaml", "kmeans_large.yaml"):
        (tmp_path / "configs" / name).write_text("seed: 1\n")
    (tmp_path / "mysweep.yaml").write_text("seed: 2\n")
    monkeypatch.chdir(tmp_path)
    want = f"config file {given} does not exist" + (f"; did you mean {hint}\\?$" if hint else "$")
    with pytest.raises(ConfigError, match=want):
        load_config(given)


def test_a_bare_name_without_a_file_is_a_shipped_config(tmp_path, monkeypatch):
    from linclf.config import SHIPPED, shipped_configs

    monkeypatch.chdir(tmp_path)
    assert {"softmax", "svm", "smoke", "kmeans", "kmeans_large", "hog_color"} <= set(shipped_configs())
    assert load_config("kmeans") == load_config("kmeans.yaml") == load_config(SHIPPED / "kmeans.yaml")
    assert load_config("kmeans").features.kind == "kmeans"
    (tmp_path / "kmeans.yaml").write_text("seed: 7\n")                 # a file of that name comes first
    assert load_config("kmeans.yaml").seed == 7 and load_config("kmeans").features.kind == "kmeans"
    with pytest.raises(ConfigError, match="config file zzz does not exist; the shipped configs are hog_color, "
                                          "kmeans, kmeans_large, "):
        load_config("zzz")


def test_the_clone_s_configs_folder_is_the_shipped_one():
    from linclf.config import SHIPPED

    repo = Path(__file__).resolve().parent.parent
    assert (repo / "configs").resolve() == SHIPPED.resolve()


@pytest.mark.parametrize("override, message", [
    ("optimizer.lr", "expected section.key=value"),
    ("=3", "the key is empty"),
    ("optimizer.lrr=1", r"unknown key optimizer\.lrr; did you mean 'lr'"),
    ("nosuch=1", "unknown key nosuch; keys look like section.key"),
    ("optimzer=3", r"unknown key optimzer; did you mean the section 'optimizer' \(--set optimizer\.KEY=VALUE\)\?$"),
    ("sed=1", r"unknown key sed; did you mean 'seed'\?$"),
    ("optimizer.reg=0.1", r"unknown key optimizer\.reg; did you mean 'model\.reg'\?$"),
    ("optimizer.seed=1", r"unknown key optimizer\.seed; did you mean 'seed'\?$"),
    ("optimizer=3", r"optimizer is a section; set optimizer\.KEY=VALUE"),
    ("optimizer.lr=abc", r"optimizer\.lr: expected a number"),
    ("data.urls=[notaurl]", r"data\.urls: 'notaurl' is not an http:// or https:// URL with a host"),
    ("data.urls=['file:///etc/passwd']", r"data\.urls: 'file:///etc/passwd' is not an http:// or https:// URL"),
    ("data.urls=['https://']", r"data\.urls: 'https://' is not an http:// or https:// URL with a host"),
])
def test_bad_overrides(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_parse_override_reads_yaml_values():
    assert parse_override("data.num_train=null") == ("data.num_train", None)
    assert parse_override("model.reg=2.5e4") == ("model.reg", "2.5e4")
    assert parse_override("preprocess.std=true") == ("preprocess.std", True)


def test_every_schema_key_has_help_and_a_valid_default():
    keys = schema_keys()
    assert "optimizer.lr" in keys and "seed" in keys
    assert all(spec.help for spec in keys.values())
    # every default passes its own validation
    assert from_dict(yaml.safe_load(to_yaml(Config()))) == Config()

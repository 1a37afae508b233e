"""The training loop: learning, determinism, divergence, Ctrl-C and resume, checkpoints, search methods."""
from __future__ import annotations

import math
import os
import signal

import numpy as np
import pytest

from linclf.training import runs as runs_mod
from linclf.config import Config, with_values
from linclf.errors import DivergenceError, Interrupted, LinclfWarning
from linclf.core.model import LinearClassifier, load_npz
from linclf.training.run_folder import config_of_checkpoint, prepare_out_dir
from linclf.training.runs import run_train
from linclf.training.loop import plan

BASE = {
    "data.num_val": 50, "preprocess.std": True, "model.loss": "softmax", "model.reg": 1e-3,
    "optimizer.update": "adam", "optimizer.lr": 1e-3, "optimizer.batch_size": 32, "optimizer.epochs": 4,
    "optimizer.schedule": "cosine", "train.log_every": 5,
}


def cfg_for(data_dir, **extra) -> Config:
    return with_values(Config(), {**BASE, "data.dir": str(data_dir), **extra})


def search_cfg(data_dir, method, **extra) -> Config:
    """A derivative-free method's config: its length is optimizer.trials, so no epochs and the default iterations
    (another length would be warned of)."""
    return cfg_for(data_dir, **{"optimizer.method": method, "optimizer.iterations": Config().optimizer.iterations,
                                **extra})


def train_in(tmp_path, cfg, name="run", **kw):
    out = prepare_out_dir(tmp_path / name)
    return run_train(cfg, out, **kw)


@pytest.mark.parametrize("loss", ["svm", "softmax"])
@pytest.mark.parametrize("update", ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"])
def test_every_update_rule_learns_separable_data(tmp_path, learnable_data_dir, loss, update):
    lr = {"sgd": 1e-2, "momentum": 1e-3, "nesterov": 1e-3, "adagrad": 1e-2, "rmsprop": 1e-3, "adam": 1e-3}[update]
    res = train_in(tmp_path, cfg_for(learnable_data_dir, **{"model.loss": loss, "optimizer.update": update,
                                                           "optimizer.lr": lr}))
    m = res.metrics
    assert m["test_accuracy"] >= 0.9, m
    losses = [r["loss"] for r in res.result.state.history if "loss" in r]
    assert losses[-1] < losses[0]


def test_files_of_a_run(tmp_path, learnable_data_dir):
    res = train_in(tmp_path, cfg_for(learnable_data_dir))
    out = res.out_dir
    for name in ("model.npz", "checkpoint.npz", "config.yaml", "history.csv", "metrics.json"):
        assert (out / name).is_file(), name
    model = LinearClassifier.load(out / "model.npz")
    assert model.W.shape == (10, 3073) and model.metrics["test_accuracy"] == res.metrics["test_accuracy"]
    assert set(res.metrics["seconds"]) == {"load", "preprocess", "train", "evaluate"}
    header = (out / "history.csv").read_text().splitlines()[0]
    assert header == "step,epoch,loss,lr,train_accuracy,val_accuracy"
    epochs = [line for line in (out / "history.csv").read_text().splitlines()[1:] if line.split(",")[4]]
    assert len(epochs) == 4                     # one evaluation per epoch
    # the resolved config reloads to the same config
    cfg, _ = config_of_checkpoint(out / "checkpoint.npz")
    assert cfg == cfg_for(learnable_data_dir)


def test_same_config_and_seed_give_bit_identical_weights(tmp_path, learnable_data_dir):
    cfg = cfg_for(learnable_data_dir, **{"optimizer.sampling": "shuffle"})
    a = train_in(tmp_path, cfg, "a").model.W
    b = train_in(tmp_path, cfg, "b").model.W
    c = train_in(tmp_path, with_values(cfg, {"seed": 1}), "c").model.W
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_length_in_epochs_and_iterations(learnable_data_dir):
    cfg = cfg_for(learnable_data_dir)
    assert plan(cfg, 350).total_steps == math.ceil(4 * 350 / 32)
    shuffle = with_values(cfg, {"optimizer.sampling": "shuffle"})
    assert plan(shuffle, 350).total_steps == 4 * 11
    assert plan(with_values(cfg, {"optimizer.iterations": 7}), 350).total_steps == 7
    gd = with_values(cfg, {"optimizer.method": "gd"})
    assert plan(gd, 350).total_steps == 4 and plan(gd, 350).batch == 350


def test_full_batch_gradient_descent(tmp_path, learnable_data_dir):
    res = train_in(tmp_path, cfg_for(learnable_data_dir, **{"optimizer.method": "gd", "optimizer.epochs": 30,
                                                           "optimizer.lr": 3e-3}))
    assert res.metrics["steps"] == 30 and res.metrics["test_accuracy"] >= 0.9


def test_plain_sgd_whose_l2_term_alone_diverges_is_warned_of_before_training(tmp_path, learnable_data_dir):
    cfg = cfg_for(learnable_data_dir, **{"optimizer.update": "sgd", "optimizer.lr": 1.0, "model.reg": 5.0,
                                         "optimizer.iterations": 2, "optimizer.schedule": "constant"})
    with pytest.warns(LinclfWarning, match=r"^with optimizer\.update sgd the L2 term alone grows W when "
                                           r"optimizer\.lr x model\.reg > 1 \(here 5: each step multiplies W by "
                                           r"1 - 2 lr reg = -9\); use optimizer\.lr below 0\.2 or a smaller "
                                           r"model\.reg$"):
        train_in(tmp_path, cfg)


@pytest.mark.filterwarnings("ignore::linclf.errors.LinclfWarning")
def test_huge_learning_rate_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path, learnable_data_dir):
    cfg = cfg_for(learnable_data_dir, **{"model.loss": "softmax", "optimizer.update": "sgd", "optimizer.lr": 1e30,
                                         "model.dtype": "float32", "train.checkpoint_every": 1})
    with pytest.raises(DivergenceError, match=r"at step \d+.*optimizer\.lr"):
        train_in(tmp_path, cfg)
    out = tmp_path / "run"
    assert not (out / "model.npz").exists()
    if (out / "checkpoint.npz").exists():       # any checkpoint written holds finite weights and loads
        assert np.all(np.isfinite(LinearClassifier.load(out / "checkpoint.npz").W))


def test_periodic_checkpoint_survives_divergence(tmp_path, learnable_data_dir):
    """A run that checkpoints each epoch, then diverges: the checkpoint is still the good one."""
    cfg = cfg_for(learnable_data_dir, **{"train.checkpoint_every": 1})
    state_steps = []

    def explode(state):
        state_steps.append(state.step)
        if state.step == 20:               # after the first epoch's checkpoint (11 steps an epoch)
            state.W[...] = np.nan

    with pytest.raises(DivergenceError, match="at step 21"):
        train_in(tmp_path, cfg, on_step=explode)
    ckpt = LinearClassifier.load(tmp_path / "run" / "checkpoint.npz")
    assert np.all(np.isfinite(ckpt.W))
    assert int(load_npz(tmp_path / "run" / "checkpoint.npz")["ckpt_step"]) == 11


@pytest.mark.parametrize("sampling", ["replacement", "shuffle"])
@pytest.mark.parametrize("batch, cut", [(32, 17), (128, 7)])      # 128 rows: the worker process shares the steps
def test_ctrl_c_then_resume_gives_the_uninterrupted_weights(tmp_path, learnable_data_dir, sampling, batch, cut):
    cfg = cfg_for(learnable_data_dir, **{"optimizer.sampling": sampling, "optimizer.batch_size": batch,
                                         "optimizer.epochs": 4 if batch == 32 else 8})
    whole = train_in(tmp_path, cfg, "whole")

    def ctrl_c(state):
        if state.step == cut:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(Interrupted, match=f"step {cut}"):
        train_in(tmp_path, cfg, "cut", on_step=ctrl_c)
    ckpt_path = tmp_path / "cut" / "checkpoint.npz"
    arrays = load_npz(ckpt_path)
    assert int(arrays["ckpt_step"]) == cut and str(arrays["metrics_json"]) == '{"reason": "interrupted"}'
    assert not (tmp_path / "cut" / "model.npz").exists()
    cfg2, arrays = config_of_checkpoint(ckpt_path)
    resumed = run_train(cfg2, tmp_path / "cut", resume=ckpt_path, resume_arrays=arrays)
    np.testing.assert_array_equal(resumed.model.W, whole.model.W)
    assert resumed.metrics["steps"] == whole.metrics["steps"]
    assert resumed.metrics["test_accuracy"] == whole.metrics["test_accuracy"]


def test_a_failed_checkpoint_write_keeps_the_previous_checkpoint(tmp_path, learnable_data_dir, monkeypatch):
    cfg = cfg_for(learnable_data_dir, **{"train.checkpoint_every": 1})
    calls = {"n": 0}
    real = runs_mod.LinearClassifier.save

    def flaky_save(self, path, extra=None):
        calls["n"] += 1
        if calls["n"] == 2:                  # the second checkpoint dies half-way
            def broken(fh, **arrays):
                fh.write(b"PK\x03\x04 partial")
                raise OSError(28, "No space left on device")
            monkeypatch.setattr(np, "savez", broken)
            try:
                return real(self, path, extra)
            finally:
                monkeypatch.undo()
        return real(self, path, extra)

    monkeypatch.setattr(runs_mod.LinearClassifier, "save", flaky_save)
    with pytest.raises(OSError, match="No space"):
        train_in(tmp_path, cfg)
    arrays = load_npz(tmp_path / "run" / "checkpoint.npz")
    assert int(arrays["ckpt_step"]) == 11    # the first epoch's checkpoint, intact
    assert LinearClassifier.load(tmp_path / "run" / "checkpoint.npz").W.shape == (10, 3073)


def test_keep_best_returns_the_best_validation_weights(tmp_path, learnable_data_dir):
    res = train_in(tmp_path, cfg_for(learnable_data_dir, **{"train.keep_best": True}))
    state = res.result.state
    np.testing.assert_array_equal(res.model.W, state.best_W)
    vals = [r["val_accuracy"] for r in state.history if r.get("val_accuracy") is not None]
    assert state.best_val == max(vals)


def test_patience_stops_early(tmp_path, learnable_data_dir):
    res = train_in(tmp_path, cfg_for(learnable_data_dir, **{"optimizer.epochs": 40, "train.patience": 2,
                                                           "optimizer.lr": 1e-2}))
    assert res.metrics["stopped"].startswith("early stopping") and res.metrics["steps"] < plan(
        cfg_for(learnable_data_dir, **{"optimizer.epochs": 40}), 350).total_steps


@pytest.mark.parametrize("method", ["random_search", "random_local_search"])
@pytest.mark.filterwarnings("ignore:the final val accuracy .* is at chance level")   # 40 candidates
def test_derivative_free_methods_give_the_same_weights_whatever_the_workers(tmp_path, learnable_data_dir, method):
    cfg = search_cfg(learnable_data_dir, method, **{"optimizer.trials": 40, "model.reg": 0.0,
                                                    "model.loss": "svm", "model.init_scale": 1e-3})
    W1 = train_in(tmp_path, cfg, "one", workers=1).result.W
    W2 = train_in(tmp_path, cfg, "two", workers=2).result.W
    np.testing.assert_array_equal(W1, W2)


@pytest.mark.parametrize("method", ["random_search", "random_local_search"])
@pytest.mark.filterwarnings("ignore:the final val accuracy .* is at chance level")   # 40 candidates
def test_derivative_free_methods(tmp_path, learnable_data_dir, method):
    cfg = search_cfg(learnable_data_dir, method, **{"optimizer.trials": 40, "model.reg": 0.0,
                                                    "model.loss": "svm", "model.init_scale": 1e-3})
    res = train_in(tmp_path, cfg)
    history = [r["loss"] for r in res.result.state.history if r.get("loss") is not None]
    assert all(b <= a for a, b in zip(history, history[1:]))    # best loss never goes up
    assert res.metrics["steps"] == 40 and 0 <= res.metrics["test_accuracy"] <= 1


@pytest.mark.parametrize("method", ["random_search", "random_local_search"])
@pytest.mark.filterwarnings("ignore:the final val accuracy .* is at chance level")   # 10 candidates
def test_derivative_free_methods_compute_no_gradient(tmp_path, learnable_data_dir, method, monkeypatch):
    from linclf.core.objective import Objective

    def gradient(*args, **kwargs):
        raise AssertionError("a derivative-free method computed a gradient")

    monkeypatch.setattr(Objective, "full", gradient)
    monkeypatch.setattr(Objective, "batch", gradient)
    cfg = search_cfg(learnable_data_dir, method, **{"optimizer.trials": 10, "model.reg": 1e-3,
                                                    "model.loss": "svm", "model.init_scale": 1e-3})
    assert train_in(tmp_path, cfg).metrics["steps"] == 10


@pytest.mark.parametrize("method,most", [("random_search", 64), ("random_local_search", 8)])
@pytest.mark.filterwarnings("ignore:the final val accuracy .* is at chance level")   # 40 candidates
def test_derivative_free_methods_score_several_candidates_a_pass(tmp_path, learnable_data_dir, monkeypatch, method,
                                                                 most):
    """A pass over the training rows scores up to 64 random-search candidates, or 8 local-search trials."""
    import linclf.training.loop as loop

    sizes = []
    real = loop.loss_values
    monkeypatch.setattr(loop, "loss_values", lambda Ws, *a, **k: sizes.append(len(Ws)) or real(Ws, *a, **k))
    cfg = search_cfg(learnable_data_dir, method, **{"optimizer.trials": 40, "model.reg": 0.0,
                                                    "model.loss": "svm", "model.init_scale": 1e-3})
    train_in(tmp_path, cfg)
    assert max(sizes) == min(most, 40) and len(sizes) < 40

"""LinearSVM and SoftmaxClassifier: the scikit-learn estimator contract, without and with scikit-learn."""
from __future__ import annotations

import pickle
import sys
import warnings

import numpy as np
import pytest

from conftest import invoke, one_line_error, optional

from linclf import LinearSVM, SoftmaxClassifier
from linclf.errors import DivergenceError, LinclfWarning
from linclf.estimators import NotFittedError
from linclf.inputs import ColumnVectorWarning
from linclf.core.model import LinearClassifier

ESTIMATORS = [SoftmaxClassifier, LinearSVM]
FAST = {"lr": 1e-2, "epochs": 20, "batch_size": 64}          # small data needs more steps than CIFAR's defaults


def make_data(n: int = 400, p: int = 48, classes: int = 4, noise: float = 1.0, seed: int = 0,
              templates_seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Linearly separable rows: a random template per class plus Gaussian noise; X (n, p) float64, y (n,) int."""
    templates = np.random.default_rng(templates_seed).normal(0.0, 1.0, (classes, p))
    rng = np.random.default_rng([seed, 1])
    y = np.arange(n) % classes
    rng.shuffle(y)
    return templates[y] + noise * rng.normal(0.0, 1.0, (n, p)), y


def make_pixels(n: int, classes: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-shaped uint8 rows (n, 3072): class templates plus uniform noise, as the fake archives hold."""
    templates = np.random.default_rng(99).integers(40, 216, (classes, 3072))
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    return np.clip(templates[y] + rng.integers(-40, 41, (n, 3072)), 0, 255).astype(np.uint8), y


@pytest.fixture(scope="module")
def data():
    X, y = make_data()
    X_test, y_test = make_data(n=200, seed=1)
    return X, y, X_test, y_test


# ------------------------------------------------------------ fit and predict


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_fit_predict_score_on_separable_data(cls, data):
    X, y, X_test, y_test = data
    clf = cls(**FAST)
    assert clf.fit(X, y) is clf
    assert clf.score(X_test, y_test) > 0.95
    pred = clf.predict(X_test)
    assert pred.shape == (200,) and set(pred) <= {0, 1, 2, 3}
    assert clf.classes_.tolist() == [0, 1, 2, 3] and clf.n_features_in_ == 48
    assert clf.coef_.shape == (4, 48) and clf.intercept_.shape == (4,) and clf.W_.shape == (4, 49)
    # 20 epochs of 400 rows in 64s: 125 steps drawn with replacement, 7 a shuffled epoch (140)
    assert clf.n_iter_ == (140 if clf.sampling == "shuffle" else 125) and len(clf.loss_curve_) == clf.n_iter_
    assert np.mean(clf.loss_curve_[-10:]) < np.mean(clf.loss_curve_[:10])
    scores = clf.decision_function(X_test)
    np.testing.assert_allclose(scores, X_test @ clf.coef_.T + clf.intercept_, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(clf.classes_[scores.argmax(axis=1)], pred)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_defaults_learn_cifar_shaped_pixels(cls):
    X, y = make_pixels(1000)
    X_test, y_test = make_pixels(300, seed=1)
    clf = cls().fit(X, y)                       # uint8 rows stay uint8; adam, cosine, std as the configs
    assert clf.score(X_test, y_test) > 0.95
    assert clf.coef_.shape == (10, 3072)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_string_labels_come_back(cls, data):
    X, y, X_test, y_test = data
    names = np.array(["cat", "dog", "frog", "ship"])
    clf = cls(**FAST).fit(X, names[y])
    assert clf.classes_.tolist() == ["cat", "dog", "frog", "ship"]
    pred = clf.predict(X_test)
    assert set(pred) <= set(names) and np.mean(pred == names[y_test]) > 0.95
    assert clf.score(X_test, list(names[y_test])) > 0.95


def test_binary_decision_function_is_one_column_like_scikit_learn(data):
    X, y, _, _ = data
    keep = y < 2
    clf = LinearSVM(**FAST).fit(X[keep], np.where(y[keep] == 1, "yes", "no"))
    d = clf.decision_function(X[keep])
    assert d.shape == (int(keep.sum()),) and clf.coef_.shape == (2, 48)
    np.testing.assert_array_equal(clf.predict(X[keep]), np.where(d > 0, "yes", "no"))


def test_predict_proba_rows_sum_to_one_and_agree_with_predict(data):
    X, y, X_test, _ = data
    clf = SoftmaxClassifier(**FAST).fit(X, y)
    proba = clf.predict_proba(X_test)
    assert proba.shape == (200, 4) and proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(clf.classes_[proba.argmax(axis=1)], clf.predict(X_test))
    np.testing.assert_allclose(clf.predict_log_proba(X_test), np.log(proba), atol=1e-9)


def test_the_squared_hinge_svm_trains_the_one_vs_all_loss(data):
    X, y, X_test, y_test = data
    clf = LinearSVM(loss="squared_hinge", **FAST).fit(X, y)
    assert clf.score(X_test, y_test) > 0.95
    assert clf.to_model().loss == "squared_hinge"
    hinge = LinearSVM(**FAST).fit(X, y)
    assert not np.array_equal(clf.W_, hinge.W_)                  # the loss parameter reached the training


@pytest.mark.parametrize("loss", ["softmax", "hinge"])
def test_the_svm_refuses_a_loss_it_does_not_train(data, loss):
    X, y, _, _ = data
    with pytest.raises(ValueError, match=f"LinearSVM: loss must be one of svm, squared_hinge, got '{loss}'"):
        LinearSVM(loss=loss).fit(X, y)


def test_the_svm_has_no_probabilities():
    assert not hasattr(LinearSVM(), "predict_proba") and not hasattr(LinearSVM(), "predict_log_proba")
    assert hasattr(SoftmaxClassifier(), "predict_proba")


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_unfitted_estimators_say_so(cls, data):
    X = data[0]
    for method in ("predict", "decision_function", "to_model") + (("predict_proba",) if cls is SoftmaxClassifier
                                                                  else ()):
        with pytest.raises(NotFittedError, match="not fitted yet") as info:
            getattr(cls(), method)(*(() if method == "to_model" else (X,)))
        assert isinstance(info.value, ValueError) and isinstance(info.value, AttributeError)
    assert not hasattr(cls(), "coef_")


def test_one_not_fitted_error_for_classifiers_and_extractors(data, monkeypatch):
    """The classifiers raise the class the feature extractors raise (estimator_base's), exactly that without
    scikit-learn loaded."""
    from linclf import KMeansFeatures
    from linclf.estimator_base import NotFittedError as base_error

    assert NotFittedError is base_error
    monkeypatch.delitem(sys.modules, "sklearn.exceptions", raising=False)
    with pytest.raises(NotFittedError) as ours:
        SoftmaxClassifier().predict(data[0])
    with pytest.raises(NotFittedError) as theirs:
        KMeansFeatures().transform(np.zeros((1, 3072), np.uint8))
    assert type(ours.value) is type(theirs.value) is NotFittedError
    assert str(ours.value) == ("This SoftmaxClassifier instance is not fitted yet. Call 'fit' with appropriate "
                               "arguments before using this estimator.")


def test_errors_and_warnings_are_scikit_learns_when_it_is_loaded(data):
    optional("sklearn", minversion="1.6")                # get_tags
    from sklearn import exceptions
    from sklearn.utils import get_tags

    X, y = data[0], data[1]
    with pytest.raises(exceptions.NotFittedError, match="This LinearSVM instance is not fitted yet"):
        LinearSVM().decision_function(X)
    with pytest.warns(exceptions.DataConversionWarning, match="column-vector y") as caught:
        SoftmaxClassifier(iterations=1).fit(X, y[:, None])
    assert all(isinstance(w.message, ColumnVectorWarning) for w in caught)
    tags = get_tags(LinearSVM())
    assert tags.estimator_type == "classifier" and tags.target_tags.required and tags.input_tags.two_d_array


# ------------------------------------------------------------------ parameters


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_get_params_set_params_round_trip(cls):
    clf = cls(lr=1e-3, reg=0.5, update="rmsprop", random_state=7)
    params = clf.get_params()
    assert params == clf.get_params(deep=False)
    assert params["lr"] == 1e-3 and params["update"] == "rmsprop" and params["random_state"] == 7
    assert cls(**params).get_params() == params
    assert ("delta" in params) == (cls is LinearSVM)
    assert clf.set_params(lr=2e-3, epochs=None, iterations=50) is clf
    assert clf.lr == 2e-3 and clf.iterations == 50 and clf.epochs is None
    with pytest.raises(ValueError, match="'lrr'"):
        clf.set_params(lrr=1)
    assert repr(cls(lr=1e-3)) == f"{cls.__name__}(lr=0.001)" and repr(cls()) == f"{cls.__name__}()"


def test_init_stores_anything_and_fit_validates():
    clf = SoftmaxClassifier(lr="not a number")                   # no validation before fit, as in scikit-learn
    assert clf.lr == "not a number"
    with pytest.raises(ValueError, match="lr"):
        clf.fit(*make_data(n=20))
    with pytest.raises(ValueError, match="reg"):
        clf.set_params(lr=1e-3, reg=-3).fit(*make_data(n=20))


@pytest.mark.parametrize("params, name", [
    ({"lr": -1.0}, "lr"), ({"lr": 0}, "lr"), ({"update": "adamw"}, "update"), ({"batch_size": 0}, "batch_size"),
    ({"reg": "lots"}, "reg"), ({"schedule": "cosin"}, "schedule"), ({"random_state": -1}, "random_state"),
    ({"random_state": "seed"}, "random_state"), ({"beta1": 1.0}, "beta1"), ({"dtype": "float16"}, "dtype"),
    ({"std": 1}, "std"), ({"iterations": -1}, "iterations"), ({"epochs": None}, "iterations or epochs"),
    ({"epochs": 0}, "epochs"),
    ({"validation_fraction": 1.5}, "validation_fraction"), ({"keep_best": True}, "validation_fraction"),
    ({"patience": 2}, "validation_fraction"),
])
def test_bad_parameters_are_value_errors_naming_the_parameter(params, name):
    X, y = make_data(n=40)
    with pytest.raises(ValueError, match=name) as info:
        SoftmaxClassifier(**params).fit(X, y)
    assert "optimizer." not in str(info.value) and "model." not in str(info.value)


def test_numpy_scalars_and_string_numbers_are_accepted():
    X, y = make_data(n=100)
    clf = SoftmaxClassifier(lr=np.float32(1e-2), batch_size=np.int64(32), epochs=np.int64(5), reg="1e-3",
                            random_state=np.int64(3)).fit(X, y)
    assert clf.n_iter_ == 16                                     # ceil(5 * 100 / 32)


@pytest.mark.parametrize("dtype", [np.float64, np.dtype("float64"), "float64"])
def test_dtype_may_be_given_as_numpy_spells_it(dtype):
    X, y = make_data(n=40)
    clf = SoftmaxClassifier(dtype=dtype, epochs=1).fit(X, y)
    assert clf.coef_.dtype == np.float64 and clf.get_params()["dtype"] is dtype     # kept as given, for clone
    with pytest.raises(ValueError, match="dtype: expected one of float32, float64, got 'int64'"):
        SoftmaxClassifier(dtype=np.int64).fit(X, y)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_same_random_state_same_weights(cls, data):
    X, y, _, _ = data
    a = cls(**FAST, random_state=5).fit(X, y)
    b = cls(**FAST, random_state=5).fit(X, y)
    c = cls(**FAST, random_state=6).fit(X, y)
    np.testing.assert_array_equal(a.coef_, b.coef_)
    np.testing.assert_array_equal(a.W_, b.W_)
    assert not np.array_equal(a.coef_, c.coef_)
    gen = cls(**FAST, random_state=np.random.default_rng(0)).fit(X, y)      # a Generator is drawn from
    assert gen.score(X, y) > 0.95
    assert np.array_equal(a.coef_, cls(**FAST, random_state=5).fit(X, y).coef_)     # refit is idempotent


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_every_update_rule_and_method_runs(cls, data):
    X, y, X_test, y_test = data
    for update, lr in (("sgd", 1e-2), ("momentum", 1e-3), ("nesterov", 1e-3), ("adagrad", 1e-1), ("rmsprop", 1e-3)):
        clf = cls(update=update, lr=lr, epochs=20, batch_size=64, schedule="constant").fit(X, y)
        assert clf.score(X_test, y_test) > 0.9, update
    gd = cls(method="gd", lr=1e-2, iterations=60).fit(X, y)
    assert gd.n_iter_ == 60 and gd.score(X_test, y_test) > 0.9
    rs = cls(method="random_search", trials=20, reg=0.0).fit(X, y)
    assert rs.n_iter_ == 20 and len(rs.loss_curve_) == 20


def test_validation_fraction_keeps_the_best_epoch(data):
    X, y, _, _ = data
    clf = SoftmaxClassifier(**FAST, validation_fraction=0.25, keep_best=True, patience=50).fit(X, y)
    assert len(clf.validation_scores_) == 20
    assert clf.best_validation_score_ == max(clf.validation_scores_) > 0.9
    plain = SoftmaxClassifier(**FAST).fit(X, y)
    assert not hasattr(plain, "validation_scores_")


# ------------------------------------------------------------------ partial_fit


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_partial_fit_continues_with_the_optimizer_state(cls, data):
    X, y, X_test, y_test = data
    clf = cls(lr=1e-3, batch_size=50)
    per_call = []
    for _ in range(6):
        before = clf.n_iter_ if hasattr(clf, "n_iter_") else 0
        assert clf.partial_fit(X, y, classes=[0, 1, 2, 3]) is clf
        assert clf.n_iter_ == before + 8                                  # one pass of 400 rows in 50s
        per_call.append(np.mean(clf.loss_curve_[before:]))
    assert len(clf.loss_curve_) == clf.n_iter_ == 48
    assert all(b < a for a, b in zip(per_call, per_call[1:]))            # each pass lowers the loss
    assert clf._state.opt_state.t == 48                                   # adam's step count carried over
    assert clf.score(X_test, y_test) > 0.9


def test_partial_fit_after_fit_picks_up_where_fit_stopped(data):
    X, y, _, _ = data
    clf = SoftmaxClassifier(**FAST).fit(X, y)
    coef, steps, loss = clf.coef_.copy(), clf.n_iter_, np.mean(clf.loss_curve_[-7:])
    clf.set_params(lr=1e-4).partial_fit(X, y)
    assert clf.n_iter_ == steps + 7 and len(clf.loss_curve_) == clf.n_iter_
    assert not np.array_equal(clf.coef_, coef) and np.abs(clf.coef_ - coef).max() < 0.05
    assert np.mean(clf.loss_curve_[-7:]) < loss * 1.05


def test_partial_fit_refuses_what_does_not_fit(data):
    X, y, _, _ = data
    clf = SoftmaxClassifier(**FAST).partial_fit(X[:100], y[:100], classes=np.arange(4))
    with pytest.raises(ValueError, match=r"not in classes_ \[0, 1, 2, 3\]: \[1\d"):   # plain ints, not np.int64(..)
        clf.partial_fit(X[:10], y[:10] + 10)
    with pytest.raises(ValueError, match="X has 47 features, but SoftmaxClassifier is expecting 48"):
        clf.partial_fit(X[:10, 1:], y[:10])
    with pytest.raises(ValueError, match="classes"):
        clf.partial_fit(X[:10], y[:10], classes=[0, 1])
    with pytest.raises(ValueError, match="update"):
        clf.set_params(update="sgd").partial_fit(X[:10], y[:10])
    with pytest.raises(ValueError, match=r"at least 2 classes; .*\(got 1 class: 0\)"):
        SoftmaxClassifier().partial_fit(X[:10], np.zeros(10, int))
    with pytest.raises(ValueError, match="method"):
        SoftmaxClassifier(method="random_search").partial_fit(X, y)


# --------------------------------------------------------------------- inputs


@pytest.mark.parametrize("X, y, text", [
    (np.full((4, 3), np.nan), [0, 1, 0, 1], r"NaN or infinity \(first in row 0\)"),
    (np.vstack([np.ones((2999, 3)), [[1.0, np.inf, 1.0]]]), [0, 1] * 1500, r"NaN or infinity \(first in row 2999\)"),
    (np.ones(4), [0, 1, 0, 1], "2D array"),
    (np.ones((4, 32, 32, 3)), [0, 1, 0, 1], r"shape \(4, 32, 32, 3\); flatten images into rows with "
                                            r"X\.reshape\(len\(X\), -1\), after X\.transpose\(0, 3, 1, 2\)"),
    (np.ones((4, 3)), [0, 1, 0], "inconsistent numbers of samples"),
    (np.ones((4, 3)), [0.5, 1.5, 0.1, 2.0], "Unknown label type: continuous"),
    (np.ones((4, 3)), [1, 1, 1, 1], "at least 2 classes"),
    (np.ones((4, 3)), None, "requires y"),
    (np.ones((0, 3)), [], "0 sample"),
    (np.ones((4, 0)), [0, 1, 0, 1], "0 feature"),
    ([["a", "b"], ["c", "d"]], [0, 1], "numeric"),
    (np.ones((4, 3), complex), [0, 1, 0, 1], "Complex"),
])
def test_bad_inputs_are_value_errors(X, y, text):
    with pytest.raises(ValueError, match=text):
        SoftmaxClassifier().fit(X, y)


def test_inputs_of_other_kinds(data):
    X, y, X_test, y_test = data
    clf = SoftmaxClassifier(**FAST).fit(X.tolist(), y.tolist())                    # lists
    assert clf.score(X_test.astype(np.float32), y_test) > 0.95                    # another dtype at predict
    with pytest.raises(ValueError, match="X has 47 features, but SoftmaxClassifier is expecting 48"):
        clf.predict(X_test[:, 1:])
    with pytest.raises(ValueError, match="NaN"):
        clf.predict(np.full((1, 48), np.inf))
    with pytest.warns(ColumnVectorWarning, match="column-vector y"):
        col = SoftmaxClassifier(**FAST).fit(X, y[:, None])
    np.testing.assert_array_equal(col.coef_, clf.coef_)
    with pytest.raises(TypeError, match="sparse"):
        SoftmaxClassifier().fit(type("Sparse", (), {"toarray": lambda self: X})(), y)


class Frame:
    """The bit of a pandas DataFrame the estimators look at: an array with string column names."""

    def __init__(self, values: np.ndarray, columns: list[str]):
        self.values, self.columns = values, columns

    def __array__(self, dtype=None, copy=None):
        return self.values if dtype is None else self.values.astype(dtype)


def test_column_names_are_remembered_and_checked(data):
    X, y, X_test, _ = data
    names = [f"f{i}" for i in range(48)]
    clf = SoftmaxClassifier(**FAST).fit(Frame(X, names), y)
    assert clf.feature_names_in_.tolist() == names
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        same = clf.predict(Frame(X_test, names))
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        np.testing.assert_array_equal(clf.predict(X_test), same)
    with pytest.raises(ValueError, match="feature names should match"):
        clf.predict(Frame(X_test, names[::-1]))
    plain = SoftmaxClassifier(**FAST).fit(X, y)
    assert not hasattr(plain, "feature_names_in_")
    with pytest.warns(UserWarning, match="fitted without feature names"):
        plain.predict(Frame(X_test, names))


def test_pickle_and_to_model(tmp_path, data):
    X, y, X_test, _ = data
    names = np.array(["a", "b", "c", "d"])
    clf = SoftmaxClassifier(**FAST).fit(X, names[y])
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict_proba(X_test), clf.predict_proba(X_test))
    clf.to_model().save(tmp_path / "model.npz")
    model = LinearClassifier.load(tmp_path / "model.npz")
    assert model.classes == ("a", "b", "c", "d") and model.loss == "softmax"
    np.testing.assert_array_equal(np.array(model.classes)[model.predict(X_test)], clf.predict(X_test))
    r = invoke("eval", "--model", tmp_path / "model.npz", "--data-dir", tmp_path / "nodata")   # not CIFAR's rows
    assert r.exit_code == 2 and not (tmp_path / "nodata").exists()
    assert one_line_error(r, only=True) == (
        f"error: {tmp_path / 'model.npz'} takes rows of {X.shape[1]} values, not CIFAR-10's 3072 pixels, and has "
        "no config that makes them (an estimator's to_model()?); score it in Python: "
        "LinearClassifier.load(PATH).predict(X) on your rows")


def test_a_fit_at_chance_level_warns_and_a_good_fit_does_not():
    X, y = make_data()
    with pytest.warns(LinclfWarning, match=r"^SoftmaxClassifier: the final training accuracy 0\.\d+ is at chance "
                                           r"level \(1/4\): it learned nothing; check lr \(too high or too low\), "
                                           r"reg \(too high: it holds W at 0\), the length \(epochs or iterations\) "
                                           r"and the data$"):
        SoftmaxClassifier(**{**FAST, "reg": 1e7}).fit(X, y)                     # reg holds W near 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", LinclfWarning)
        assert SoftmaxClassifier(**FAST).fit(X, y).score(X, y) > 0.9


def test_score_checks_sample_weight_and_says_when_y_shares_no_class_with_the_fit():
    X, y = make_data(n=40)
    clf = SoftmaxClassifier(**FAST).fit(X, np.array(["a", "b", "c", "d"])[y])
    with pytest.raises(ValueError, match=r"^SoftmaxClassifier.score: sample_weight must have shape \(40,\) to match y, "
                                         r"got \(10,\)$"):
        clf.score(X, np.array(["a", "b", "c", "d"])[y], sample_weight=np.ones(10))
    with pytest.raises(ValueError, match="sample_weight must be finite, >= 0 and not all 0$"):
        clf.score(X, np.array(["a", "b", "c", "d"])[y], sample_weight=np.zeros(40))
    with pytest.warns(LinclfWarning, match=r"^SoftmaxClassifier.score: y holds none of the classes fitted \('a', 'b', "
                                           r"'c', 'd'\), so the accuracy is 0; labels of another type than the "
                                           r"fit's\?$"):
        assert clf.score(X, y) == 0.0                                     # ints for a fit on strings


def test_settings_that_cannot_work_as_meant_are_warned_of_in_parameter_words():
    X, y = make_data(n=100)
    with pytest.warns(LinclfWarning, match=r"^SoftmaxClassifier: with update sgd the L2 term alone grows W when "
                                           r"lr x reg > 1 \(here 5: each step multiplies W by 1 - 2 lr reg = -9\); "
                                           r"use lr below 0\.2 or a smaller reg$"):
        SoftmaxClassifier(update="sgd", lr=1.0, reg=5.0, schedule="constant", iterations=2).fit(X, y)
    with pytest.warns(LinclfWarning, match=r"^LinearSVM: epochs 3 is not used by random_search: it tries trials \(5\) "
                                           r"candidates$"):
        LinearSVM(method="random_search", trials=5, epochs=3).fit(X, y)
    with warnings.catch_warnings():                          # the default epochs are no length asked for
        warnings.simplefilter("error", LinclfWarning)
        LinearSVM(method="random_search", trials=5).fit(X, y)


def test_a_search_at_chance_level_is_advised_on_its_own_settings():
    X, y = make_data(n=100)
    with pytest.warns(LinclfWarning, match=r"it learned nothing; check trials \(more candidates\), init_scale and "
                                           r"the data$"):
        SoftmaxClassifier(method="random_search", trials=1, init_scale=1e-12).fit(X, y)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_divergence_names_lr_or_the_l2_term_that_diverges_alone():
    X, y = make_data(n=100)
    with pytest.raises(DivergenceError, match=r"; lower lr \(e.g. lr=1e\+37, then lower until it trains\)$"):
        LinearSVM(update="sgd", lr=1e38, reg=0.0, schedule="constant", epochs=5).fit(X * 1e6, y)
    with pytest.raises(DivergenceError, match=r"^SoftmaxClassifier diverged: the loss became \S+ at step \d+ \(lr "
                                              r"1\): training diverged; with update sgd the L2 term alone grows W "
                                              r"when lr x reg > 1 \(here 1e\+09: each step multiplies W by 1 - 2 lr "
                                              r"reg = -2e\+09\); use lr below 1e-09 or a smaller reg$"):
        SoftmaxClassifier(update="sgd", lr=1.0, reg=1e9, schedule="constant", epochs=5).fit(X, y)


# --------------------------------------------------------------- scikit-learn


def test_clone_gives_an_unfitted_twin(data):
    base = optional("sklearn.base")
    X, y, _, _ = data
    clf = SoftmaxClassifier(**FAST, random_state=3).fit(X, y)
    twin = base.clone(clf)
    assert twin.get_params() == clf.get_params() and not hasattr(twin, "coef_")
    assert base.is_classifier(twin)
    np.testing.assert_array_equal(twin.fit(X, y).coef_, clf.coef_)


def test_in_a_pipeline(data):
    optional("sklearn")
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    X, y, X_test, y_test = data
    pipe = Pipeline([("scale", FunctionTransformer(lambda A: A * 10.0)),
                     ("clf", SoftmaxClassifier(**FAST, std=False))])
    pipe.set_params(clf__reg=1e-3)
    assert pipe.fit(X, y).score(X_test, y_test) > 0.95
    proba = pipe.predict_proba(X_test)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert pipe.named_steps["clf"].reg == 1e-3


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_grid_search(cls, data):
    optional("sklearn")
    from sklearn.model_selection import GridSearchCV

    X, y, X_test, y_test = data
    search = GridSearchCV(cls(epochs=10, batch_size=64), {"lr": [1e-3, 1e-2], "reg": [1e-3, 1e-1]}, cv=3)
    search.fit(X, y)
    assert search.best_params_["lr"] in (1e-3, 1e-2) and search.best_params_["reg"] in (1e-3, 1e-1)
    assert search.best_score_ > 0.9 and search.score(X_test, y_test) > 0.9
    assert len(search.cv_results_["mean_test_score"]) == 4


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_scikit_learn_estimator_checks(cls):
    """scikit-learn's own checks; skipped: check_classifiers_train with the defaults (see below)."""
    optional("sklearn", minversion="1.6")
    from sklearn.utils.estimator_checks import check_estimator

    skipped = {"check_classifiers_train":
               "the defaults are tuned for CIFAR-10 (5 epochs of 256-row batches): on the check's 300 blobs "
               "that is 6 steps, too few for its 0.83 accuracy; with epochs=100 it passes (below)"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_estimator(cls(), expected_failed_checks=skipped)
        check_estimator(cls(epochs=100))


@pytest.mark.parametrize("cls, name", [(SoftmaxClassifier, "softmax"), (LinearSVM, "svm")])
def test_defaults_are_the_shipped_configs(cls, name):
    """The estimators' defaults train like configs/<name>.yaml (model, preprocessing, optimizer)."""
    from pathlib import Path

    from linclf.config import load_config

    shipped = load_config(Path(__file__).resolve().parent.parent / "configs" / f"{name}.yaml")
    ours = cls()._config(seed=shipped.seed)
    assert ours.model == shipped.model
    assert ours.preprocess == shipped.preprocess
    assert ours.optimizer == shipped.optimizer

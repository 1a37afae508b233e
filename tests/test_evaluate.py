"""Accuracy, per-class accuracy and confusion matrix against hand-counted values."""
import numpy as np

import pytest

from linclf.training.evaluate import at_chance_level, confusion_matrix, evaluate_predictions


def test_confusion_matrix_counts_by_hand():
    y = np.array([0, 0, 1, 2, 2, 2])
    p = np.array([0, 1, 1, 2, 0, 2])
    cm = confusion_matrix(y, p, 3)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])


def test_evaluation_values():
    y = np.array([0, 0, 1, 2, 2, 2])
    p = np.array([0, 1, 1, 2, 0, 2])
    ev = evaluate_predictions(y, p, 4)
    assert ev.accuracy == 4 / 6 and ev.count == 6
    np.testing.assert_allclose(ev.per_class[:3], [0.5, 1.0, 2 / 3])
    assert np.isnan(ev.per_class[3])            # no examples of class 3
    d = ev.to_dict(["a", "b", "c", "d"])
    assert d["per_class_accuracy"]["d"] is None and d["confusion_matrix"][2] == [1, 0, 2, 0]


@pytest.mark.parametrize("accuracy, n, classes, at_chance", [
    (0.50, 100, 2, True), (0.64, 100, 2, True), (0.66, 100, 2, False),   # 0.5 + 3 x 0.05 = 0.65
    (0.12, 1000, 10, True), (0.20, 1000, 10, False),
    (1.00, 2, 2, False), (0.50, 8, 2, False),     # 8 rows: 0.5 + 3 x 0.177 > 1, no accuracy tells from guessing
    (0.50, 10, 2, True),
    (0.50, 0, 2, False),
])
def test_chance_level_is_three_standard_errors_of_guessing_when_the_rows_can_tell(accuracy, n, classes, at_chance):
    assert at_chance_level(accuracy, n, classes) is at_chance

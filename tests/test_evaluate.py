"""Accuracy, per-class accuracy and confusion matrix against hand-counted values."""
import numpy as np

from linclf.training.evaluate import confusion_matrix, evaluate_predictions


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

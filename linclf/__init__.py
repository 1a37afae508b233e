"""linclf: linear classifiers (multiclass SVM, softmax) on CIFAR-10 with NumPy."""
__version__ = "0.1.0"

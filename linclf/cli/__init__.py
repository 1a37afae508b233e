"""The ``linclf`` command line: thin Click commands over the library.

This is the only package that imports click or prints. ``app`` holds the
group (error messages, exit codes, ``--debug``, ``--workers``) and the options
commands share; each other module holds a command or a family of them and
registers it on the group when imported, here, in this order:

    data        config, download
    train       train
    features    features
    evaluate    eval
    gradcheck   gradcheck
    sweep       sweep
    plot        plot
    predict     predict
"""
from __future__ import annotations

from .app import cli, main
from . import data, train, features, evaluate, gradcheck, sweep, plot, predict

__all__ = ["cli", "main"]

COMMAND_MODULES = (data, train, features, evaluate, gradcheck, sweep, plot, predict)   # imported for what they register

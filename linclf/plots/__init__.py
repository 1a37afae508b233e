"""Pictures of a run or a sweep as PNG files (matplotlib, the optional extra ``plot``).

A run folder gives ``loss.png`` (per-step loss and a smoothed line),
``accuracy.png`` (train / val accuracy per epoch), ``templates.png`` (each
class's row of W as an image) and, given an evaluation, ``confusion.png``
(``runs``); a run on k-means features gives ``centroids.png`` (the learned
centroids as colour patches, un-whitened for display; ``centroids``) instead of
``templates.png``. A sweep folder gives ``sweep_lr_reg.png`` (val accuracy over
learning rate and regularisation) and, when the sweep varies
``optimizer.update``, ``sweep_updates.png`` (the best trial's loss curve per
update rule; ``sweeps``). ``folders`` tells the two kinds of folder apart,
``curves`` reads a training history, ``figure`` holds what they all share
(matplotlib imported lazily, figure sizes, atomic PNG files, skipped figures).
"""

"""Figures of a run, in three modules named for what they do.

- :mod:`~bigru_lightning.figures.drawing`: the matplotlib figures (confusion matrix, ROC, curves' canvas)
  and ``confusion_matrix.json``; no torch, no Lightning.
- :mod:`~bigru_lightning.figures.callback`: :class:`~bigru_lightning.figures.callback.TestFigureLogger`,
  the Lightning callback that draws them after testing into TensorBoard and the run's folder.
- :mod:`~bigru_lightning.figures.plot_command`: ``scripts/plot.py RUN_DIR``, PNG files from a finished run.

Nothing is imported here, so ``scripts/plot.py`` loads neither torch nor Lightning.
"""

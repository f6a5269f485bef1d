"""The comparison stage: the same validation images through PyTorch and every artifact.

``ssd-compare`` (:mod:`compare.cli`) reads a checkpoint, the artifacts ``ssd-convert``
wrote and a VOC or COCO split; it reports mAP, size and speed of each against PyTorch FP32
(:mod:`compare.run`), as a table, ``report.json``, ``report.md`` and plots
(:mod:`compare.report`, :mod:`compare.plots`). Artifacts run through
:func:`edge_app.backends.open_backend`, exactly as the edge app runs them
(:mod:`compare.predictors`).
"""

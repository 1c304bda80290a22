"""Training side of the REC-Net (arXiv 2310.16999): torch model, data, training, ONNX export.

Needs the ``train`` extra (torch, onnx, nilearn, ...); nothing in ``gate.verify`` imports this package.
"""

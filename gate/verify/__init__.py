"""Pure numerics of the "Trust, but Verify" method (arXiv 2310.16999) around one ONNX session."""

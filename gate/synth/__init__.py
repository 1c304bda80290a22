"""Synthetic studies with exactly known masks, for the demo, the tests and REC-Net training data."""

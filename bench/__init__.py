"""Benchmarks: network throughput and verdict latency, as ratios against baselines run alongside.

``python -m bench [--quick]`` (``make bench``) writes ``bench/results/<mode>.json`` and ``.md``.
"""

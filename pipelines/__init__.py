"""Batch, training and evaluation programs, each run as ``python -m pipelines.NAME``."""

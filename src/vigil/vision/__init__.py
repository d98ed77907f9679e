"""Detectors, alignment, quality and embedders. Heavy libraries load inside their adapters."""

"""Evaluation (LFW verification protocol) and calibration of embedders on labelled image sets."""

"""Judging models and data: metrics, calibration, robustness, drift, explanations, audits."""

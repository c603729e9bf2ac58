"""Deployment: export, quantize, bench, predict, generate."""

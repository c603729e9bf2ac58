"""Pipelines of steps (nncli run) and run summaries (nncli report)."""

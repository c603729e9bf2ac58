"""Recipes: typed closed schemas (one module per command group), loading with overrides and did-you-mean
(load.py: defaults < recipe file < KEY=VALUE overrides < flags), the command -> schema registry, shipped recipes."""

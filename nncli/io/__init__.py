"""Reading what users bring: data files and hub datasets, models (hub id, directory, run directory), and the inference API."""

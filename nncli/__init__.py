"""nncli: fine-tune, evaluate, distill, quantize and export Hugging Face models from the command line."""

__version__ = "0.1.0"
# the name on the package index (`pip install nncli-toolkit`); `nncli` there is an unrelated project.
# The command and the import name stay `nncli`.
DISTRIBUTION = "nncli-toolkit"

"""nncli: fine-tune, evaluate, distill, quantize and export Hugging Face models from the command line."""

__version__ = "0.1.0"

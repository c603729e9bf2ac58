"""Write digits/ (scikit-learn's handwritten digits as 32x32 grayscale PNGs, train/ and test/ by label) and
tiny-resnet/ (a 44k-parameter ResNet initialised from a config, seed 0, with its image processor) for the
images quickstart. Run in this folder: python make_digits.py  (both folders must not exist yet)."""

from pathlib import Path

from nncli.io.image_demo import tiny_image_model, write_digits

if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    write_digits(here / "digits", size=32, test_fraction=0.2, seed=0)
    tiny_image_model(here / "tiny-resnet", "resnet", image_size=32, num_labels=10, seed=0)

"""Recipes: closed schemas, overrides, precedence, all errors at once with "did you mean", shipped recipes."""

from __future__ import annotations

import pytest
import yaml

from nncli.core.errors import UsageError
from nncli.recipe.load import dump, load_recipe
from nncli.recipe.shipped import recipes_dir, shipped_recipes


def write(tmp_path, text: str, name: str = "r.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_precedence_defaults_file_overrides_flags(tmp_path):
    p = write(tmp_path, "data: {train: a.csv}\ntrain: {lr: 0.1, epochs: 2, batch_size: 4}\n")
    r = load_recipe("finetune", p, ["train.lr=0.2", "train.epochs=3"], {"train.lr": 0.3})
    assert r.train.lr == 0.3          # flag beats override
    assert r.train.epochs == 3        # override beats file
    assert r.train.batch_size == 4    # file beats default
    assert r.train.weight_decay == 0.01  # default
    assert r.name == "r"              # default name: the recipe file's stem


def test_all_errors_reported_at_once_with_did_you_mean(tmp_path):
    p = write(tmp_path, "data: {train: a.csv, text_colum: t}\ntrain: {lr: -1, epoch: 3}\nmethod: qlora\n")
    with pytest.raises(UsageError) as e:
        load_recipe("finetune", p)
    details = "\n".join(e.value.details)
    assert "data.text_colum: unknown key; did you mean 'data.text_column'?" in details
    assert "train.epoch: unknown key; did you mean 'train.epochs'?" in details
    assert "train.lr:" in details and "method:" in details
    assert e.value.code == 2


def test_override_values_are_typed():
    r = load_recipe("finetune", None, ["data.train=x.csv", "train.epochs=2.5", "data.clean_text=false",
                                       "lora.target_modules=[query, value]", "train.eval_every=50"])
    assert r.train.epochs == 2.5 and r.data.clean_text is False
    assert r.lora.target_modules == ["query", "value"] and r.train.eval_every == 50


@pytest.mark.parametrize("bad", ["noequals", "=3", "a..b=1"])
def test_malformed_override(bad):
    with pytest.raises(UsageError):
        load_recipe("finetune", None, [bad], {"data.train": "x.csv"})


def test_malformed_yaml_names_line(tmp_path):
    p = write(tmp_path, "data:\n  train: a.csv\n   bad: [\n")
    with pytest.raises(UsageError) as e:
        load_recipe("finetune", p)
    assert "malformed YAML" in e.value.message and "line" in e.value.message


def test_yaml_is_loaded_safely(tmp_path):
    p = write(tmp_path, "data: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(UsageError) as e:
        load_recipe("finetune", p)
    assert "malformed YAML" in e.value.message


def test_missing_recipe_and_wrong_command(tmp_path):
    with pytest.raises(UsageError):
        load_recipe("finetune", tmp_path / "nope.yaml")
    p = write(tmp_path, "command: finetune\ndata: {train: a.csv}\n")
    assert load_recipe("finetune", p).command == "finetune"


def test_relative_paths_resolve_against_recipe_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "train.csv").write_text("text,label\na,b\n")
    p = write(tmp_path / "sub", "data: {train: train.csv}\n")
    r = load_recipe("finetune", p)
    assert r.data.train == str((tmp_path / "sub" / "train.csv").resolve())


def test_resolved_recipe_round_trips(tmp_path):
    r = load_recipe("finetune", None, ["train.lr=0.01"], {"data.train": "x.csv"})
    p = write(tmp_path, dump(r))
    assert load_recipe("finetune", p).model_dump() == {**r.model_dump(), "name": "r"}


def test_every_shipped_recipe_validates(cli):
    names = list(shipped_recipes())
    assert {"quickstart", "reviews", "distill-quickstart", "classifier-lora", "classifier-full", "sst2"} <= set(names)
    code, stdout, stderr = cli("recipes", "validate", *names)
    assert code == 0, stderr
    for name, path in shipped_recipes().items():
        header = path.read_text().splitlines()[:4]
        assert header[0].startswith("# ") and any("Run:" in h for h in header), f"{name} needs a comment header"
        assert any("Override:" in ln for ln in path.read_text().splitlines()[:6]), name


def test_recipes_validate_reports_every_bad_file(tmp_path, cli):
    a = write(tmp_path, "data: {train: a.csv}\ntrain: {lrr: 1}\n", "a.yaml")
    b = write(tmp_path, "command: finetun\n", "b.yaml")
    code, _, stderr = cli("recipes", "validate", a, b, "quickstart")
    assert code == 2
    assert "train.lrr" in stderr and "did you mean 'finetune'" in stderr


def test_recipes_show_and_copy(tmp_path, cli):
    code, stdout, _ = cli("recipes", "show", "reviews")
    assert code == 0 and "command: finetune" in stdout
    dest = tmp_path / "mine.yaml"
    code, _, stderr = cli("recipes", "copy", "reviews", dest)
    assert code == 0, stderr
    copied = yaml.safe_load(dest.read_text())
    assert copied["data"]["train"] == str((recipes_dir() / "data/reviews/train.csv").resolve())
    assert dest.read_text().startswith("# LoRA-fine-tune")
    # a copied pipeline still finds its step recipes and data
    pipe = tmp_path / "pipe.yaml"
    code, _, stderr = cli("recipes", "copy", "quickstart", pipe)
    assert code == 0, stderr
    steps = {s["name"]: s for s in yaml.safe_load(pipe.read_text())["steps"]}
    assert steps["finetune"]["recipe"] == str((recipes_dir() / "reviews.yaml").resolve())
    assert steps["drift"]["set"]["current"] == str((recipes_dir() / "data/reviews/heldout.csv").resolve())
    code, _, stderr = cli("recipes", "validate", pipe)
    assert code == 0, stderr
    code, _, stderr = cli("recipes", "copy", "reviews", dest)
    assert code == 2 and "--force" in stderr
    code, _, stderr = cli("recipes", "show", "quickstrat")
    assert code == 2 and "did you mean 'quickstart'" in stderr

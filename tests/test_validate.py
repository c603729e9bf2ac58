"""`nncli validate`: pre-flight data checks listed at once, estimates, --strict."""

from __future__ import annotations

import json

from conftest import make_rows, write_csv


def _args(model, train, validation=None, *extra):
    a = ["validate", "--model", str(model), "--data", str(train)]
    if validation:
        a += ["--validation", str(validation)]
    return [*a, *extra]


def test_clean_data_passes_with_summary(tiny_bert, tiny_data, cli):
    code, stdout, stderr = cli(*_args(tiny_bert, tiny_data["train"], tiny_data["validation"], "--json"))
    assert code == 0, stderr
    r = json.loads(stdout)
    assert r["data"]["rows"]["train"]["kept"] == 240
    assert set(r["data"]["class_counts"]["train"]) == {"negative", "neutral", "positive"}
    assert r["data"]["tokens"]["p50"] > 0
    assert 0 <= r["estimate"]["seconds_per_epoch"] < 5   # 240 short rows on a 2-layer model: seconds, not minutes


def test_leakage_duplicates_truncation_imbalance_are_warned(tiny_bert, tmp_path, cli):
    rows = make_rows(100, 5)
    rows += [dict(rows[0], id="dup1"), dict(rows[1], id="dup2", label="neutral" if rows[1]["label"] != "neutral" else "positive")]
    rows += [{"id": "long", "text": " ".join(["great"] * 300), "label": "positive", "category": "a"}] * 1
    train = write_csv(tmp_path / "train.csv", rows)
    val = write_csv(tmp_path / "val.csv", rows[:10] + make_rows(20, 6))
    code, stdout, stderr = cli(*_args(tiny_bert, train, val, "data.max_length=10", "--json"))
    assert code == 0, stderr
    warnings = "\n".join(json.loads(stdout)["warnings"])
    assert "leakage: 10 of 30 validation texts" in warnings
    assert "duplicate text" in warnings and "different labels" in warnings
    assert "truncated" in warnings
    code, stdout, stderr = cli(*_args(tiny_bert, train, val, "data.max_length=10", "--strict"))
    assert code == 3 and "--strict" in stderr


def test_all_problems_listed_at_once(tmp_path, cli):
    code, _, stderr = cli("validate", "--model", tmp_path / "no_model", "--data", tmp_path / "no.csv")
    assert code == 3
    assert "2 problems" in stderr and "no.csv" in stderr and "no_model" in stderr


def test_model_dir_without_weights_or_with_pickle_only(tmp_path, tiny_bert, tiny_data, cli):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_bert, broken)
    (broken / "model.safetensors").unlink()
    code, _, stderr = cli(*_args(broken, tiny_data["train"]))
    assert code == 3 and "no weights" in stderr
    (broken / "pytorch_model.bin").write_bytes(b"not really a pickle")
    code, _, stderr = cli(*_args(broken, tiny_data["train"]))
    assert code == 3 and "pickle" in stderr and "model.allow_pickle" in stderr


def test_tokenizer_model_mismatch(tmp_path, tiny_bert, tiny_roberta, tiny_data, cli):
    import shutil

    mixed = tmp_path / "mixed"
    shutil.copytree(tiny_bert, mixed)
    for f in mixed.iterdir():
        if "tok" in f.name or f.name in ("vocab.txt", "special_tokens_map.json"):
            f.unlink()
    for f in tiny_roberta.iterdir():
        if f.name in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "special_tokens_map.json"):
            shutil.copy(f, mixed / f.name)
    code, _, stderr = cli(*_args(mixed, tiny_data["train"]))
    assert code == 3 and "do not match" in stderr


def test_max_length_beyond_model_positions(tiny_bert, tiny_data, cli):
    code, _, stderr = cli(*_args(tiny_bert, tiny_data["train"], None, "data.max_length=4096"))
    assert code == 2 and "positions" in stderr

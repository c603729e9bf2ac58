"""logging.report_to: [mlflow] logs the training parameters and metrics to the MLflow tracking store (issue #18).

Needs the `mlflow` extra (mlflow-skinny); skipped without it."""

from __future__ import annotations

import json

import pytest
from conftest import finetune_args

mlflow = pytest.importorskip("mlflow", reason="mlflow is not installed: pip install 'nncli-toolkit[mlflow]' (mlflow-skinny)")


@pytest.mark.slow
def test_a_run_logs_its_params_and_metrics_to_mlflow(tiny_bert, tiny_data, tmp_path, monkeypatch, cli):
    store = tmp_path / "mlruns"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")      # MLflow 3 keeps the file store behind this switch
    out = tmp_path / "run"
    args = finetune_args(tiny_bert, tiny_data, out, "train.epochs=2", "logging.report_to=[mlflow]", "--json")
    code, stdout, stderr = cli(*args)
    assert code == 0, stderr
    assert json.loads(stdout)["status"] == "succeeded"
    import yaml

    resolved = yaml.safe_load((out / "recipe.yaml").read_text())

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=store.as_uri())
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["lr"] == "0.005" and params["batch_size"] == "16" and params["epochs"] == "2.0"
    assert params["seed"] == str(resolved["train"]["seed"]) and params["metric"] == resolved["train"]["metric"]
    metrics = run.data.metrics
    assert {"train_loss", "train_lr", "validation_accuracy", "validation_macro_f1"} <= set(metrics)
    # the last validation numbers equal the last evaluation nncli wrote to metrics.jsonl
    evals = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [e for e in evals if "validation" in json.dumps(e) and "accuracy" in json.dumps(e)]
    history = client.get_metric_history(run.info.run_id, "validation_accuracy")
    assert len(history) == len(evals) >= 2          # one point per evaluation (every epoch)
    assert all(0 <= h.value <= 1 for h in history)


def test_an_unusable_tracking_uri_is_an_environment_error(tiny_bert, tiny_data, tmp_path, monkeypatch, cli):
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'a-file' / 'mlflow.db'}")    # cannot be created
    out = tmp_path / "run"
    code, _, stderr = cli(*finetune_args(tiny_bert, tiny_data, out, "train.epochs=1", "logging.report_to=[mlflow]"))
    assert code == 4, stderr
    assert "MLflow" in stderr and "MLFLOW_TRACKING_URI" in stderr and "Traceback" not in stderr
    assert not (out / "merged").exists()

"""`nncli sweep` (Optuna), `finetune --find-lr`, and `data.augment`, on tiny models."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import pytest
from conftest import finetune_args, interrupt_at


def _sweep_args(tiny_bert, tiny_data, out, *extra):
    return ["sweep", "--model", str(tiny_bert), "--data", str(tiny_data["train"]), "--validation", str(tiny_data["validation"]),
            "--test", str(tiny_data["test"]), "-o", str(out), "data.max_length=32", "train.epochs=3", "method=full",
            *map(str, extra)]


SPACE = "sweep.space={train.lr: {low: 1.0e-3, high: 1.0e-2, log: true}, train.batch_size: {choices: [8, 16]}}"


@pytest.mark.slow
def test_sweep_finds_a_best_trial_scores_test_once_and_resumes(tiny_bert, tiny_data, tmp_path, cli):
    out = tmp_path / "sw"
    code, stdout, stderr = cli(*_sweep_args(tiny_bert, tiny_data, out, SPACE, "--trials", "3", "--json"))
    assert code == 0, stderr
    r = json.loads(stdout)
    assert len(r["trials"]) == 3 and r["counts"].get("complete", 0) >= 1
    best = r["best"]
    assert set(best["params"]) == {"train.lr", "train.batch_size"} and 1e-3 <= best["params"]["train.lr"] <= 1e-2
    trial = json.loads((out / f"trial-{best['number']:04d}" / "report.json").read_text())
    assert "test" not in trial["metrics"]             # selection on validation only
    assert set(best["test"]) >= {"accuracy", "macro_f1"}  # the test split, scored once for the best trial
    assert (out / "study.db").exists() and (out / "history.png").exists() and (out / "best-params.yaml").exists()
    # the same command with a larger budget continues the study instead of starting again
    code, stdout, stderr = cli(*_sweep_args(tiny_bert, tiny_data, out, SPACE, "--trials", "4", "--json"))
    assert code == 0, stderr
    r2 = json.loads(stdout)
    assert [t["number"] for t in r2["trials"]] == [0, 1, 2, 3]
    assert [t["params"] for t in r2["trials"][:3]] == [t["params"] for t in r["trials"]]


@pytest.mark.slow
def test_pruning_stops_a_bad_trial(tiny_bert, tiny_data, tmp_path, cli):
    out = tmp_path / "prune"
    enqueue = "sweep.enqueue=[{train.lr: 5.0e-3}, {train.lr: 1.0e-9}]"
    space = "sweep.space={train.lr: {low: 1.0e-9, high: 1.0e-2, log: true}}"
    code, stdout, stderr = cli(*_sweep_args(tiny_bert, tiny_data, out, space, enqueue, "sweep.startup_trials=1", "train.epochs=4",
                                            "--trials", "2", "--json"))
    assert code == 0, stderr
    trials = json.loads(stdout)["trials"]
    assert trials[0]["state"] == "complete" and trials[1]["state"] == "pruned"
    assert trials[1]["last_step"] < trials[0]["last_step"]   # stopped before the end
    assert json.loads((out / "trial-0001" / "report.json").read_text())["status"] == "pruned"


@pytest.mark.slow
def test_two_workers_share_one_study_without_duplicate_trials(tiny_bert, tiny_data, tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    def worker(i):
        args = _sweep_args(tiny_bert, tiny_data, tmp_path / f"w{i}", SPACE, "--trials", "4", "--storage", url,
                           "--study-name", "shared", "-q", "--json")
        return subprocess.Popen([sys.executable, "-m", "nncli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=dict(os.environ))

    procs = [worker(i) for i in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [(p.returncode, o[1][-1500:], o[0][-500:]) for p, o in zip(procs, outs)]
    import optuna

    study = optuna.load_study(study_name="shared", storage=url)
    done = [t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    assert 4 <= len(done) <= 5   # the budget, at most one trial over when both start their last one at once
    numbers = [t.number for t in done]
    assert len(set(numbers)) == len(numbers)
    dirs = [t.user_attrs["run_dir"] for t in done]
    assert len(set(dirs)) == len(dirs)
    assert {os.path.dirname(d) for d in dirs} == {str(tmp_path / "w0"), str(tmp_path / "w1")}   # both workers took trials


def test_sweep_refuses_a_bad_space(tiny_bert, tiny_data, tmp_path, cli):
    code, _, stderr = cli(*_sweep_args(tiny_bert, tiny_data, tmp_path / "x", "sweep.space={train.lr: {low: 1.0, high: 0.1}}",
                                       "--trials", "1"))
    assert code == 2 and "train.lr" in stderr
    code, _, stderr = cli(*_sweep_args(tiny_bert, tiny_data, tmp_path / "y", "--metric", "ece", "--trials", "1"))
    assert code == 2 and "ece" in stderr


# ---------------------------------------------------------------------------------------------- LR finder

@pytest.mark.slow
def test_find_lr_suggests_a_rate_and_restores_the_weights(tiny_bert, tiny_data, tmp_path, cli):
    out = tmp_path / "lr"
    code, stdout, stderr = cli(*finetune_args(tiny_bert, tiny_data, out, "--method", "full", "train.lr_finder_steps=60",
                                              "--find-lr", "--json"))
    assert code == 0, stderr
    r = json.loads(stdout)
    assert r["mode"] == "find-lr" and 1e-7 < r["lr_finder"]["suggested_lr"] < 1.0
    curve = json.loads((out / "lr_finder.json").read_text())
    assert len(curve["lrs"]) == r["lr_finder"]["steps_run"] and curve["lrs"] == sorted(curve["lrs"])
    assert (out / "lr_finder.png").stat().st_size > 1000 and not (out / "merged").exists()
    # --use-found-lr trains with it, and the test leaves the model as it was before the range test
    out2 = tmp_path / "lr2"
    code, stdout, stderr = cli(*finetune_args(tiny_bert, tiny_data, out2, "--method", "full", "train.lr_finder_steps=60",
                                              "--use-found-lr", "--json"))
    assert code == 0, stderr
    r2 = json.loads(stdout)
    assert r2["training"]["lr"] == pytest.approx(r["lr_finder"]["suggested_lr"]) and r2["training"]["lr_source"]
    assert (out2 / "merged").exists()


def test_lr_finder_callback_restores_weights_and_caps_the_suggestion():
    """The range-test callback on a toy problem: the rate grows geometrically, the weights come back bit for bit, and
    the suggestion is the steepest descent capped at a tenth of the lowest-loss rate."""
    import torch

    from nncli.train.callbacks import LRFinder

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=1e-7)
    x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))

    class FakeRun:
        optimizer = opt
        stopped = None

        def trainable(self):
            return {n: p.detach().clone() for n, p in model.named_parameters()}

        def restore(self, w):
            with torch.no_grad():
                for n, p in model.named_parameters():
                    p.copy_(w[n])

        def request_stop(self, reason):
            self.stopped = reason

    run, finder = FakeRun(), LRFinder(steps=100, end=1e3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    finder.on_train_begin(run)
    for _ in range(100):
        lr = opt.param_groups[0]["lr"]
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        finder.on_step(run, float(loss), lr)
        if run.stopped:
            break
    finder.on_train_end(run)
    res = finder.result()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert res["lrs"][1] / res["lrs"][0] == pytest.approx((1e3 / 1e-7) ** (1 / 99))
    assert run.stopped == "the loss diverged" and res["steps_run"] < 100
    assert res["suggested_lr"] == pytest.approx(min(res["steepest_lr"], res["min_loss_lr"] / 10))


# ---------------------------------------------------------------------------------------------- augmentation

def test_augmentation_methods_are_seeded_and_label_preserving():
    from nncli.recipe.finetune import AugmentSpec
    from nncli.train.augment import augment_split, augment_text, load_synonyms

    syn = load_synonyms(None)
    assert "excellent" in syn["great"] and "great" in syn["excellent"]
    rng = random.Random(0)
    t = "the delivery was great and the price was good"
    assert augment_text(t, ["synonym"], 0.5, random.Random(1), syn) != t
    assert sorted(augment_text(t, ["swap"], 0.2, rng, syn).split()) == sorted(t.split())
    assert len(augment_text(t, ["deletion"], 0.3, rng, syn).split()) < len(t.split())
    spec = AugmentSpec(methods=["synonym", "swap", "deletion"], p=0.2, copies=2)
    a = augment_split([t, "bad product"], [1, 0], spec, seed=3)
    b = augment_split([t, "bad product"], [1, 0], spec, seed=3)
    assert a == b and a[2] >= 2 and a[0][:2] == [t, "bad product"]
    # every variant is made of its own source's words (or their synonyms) and carries that source's label
    sources = {t: 1, "bad product": 0}
    vocab = {s: set(s.split()) | {w for word in s.split() for alt in syn.get(word, ()) for w in alt.split()} for s in sources}
    for txt, lab in zip(a[0][2:], a[1][2:]):
        assert {y for s, y in sources.items() if set(txt.split()) <= vocab[s]} == {lab}, (txt, lab)
    assert a[1][2:] == [1] * a[1][2:].count(1) + [0] * a[1][2:].count(0)


@pytest.mark.slow
def test_augmentation_in_finetune_reports_counts(tiny_bert, tiny_data, tmp_path, cli):
    code, stdout, stderr = cli(*finetune_args(tiny_bert, tiny_data, tmp_path / "aug", "data.augment.methods=[swap, deletion]",
                                              "data.augment.copies=1", "--json"))
    assert code == 0, stderr
    a = json.loads(stdout)["data"]["augmentation"]
    assert a["examples_added"] > 0 and a["augmented_examples_seen"] > 0
    assert a["train_rows_with_augmentation"] > a["examples_added"]


@pytest.mark.slow
def test_interrupted_sweep_resumes_and_finishes_the_budget(tiny_bert, tiny_data, tmp_path, cli):
    import signal

    out = tmp_path / "int"
    args = _sweep_args(tiny_bert, tiny_data, out, SPACE, "train.epochs=8", "train.batch_size=4", "--trials", "3")
    rc, _, err = interrupt_at(args, [("train.step", signal.SIGINT)], tmp_path)   # in trial 0, after its first checkpoint
    assert rc == 130, err
    assert (out / "trial-0000" / "checkpoint" / "state.json").is_file()
    assert "study resumes" in err
    code, stdout, stderr = cli(*args, "--json")
    assert code == 0, stderr
    r = json.loads(stdout)
    assert r["counts"].get("complete", 0) + r["counts"].get("pruned", 0) == 3
    assert r["trials"][0]["state"] == "fail"   # the interrupted trial is recorded, and redone by a new one

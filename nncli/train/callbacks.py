"""Callbacks of the training loop: metrics.jsonl, experiment trackers (TensorBoard, MLflow, Weights & Biases),
and the learning-rate range test. Only the main process writes."""

from __future__ import annotations

import math

from nncli.core import console
from nncli.train.loop import Callback, Run


class MetricsLog(Callback):
    """metrics.jsonl: the mean training loss and learning rate every `every` steps, and every evaluation."""

    def __init__(self, out, every: int = 10):
        self.out, self.every = out, every
        self.losses: list[float] = []

    def on_step(self, run: Run, loss: float, lr: float) -> None:
        self.losses.append(loss)
        if run.state.step % self.every == 0 and run.is_main:
            epoch = round(run.state.step / run.steps_per_epoch, 3)
            self.out.append_jsonl("metrics.jsonl", {"step": run.state.step, "epoch": epoch,
                                                    "train_loss": round(sum(self.losses) / len(self.losses), 5), "lr": lr})
            self.losses = []

    def on_evaluate(self, run: Run, step: int, metrics: dict) -> None:
        if run.is_main:
            self.out.append_jsonl("metrics.jsonl", run.state.history[-1])


class Trackers(Callback):
    """logging.report_to: the same numbers as metrics.jsonl, to TensorBoard, MLflow and/or Weights & Biases."""

    def __init__(self, out, report_to: list[str], run_name: str | None, params: dict, every: int = 10):
        self.out, self.names, self.run_name, self.params, self.every = out, list(report_to), run_name, params, every
        self.tb = self.mlflow = self.wandb = None
        self.losses: list[float] = []

    def on_train_begin(self, run: Run) -> None:
        if not run.is_main:
            return
        from nncli.core.errors import missing_extra

        try:
            if "tensorboard" in self.names:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(self.out / "tensorboard"))
            if "mlflow" in self.names:
                self._start_mlflow()
            if "wandb" in self.names:
                import wandb

                self.wandb = wandb.init(project="nncli", name=self.run_name, dir=str(self.out.path), config=self.params)
        except ImportError as e:
            name = e.name or str(e)
            extra = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}.get(name, name)
            raise missing_extra(name, extra) from None

    def _start_mlflow(self) -> None:
        import mlflow

        try:
            mlflow.start_run(run_name=self.run_name)
            mlflow.log_params({k: str(v)[:250] for k, v in self.params.items()})
        except Exception as e:  # an unreachable server or a refused store: the user's setting, not a bug in nncli
            from nncli.core.errors import EnvironmentProblem

            why = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            raise EnvironmentProblem(f"MLflow could not log to MLFLOW_TRACKING_URI={mlflow.get_tracking_uri()}: {why}",
                                     "set MLFLOW_TRACKING_URI to a reachable server or a writable sqlite:///PATH/mlflow.db "
                                     "(a file: store needs MLFLOW_ALLOW_FILE_STORE=true with MLflow 3)") from None
        self.mlflow = mlflow

    def _log(self, values: dict, step: int) -> None:
        if self.tb:
            for k, v in values.items():
                self.tb.add_scalar(k, v, step)
        if self.mlflow:
            self.mlflow.log_metrics({k.replace("/", "_"): v for k, v in values.items()}, step=step)
        if self.wandb:
            self.wandb.log(values, step=step)

    def on_step(self, run: Run, loss: float, lr: float) -> None:
        self.losses.append(loss)
        if run.is_main and run.state.step % self.every == 0:
            self._log({"train/loss": sum(self.losses) / len(self.losses), "train/lr": lr}, run.state.step)
            self.losses = []

    def on_evaluate(self, run: Run, step: int, metrics: dict) -> None:
        if run.is_main:
            self._log({f"validation/{k}": v for k, v in metrics.items() if isinstance(v, (int, float))}, step)

    def on_train_end(self, run: Run) -> None:
        if self.tb:
            self.tb.close()
        if self.mlflow:
            self.mlflow.end_run()
        if self.wandb:
            self.wandb.finish()


class LRFinder(Callback):
    """The learning-rate range test (Smith 2017): the rate grows exponentially from `start` to `end` over `steps`
    steps, one batch each; the loss is smoothed (bias-corrected EMA) and the test stops when it diverges.

    Suggestion: the rate at the steepest descent of the smoothed loss (in log-rate), capped at a tenth of the rate of
    the lowest loss. The trainable weights are restored afterwards."""

    def __init__(self, steps: int, start: float = 1e-7, end: float = 1.0, smooth: float = 0.98, diverge: float = 4.0):
        self.steps, self.start, self.end, self.smooth, self.diverge = steps, start, end, smooth, diverge
        self.lrs: list[float] = []
        self.losses: list[float] = []
        self.smoothed: list[float] = []
        self._avg, self._best = 0.0, math.inf

    def rate(self, i: int) -> float:
        return self.start * (self.end / self.start) ** (i / max(self.steps - 1, 1))

    def on_train_begin(self, run: Run) -> None:
        self.saved = run.trainable()
        self._set(run, self.rate(0))

    def _set(self, run: Run, lr: float) -> None:
        for g in run.optimizer.param_groups:
            g["lr"] = lr

    def on_step(self, run: Run, loss: float, lr: float) -> None:
        i = len(self.losses)
        self.lrs.append(self.rate(i))
        self.losses.append(loss)
        self._avg = self.smooth * self._avg + (1 - self.smooth) * loss
        s = self._avg / (1 - self.smooth ** (i + 1))
        self.smoothed.append(s)
        self._best = min(self._best, s)
        if not math.isfinite(loss) or (i > 10 and s > self.diverge * self._best):
            run.request_stop("the loss diverged")
        else:
            self._set(run, self.rate(i + 1))

    def on_train_end(self, run: Run) -> None:
        run.restore(self.saved)

    def result(self) -> dict:
        import numpy as np

        from nncli.core.errors import InputError

        if len(self.smoothed) < 10:
            raise InputError("the learning-rate range test diverged at once", "check the data, or lower the start of the range")
        lrs, sm = self.lrs, np.array(self.smoothed)
        grad = np.gradient(sm, np.log10(lrs))
        lo = max(3, int(0.05 * len(sm)))
        i_min = int(np.argmin(sm))
        window = grad[lo:max(i_min, lo + 1)]
        i_steep = lo + int(np.argmin(window)) if len(window) else i_min
        suggested = float(min(lrs[i_steep], lrs[i_min] / 10) if i_min > lo else lrs[i_steep])
        steepest, min_lr = float(lrs[i_steep]), float(lrs[i_min])
        console.log(f"learning-rate range test: {len(self.lrs)} steps, lowest loss at {min_lr:.3g}")
        return {"lrs": self.lrs, "losses": self.losses, "smoothed": self.smoothed, "suggested_lr": suggested,
                "steepest_lr": steepest, "min_loss_lr": min_lr, "steps_run": len(self.lrs)}


def plot_lr(result: dict, path) -> None:
    from nncli.core.figures import pyplot, save_figure

    fig, ax = pyplot().subplots(figsize=(6, 3.5))
    ax.plot(result["lrs"], result["losses"], alpha=0.3, label="loss")
    ax.plot(result["lrs"], result["smoothed"], label="smoothed")
    ax.axvline(result["suggested_lr"], color="red", linestyle="--", label=f"suggested {result['suggested_lr']:.2g}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    lo, hi = min(result["smoothed"]), max(result["smoothed"][: max(1, len(result["smoothed"]) // 2)])
    ax.set_ylim(lo * 0.9, max(hi, lo) * 1.6)
    ax.legend()
    save_figure(fig, path, dpi=90)

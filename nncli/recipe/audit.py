"""The audit recipe: data-quality checks before training (nncli audit)."""

from __future__ import annotations

from typing import Literal, Union

from pydantic import Field, model_validator

from nncli.recipe.base import DataFiles, GatesSpec, Strict


class AuditDataSpec(DataFiles):
    train: str | None = Field(None, description="the data to audit (DATA): a file or hub dataset id; --fix cleans a copy of it")
    validation: str | None = Field(None, description="optional validation file: audited too, and checked for overlap with train")
    test: str | None = Field(None, description="optional test file: audited too, and checked for overlap with train/validation")
    validation_split: str | None = Field(None, description="hub split name for validation")
    text_pair_column: str | None = None
    label_column: Union[str, list[str]] = "label"
    encoding: str = Field("utf-8", description="text encoding of local files")
    clean_text: bool = Field(True, description="unescape HTML entities, strip wrapping quotes, fold whitespace (as in finetune)")
    max_length: int = Field(128, ge=8, le=8192, description="token limit: longer texts are reported as truncated (with --model)")


class LabelIssueSpec(Strict):
    enabled: bool = True
    folds: int = Field(5, ge=2, le=20, description="k of the k-fold out-of-fold probabilities")


class DuplicateSpec(Strict):
    enabled: bool = True
    threshold: float | None = Field(None, gt=0, le=1, description="cosine similarity that counts as a near-duplicate; "
                                                                  "default 0.95 with --model embeddings, 0.9 for TF-IDF")


class OutlierSpec(Strict):
    enabled: bool = True
    k: int = Field(10, ge=1, le=100, description="neighbours for the density score")


class FixSpec(Strict):
    path: str | None = Field(None, description="write a copy of the data with flagged rows removed or relabelled here")
    policy: Literal["remove", "relabel", "mark"] = Field(
        "remove", description="remove: drop label issues, duplicates, train rows also in validation/test, label conflicts, "
                              "empty, unlabelled and boilerplate rows; relabel: the same, but label issues get the suggested "
                              "label; mark: keep every row and add audit_kinds / audit_suggested_label columns")


class AuditRecipe(Strict):
    command: Literal["audit"] = "audit"
    name: str | None = None
    output: str | None = Field(None, description="directory for report.json, audit.jsonl, README.md and audit.html")
    model: str | None = Field(None, description="encoder for embeddings (hub id, model or run directory); default: TF-IDF only")
    trust_remote_code: bool = False
    allow_pickle: bool = False
    data: AuditDataSpec = AuditDataSpec()
    label_issues: LabelIssueSpec = LabelIssueSpec()
    duplicates: DuplicateSpec = DuplicateSpec()
    outliers: OutlierSpec = OutlierSpec()
    fix: FixSpec = FixSpec()
    batch_size: int = Field(64, ge=1)
    threads: int | None = Field(None, ge=1)
    seed: int = 0
    gates: GatesSpec = GatesSpec()

    @model_validator(mode="after")
    def _check(self):
        if self.data.train is None:
            raise ValueError("data.train: required (the data file to audit); pass it as DATA")
        return self

#!/usr/bin/env bash
# Plain-shell CI job: run the pipeline, always write a Markdown summary, fail the build on any gate.
# Exit codes (nncli's contract): 0 ok, 2 usage, 3 bad input, 4 environment, 5 a gate failed, 130 interrupted.
set -uo pipefail

# Hub models: online unless the caller says otherwise. Cache ~/.cache/huggingface between CI runs and set
# HF_HUB_OFFLINE=1 once it holds your models (github-actions.yml does so on a cache hit); forcing it with an
# empty cache makes a hub model fail (exit 3) on the first run. The demo model also comes bundled (nncli-toolkit[demo]).
if [ -n "${HF_HUB_OFFLINE:-}" ]; then export HF_HUB_OFFLINE; fi
export NNCLI_CACHE_DIR="${NNCLI_CACHE_DIR:-$HOME/.cache/nncli}"   # cache this directory between CI runs

PIPELINE="${1:-examples/ci/pipeline.yaml}"
OUT="${2:-runs/ci}"

nncli run "$PIPELINE" "output=$OUT" --json > pipeline.json
status=$?

# the report is written whatever happened, so publish it before deciding
nncli report "$OUT" -o summary.md || true
cat summary.md

case $status in
  0) echo "pipeline passed" ;;
  5) echo "pipeline stopped: a gate failed (see $OUT/report.md)" >&2 ;;
  130) echo "pipeline interrupted; re-running resumes it" >&2 ;;
  *) echo "pipeline error (exit $status): see pipeline.json" >&2 ;;
esac
exit $status

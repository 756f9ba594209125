#!/usr/bin/env bash
# effkit's counts gate: fail a change that grows a model's MACs or parameters against a committed baseline.
# Runs on any CPU machine (the model is traced on the meta device: no memory, no arithmetic).
#
#   gate.sh MODEL_SPEC BASELINE_JSON [RULES]
#
# MODEL_SPEC    what effkit traces, e.g. my_model.py:build or a zoo name
# BASELINE_JSON the counts to hold the model to, written once with
#               effkit trace MODEL_SPEC --device meta --json BASELINE_JSON   (commit it; rewrite it when a growth is intended)
# RULES         effkit diff --fail-on rules (default: macs>0%,params>0%)
#
# Exit codes: 0 the rules hold, 1 a rule is violated (one line per rule), 2 bad input.
set -euo pipefail
model="${1:?usage: gate.sh MODEL_SPEC BASELINE_JSON [RULES]}"
baseline="${2:?usage: gate.sh MODEL_SPEC BASELINE_JSON [RULES]}"
rules="${3:-macs>0%,params>0%}"
if [ ! -f "$baseline" ]; then
  echo "error: no baseline $baseline; write it with: effkit trace $model --device meta --json $baseline" >&2
  exit 2
fi
effkit diff "$baseline" "$model" --device meta --format table --fail-on "$rules"

#!/usr/bin/env bash
# Crash test for exact resume: run a real `charlm train`, kill it with SIGKILL at random
# moments (several times in a row, resuming it after each kill), and check that the
# final weights, optimizer slots and random state are bit-identical to those of one
# uninterrupted run, and that the per-step losses in both runs' steps.csv match.
#
# Usage: scripts/crash_resume.sh [KILLS [WORKDIR]]      (defaults: 5 kills, a temporary directory)
# Environment: SEED (default 5) for the kill times, PYTHON (default python3).
# Exit status: 0 when the runs match, 1 when they differ.
set -euo pipefail

KILLS=${1:-5}
WORK=${2:-$(mktemp -d -t charlm-crash-XXXXXX)}
PYTHON=${PYTHON:-python3}
RANDOM=${SEED:-5}
cd "$(dirname "$0")/.."
mkdir -p "$WORK"

CORPUS="$WORK/corpus.txt"
head -c 30000 corpora/agreement/data/train.txt > "$CORPUS"
# About 100 windows per epoch, two epochs; dropout on, so the random state matters;
# a checkpoint every 2 steps, so that many kills land in the middle of a save.
FLAGS=(--cell lstm --layers 2 --hidden 32 --embedding 16 --dropout 0.1 --batch-size 8 --bptt 32
       --epochs 2 --lr 0.01 --val-fraction 0.1 --seed 5 --checkpoint-every 2 --keep 2 --quiet)

now() { date +%s.%N; }
newest_checkpoint() { ls "$WORK/crashed/checkpoints" 2> /dev/null | grep '^ckpt-' | tail -n 1 || true; }

echo "reference: one uninterrupted run"
rm -rf "$WORK/reference" "$WORK/crashed"
start=$(now)
$PYTHON -m charlm train "$CORPUS" --out "$WORK/reference" "${FLAGS[@]}" > /dev/null
span=$($PYTHON -c "print(round($(now) - $start, 2))")
echo "  took ${span}s; each kill lands 0 to ${span}/3 s after a started run writes its first checkpoint"

kills=0
mid_save=0
while true; do
    if [[ -f "$WORK/crashed/config.json" ]]; then
        command=($PYTHON -m charlm train --resume "$WORK/crashed" --quiet)
    else  # killed before the run wrote anything: start it again
        rm -rf "$WORK/crashed"
        command=($PYTHON -m charlm train "$CORPUS" --out "$WORK/crashed" "${FLAGS[@]}")
    fi
    if (( kills >= KILLS )); then
        echo "final: ${command[*]:1}"
        "${command[@]}" > /dev/null
        break
    fi
    before=$(newest_checkpoint)
    "${command[@]}" > /dev/null 2>&1 &
    pid=$!
    # Let it start training (a new checkpoint appears), then kill it at a random moment.
    while kill -0 "$pid" 2> /dev/null && [[ "$(newest_checkpoint)" == "$before" ]]; do sleep 0.05; done
    delay=$($PYTHON -c "print(round($span * ($RANDOM % 101) / 300, 2))")
    sleep "$delay"
    if ! kill -0 "$pid" 2> /dev/null; then  # it ended on its own before the kill
        if wait "$pid"; then
            echo "  the run finished before its kill"
            break
        fi
        echo "FAILED: ${command[*]:1} exited with an error (run it by hand to see it)"
        exit 1
    fi
    kill -KILL "$pid"
    wait "$pid" 2> /dev/null || true
    kills=$((kills + 1))
    newest=$(newest_checkpoint)
    partial=""
    if ls -a "$WORK/crashed/checkpoints" 2> /dev/null | grep -q '^\.partial-'; then
        partial=" (in the middle of a save: a .partial directory is left)"
        mid_save=$((mid_save + 1))
    fi
    echo "  kill $kills: SIGKILL ${delay}s after its first checkpoint; newest checkpoint: ${newest:-none}$partial"
done

echo "compare (${kills} kills, ${mid_save} of them during a save):"
$PYTHON - "$WORK/reference" "$WORK/crashed" <<'EOF'
import csv
import sys

import numpy as np

from charlm.training.checkpoint import list_checkpoints, read_arrays, read_state

reference, crashed = sys.argv[1:]
a, b = (list_checkpoints(run)[-1] for run in (reference, crashed))
steps = [read_state(p)["position"]["step"] for p in (a, b)]
wa, wb = read_arrays(a), read_arrays(b)
different = [k for k in wa if k not in wb or not np.array_equal(wa[k], wb[k])]


def losses(run):  # the last line for each step wins: a resumed run repeats the steps after its checkpoint
    with open(f"{run}/steps.csv", encoding="utf-8") as f:
        return {row["step"]: row["loss"] for row in csv.DictReader(f) if row.get("loss")}


la, lb = losses(reference), losses(crashed)
loss_diffs = [s for s in lb if la.get(s) != lb[s]]
# steps.csv is buffered (charlm.training.observers flushes it every 100 steps), so a SIGKILL loses the
# lines of steps a later checkpoint covers; the steps logged are compared.
print(f"  final step: {steps[0]} vs {steps[1]}; tensors: {len(wa)}, different: {len(different)}; "
      f"per-step losses logged by both: {len(lb)} of {len(la)}, different: {len(loss_diffs)}")
if steps[0] == steps[1] and not different and not loss_diffs:
    print("MATCH: the killed-and-resumed run ended with bit-identical weights, optimizer and random state")
    sys.exit(0)
print(f"DIFFER: {different[:5]} {loss_diffs[:5]}")
sys.exit(1)
EOF

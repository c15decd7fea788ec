#!/usr/bin/env bash
# Retrain the student as distill.DEFAULT now says and run every check its ship gate reads, in order:
#
#   bash benchmarks/ship_student.sh TAG      # e.g. map_ensemble, after DEFAULT changed as its rule says
#
# The committed models (git HEAD) are the previous ones, unpacked to $PREVIOUS (default
# /tmp/efiqa_previous_TAG); models/ must be unchanged from HEAD when it starts. The candidate replaces
# models/student, models/default and its FP16 / INT8 variants; its held-out runs are written as
# accuracy_TAG.* and real_photos_TAG.*; the ship gate of results/local_defects_rule.md writes
# local_defects_ship_TAG.md. If the gate fails: keep its results, restore the models and the
# shipped student's untagged results with
#   git checkout -- models benchmarks/results/{precision_fidelity,engine_builds}.* benchmarks/results/local_defects_construction.json
# Time on two cores: the training (a warm cache: ~17 min for one map head, ~41 min for three; an
# empty one adds ~70 min of labels, region maps and features), then ~30 min of checks.
set -euo pipefail
tag=${1:?usage: ship_student.sh TAG}
previous=${PREVIOUS:-/tmp/efiqa_previous_$tag}
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
results=benchmarks/results

step() { echo "== $(date -u +%H:%M:%S) $*" >&2; }

git diff --quiet HEAD -- models || { echo "models/ differs from HEAD: commit or restore it first" >&2; exit 2; }
rm -rf "$previous" && mkdir -p "$previous"
git archive HEAD models/student models/default | tar -x -C "$previous" --strip-components=1

step "train";          efiqa train student --out models/student --keep-score-head "$previous/student"
if cmp -s models/student/adapter.json "$previous/student/adapter.json"; then
  echo "the candidate's adapter.json is the shipped one's: change distill.DEFAULT as the rule says first" >&2; exit 2
fi
step "export";         efiqa export --adapter models/student --out models/default
step "construction";   python benchmarks/local_defects.py --construction models/student --shipped "$previous/student"
cp "$results/local_defects_construction.json" "$results/local_defects_construction_$tag.json"
python - "$results/local_defects_construction_$tag.json" <<'EOF' || { echo "the score head changed: not this rule's candidate" >&2; exit 1; }
import json, sys
sys.exit(0 if json.load(open(sys.argv[1]))["identical"] else 1)
EOF
step "accuracy";       python benchmarks/accuracy.py --previous "$previous/default" --tag "$tag"
step "real photos";    python benchmarks/real_photos.py --tag "$tag"
step "precision";      python benchmarks/precision_fidelity.py --write-bundles
# a variant that failed its gate is not written, and engine_builds refuses the stale one: clause 9a then fails
step "engines";        python benchmarks/engine_builds.py || echo "engine builds failed (clause 9a)" >&2
step "ship gate";      python benchmarks/local_defects.py --ship "$tag" --previous "$previous/default"

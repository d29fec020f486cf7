#!/usr/bin/env bash
# Main job on the embedded default (no server, no GPU): ingest real documents, ask in French.
# Uses ../shared/data when present, else the project's own user guides (docs/), or the paths
# given as arguments: scripts/demo.sh [PATH...] [-- "question"]
set -euo pipefail
cd "$(dirname "$0")/.."
export DO_NOT_TRACK=1 HF_HUB_OFFLINE=1
export DOCFACTORY_DATA_DIR="${DOCFACTORY_DATA_DIR:-$PWD/.docfactory/demo}"
paths=(); question=""
while [ $# -gt 0 ]; do
  if [ "$1" = "--" ]; then shift; question="$*"; break; fi
  paths+=("$1"); shift
done
if [ ${#paths[@]} -eq 0 ]; then
  if [ -d ../shared/data/travail-docs ]; then
    paths=(../shared/data/travail-docs/docx ../shared/data/travail-docs/pdf/reunion-cse-synthese.pdf
           ../shared/data/travail-docs/pdf/reunion-cse-visio.pdf)
    question=${question:-"Quelles sont les conditions pour réunir le CSE en visioconférence ?"}
  else
    paths=(docs)
    question=${question:-"Comment ingérer une archive de documents depuis MinIO ?"}
  fi
fi
question=${question:-"De quoi parlent ces documents ?"}
echo "== docfactory ingest ${paths[*]}"
.venv/bin/docfactory ingest "${paths[@]}" --collection demo
echo
echo "== docfactory ask \"$question\""
.venv/bin/docfactory ask "$question" --collection demo --no-feedback

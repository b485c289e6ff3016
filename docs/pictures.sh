#!/usr/bin/env bash
# Redraws the pictures shown in README.md and docs/lecture.md (needs Graphviz's `dot` and the plot extra).
# `graphdef draw` picks the direction from the graph's depth and width, so no layout options are needed here.
set -euo pipefail
cd "$(dirname "$0")/.."
graphdef draw models/lecture.yaml --at a=3 --at b=5 --of e -o docs/images/lecture.png
graphdef draw models/lecture_network.yaml --at x1=1 --at x2=0.5 --at y1=1 --at y2=0 --of E \
  -o docs/images/lecture_network.png
run=$(mktemp -d)
graphdef train models/spirals.yaml -o "$run/spirals"
graphdef plot "$run/spirals"  # the same curves.png training wrote: the model's name, the best epoch marked
cp "$run/spirals/curves.png" docs/images/spirals_curves.png
rm -r "$run"

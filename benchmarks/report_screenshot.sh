#!/usr/bin/env bash
# Screenshots of `mmcore report` at 63 conditions (six modalities, every non-empty subset), taken
# with headless Chromium at two common widths, to look at the page as a reader does.
# Usage: benchmarks/report_screenshot.sh [OUT_DIR] [RUN_DIR]   (needs chromium: apt-get install -y chromium)
# With RUN_DIR, the report of that run is taken instead of training a new one.
set -euo pipefail
# checked before training: the screenshot loop silences chromium's stderr, which hid "command not found"
need() {  # need TOOL HINT: one line naming what is missing, exit 1
  command -v "$1" >/dev/null || { echo "report_screenshot.sh: '$1' is not on PATH ($2)" >&2; exit 1; }
}
need chromium "install it: apt-get install -y chromium"
need mmcore "activate the venv that has mmcore installed"
out="${1:-docs/report_example}"
work="$(mktemp -d)"
mkdir -p "$out"
run="${2:-}"
if [ -z "$run" ]; then
  mmcore run recipes/quickstart.yaml dataset='{type: mmcore.synthetic, modalities: 6, samples: 600, dim: 8}' \
    'missing.train.rates={m0: 0.1, m1: 0.1, m2: 0.5, m3: 0.7, m4: 0.3, m5: 0.3}' \
    train.epochs=2 device=cpu output="$work" --no-progress >/dev/null
  run="$(ls -d "$work"/*/* | head -1)"
fi
mmcore report "$run" -o "$work/report.html" >/dev/null
cp "$work/report.html" "$out/quickstart.html"
height=16000  # the whole page: 63 conditions make a long one
for width in 1280 800; do
  chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size="$width,$height" \
    --screenshot="$out/report-$width.png" "file://$work/report.html" 2>/dev/null
done
echo "screenshots in $out (report: $work/report.html)"

#!/usr/bin/env bash
# Opens a bpuq_debug report (index.html) in headless Chromium and checks that it loads without
# console errors, that every inline SVG reaches the DOM, and that the screenshot shows the plots
# (pixels in the chart colours). Usage: tools/check_debug_report.sh debug_result/index.html [shot.png]
set -euo pipefail
index=$(realpath "$1")
shot=${2:-$(dirname "$index")/screenshot.png}
need=()
command -v chromium >/dev/null || need+=(chromium)
/usr/bin/python3 -c "import PIL" 2>/dev/null || need+=(python3-pil)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = "0" ] || SUDO=sudo
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking
       --disable-component-update --disable-sync --user-data-dir="$profile" --enable-logging=stderr --v=0)
dom=$(chromium "${flags[@]}" --dump-dom "file://$index" 2>"$profile/log.txt")
if grep -E "Uncaught|CONSOLE.*(error|Error)|Failed to load|ERR_FILE_NOT_FOUND" "$profile/log.txt"; then
  echo "check_debug_report: the page logged errors" >&2
  exit 1
fi
in_file=$(grep -o "<svg" "$index" | wc -l)
in_dom=$(grep -o "<svg" <<<"$dom" | wc -l)
echo "inline SVG charts: $in_file in the file, $in_dom in the DOM"
[ "$in_file" -gt 0 ] && [ "$in_file" = "$in_dom" ] || { echo "check_debug_report: SVG charts missing from the DOM" >&2; exit 1; }
chromium "${flags[@]}" --window-size=1100,3000 --screenshot="$shot" "file://$index" 2>/dev/null >/dev/null
/usr/bin/python3 - "$shot" <<'EOF'
import sys
from PIL import Image
img = Image.open(sys.argv[1]).convert("RGB")
colours = {"blue": (0x1f, 0x77, 0xb4), "red": (0xd6, 0x27, 0x28)}
counts = {k: 0 for k in colours}
for px in img.getdata():
    for k, c in colours.items():
        if all(abs(a - b) <= 24 for a, b in zip(px, c)):
            counts[k] += 1
print(f"screenshot {sys.argv[1]} {img.size[0]}x{img.size[1]}: chart pixels {counts}")
if min(counts.values()) < 200:
    sys.exit("check_debug_report: the screenshot shows no plotted lines")
EOF
echo "check_debug_report: OK"

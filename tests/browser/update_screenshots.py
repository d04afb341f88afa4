"""Copy the representative widget screenshots from the last browser test run
(test-artifacts/widget/) to docs/screenshots/widget-*.png, reduced to 256 colours so the
committed files stay small.

    .venv/bin/python -m pytest tests/test_widget_browser.py -m "not slow"
    .venv/bin/python tests/browser/update_screenshots.py
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "test-artifacts" / "widget"
DST = REPO / "docs" / "screenshots"

# artifact name → docs name
PICK = {
    "02-open-empty": "widget-open",
    "03-streaming": "widget-streaming",
    "04-answer": "widget-answer",
    "05-citation": "widget-citation",
    "06-feedback": "widget-feedback",
    "07-follow-up": "widget-follow-up",
    "08-error-429": "widget-error-429",
    "09-error-503": "widget-error-503",
    "10-error-unreachable": "widget-error-unreachable",
    "11-error-broken-stream": "widget-error-broken-stream",
    "12-refusal": "widget-refusal",
    "13-hostile-page-css": "widget-isolation",
    "14-phone-320": "widget-phone-320",
    "14-zoom-200": "widget-zoom-200",
    "15-real-model": "widget-real-model",
    "16-viewer": "viewer-passage",
    "17-viewer-pdf": "viewer-pdf-table",
}


def main() -> int:
    DST.mkdir(parents=True, exist_ok=True)
    missing = []
    for src_name, dst_name in PICK.items():
        src = SRC / f"{src_name}.png"
        if not src.exists():
            missing.append(src.name)
            continue
        img = Image.open(src).convert("RGB")
        if img.width > 1200:  # high-DPI shots (phone, zoom): half size is enough for the docs
            img = img.resize((img.width // 2, img.height // 2), Image.LANCZOS)
        img.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
            DST / f"{dst_name}.png", optimize=True
        )
        print(f"{DST / dst_name}.png  {(DST / f'{dst_name}.png').stat().st_size // 1024} kB")
    if missing:
        print("not found (run the browser tests first):", ", ".join(missing), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What facetell's HTML pages share (the evaluation report, the review page of a predict run,
the REST API's heat maps): a base style and pictures inlined as data URIs, so that each page is
one file that reads offline."""

from __future__ import annotations

import base64
import io

from PIL import Image

# Each page holds pictures and text only: with this no script runs in it, whatever a file name
# or a clue smuggled in past the escaping, and it loads nothing from anywhere.
NO_SCRIPTS = (
    '<meta http-equiv="Content-Security-Policy" '
    "content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">"
)

# The pages' colours, as CSS variables: each text colour at least 4.5:1 against its background,
# as WCAG AA asks (the amber of "uncertain" most of all). The verdict colours also box the faces
# drawn into a page's pictures, which are the same in either theme.
LIGHT = {
    "ink": "#1d2330", "bg": "#f6f7f9", "surface": "#fff", "line": "#dde1e7", "head": "#eef1f5",
    "muted": "#4a5365", "note": "#fff7e6", "note-edge": "#f5a524", "link": "#1f4fd1",
    "ai": "#c4320a", "uncertain": "#a15c00", "real": "#067647", "bad": "#b42318",
    "good": "#067647",
}  # fmt: skip
# The system's dark theme, as the web page follows it: lighter inks on dark cards
DARK = {
    "ink": "#e7e9ee", "bg": "#12151a", "surface": "#1c2028", "line": "#394150", "head": "#262b35",
    "muted": "#a5adbb", "note": "#33290f", "note-edge": "#e5a443", "link": "#8ab4ff",
    "ai": "#ff7a7a", "uncertain": "#e5a443", "real": "#4cc38a", "bad": "#ff7a7a",
    "good": "#4cc38a",
}  # fmt: skip


def _variables(palette: dict[str, str]) -> str:
    return ";".join(f"--{name}:{colour}" for name, colour in palette.items())


# Printed, a page is dark ink on white paper whatever the screen's theme.
BASE_STYLE = f"""
:root{{color-scheme:light dark;{_variables(LIGHT)}}}
@media (prefers-color-scheme:dark){{:root{{{_variables(DARK)}}}}}
@media print{{:root{{color-scheme:light;{_variables(LIGHT)}}}}}
body{{font:15px/1.5 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:var(--ink);
background:var(--bg)}}main{{max-width:1100px;margin:auto;padding:24px}}h1{{margin:0 0 4px}}
h2{{border-bottom:2px solid var(--line);padding-bottom:4px}}.lead{{color:var(--muted)}}
a{{color:var(--link)}}table{{border-collapse:collapse;background:var(--surface);margin:12px 0;
width:100%}}th,td{{border:1px solid var(--line);padding:6px 10px;text-align:left}}
td.num{{text-align:right;font-variant-numeric:tabular-nums}}th{{background:var(--head)}}
figure{{margin:0}}figcaption{{font-size:13px}}.note{{background:var(--note);
border-left:4px solid var(--note-edge);padding:8px 12px}}.scroll{{overflow-x:auto}}
@media print{{article,figure,tr{{break-inside:avoid}}h2,h3{{break-after:avoid}}
.scroll{{overflow:visible}}table{{font-size:11px}}th,td{{padding:3px 5px}}}}
"""


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def image_data_uri(image: Image.Image, fmt: str = "JPEG", **options: int) -> str:
    """The image encoded as `fmt` (Pillow's name, with its save options) in a data URI."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return data_uri(buffer.getvalue(), f"image/{fmt.lower()}")

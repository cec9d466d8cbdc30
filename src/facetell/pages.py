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

BASE_STYLE = """
body{font:15px/1.5 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2330;
background:#f6f7f9}main{max-width:1100px;margin:auto;padding:24px}h1{margin:0 0 4px}
h2{border-bottom:2px solid #dde1e7;padding-bottom:4px}.lead{color:#4a5365}
table{border-collapse:collapse;background:#fff;margin:12px 0;width:100%}th,td{border:1px solid
#dde1e7;padding:6px 10px;text-align:left}td.num{text-align:right;
font-variant-numeric:tabular-nums}th{background:#eef1f5}figure{margin:0}
figcaption{font-size:13px}.note{background:#fff7e6;border-left:4px solid #f5a524;
padding:8px 12px}.scroll{overflow-x:auto}
@media print{article,figure,tr{break-inside:avoid}h2,h3{break-after:avoid}.scroll{overflow:visible}
table{font-size:11px}th,td{padding:3px 5px}}
"""


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def image_data_uri(image: Image.Image, fmt: str = "JPEG", **options: int) -> str:
    """The image encoded as `fmt` (Pillow's name, with its save options) in a data URI."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return data_uri(buffer.getvalue(), f"image/{fmt.lower()}")

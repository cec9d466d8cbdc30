"""The README's Python example runs as written, on real files, with the shipped model."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from PIL import Image

from conftest import astronaut, cat

README = Path(__file__).parents[1] / "README.md"
# what the example leaves to the reader: the photos it names, and a blob of bytes
PRELUDE = """\
from pathlib import Path
paths = ["photo.jpg", "photos/cat.png"]
blob = Path("photo.jpg").read_bytes()
"""


def test_the_python_example_runs_and_writes_what_it_says(tmp_path):
    [example] = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    astronaut().save(tmp_path / "photo.jpg", quality=90)
    (tmp_path / "photos").mkdir()
    cat().save(tmp_path / "photos" / "cat.png")
    epilogue = "\nprint('batch', [r.path for r in detector.predict_batch('photos/')])\n"
    run = subprocess.run([sys.executable, "-c", PRELUDE + example + epilogue], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr
    printed = run.stdout.splitlines()
    assert printed[0].startswith(("real ", "uncertain ", "ai "))  # label, P(ai), boxes
    assert printed[-1] == "batch ['photos/cat.png']"
    with Image.open(tmp_path / "photo-heatmap.jpg") as heat_map:
        assert heat_map.size == astronaut().size
    page = (tmp_path / "review.html").read_text()
    assert "photo.jpg" in page and "cat.png" in page

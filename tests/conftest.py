"""Fixtures that make real image files on disk; nothing here is copied from the shared data."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED_FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces"


@pytest.fixture(autouse=True)
def default_width(monkeypatch: pytest.MonkeyPatch) -> None:
    """pytest-xdist's workers export COLUMNS=80, and in a plain pytest run a C library sets it
    in the process environment behind os.environ's back, which facetell's piped output follows
    as a user's shell setting; the commands tests run print at their own default width unless
    a test says. Setting it first makes deleting it reach the C environment too."""
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.delenv("COLUMNS")


def smooth_photo(seed: int, size: int = 96) -> Image.Image:
    """A photo-like RGB image: structure at several scales plus a little sensor noise."""
    rng = np.random.default_rng(seed)
    pixels = np.zeros((size, size, 3), dtype=np.float32)
    for cells, weight in ((4, 0.5), (12, 0.3), (32, 0.2)):
        layer = rng.uniform(0, 255, size=(cells, cells, 3)).astype(np.uint8)
        resized = Image.fromarray(layer).resize((size, size), Image.Resampling.BICUBIC)
        pixels += weight * np.asarray(resized, dtype=np.float32)
    pixels += rng.normal(0, 3, size=(size, size, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def heic(image: Image.Image, tmp_path: Path, quality: int = 80, **jpeg_options: object) -> bytes:
    """`image` as an HEIC file, encoded by Debian's `heif-enc` (pi-heif only decodes).

    The image goes in as a JPEG so that `jpeg_options` (say, `exif=`) reach the HEIC's metadata.
    """
    import subprocess

    source, target = tmp_path / "heic-source.jpg", tmp_path / "encoded.heic"
    image.save(source, quality=95, **jpeg_options)
    subprocess.run(
        ["heif-enc", "-q", str(quality), "-o", str(target), str(source)],
        check=True,
        capture_output=True,
    )
    return target.read_bytes()


def display_p3_profile() -> bytes:
    """An ICC v2 display profile with Display P3's primaries and sRGB's tone curve, the colour
    space iPhones save photos in (no ICC file ships in any package installed here)."""

    def fixed(*values: float) -> bytes:
        return b"".join(struct.pack(">i", round(v * 65536)) for v in values)

    def xyz(x: float, y: float, z: float) -> bytes:
        return b"XYZ " + bytes(4) + fixed(x, y, z)

    name = b"Display P3 (facetell tests)\0"
    description = b"desc" + bytes(4) + struct.pack(">I", len(name)) + name + bytes(78)
    level = np.linspace(0.0, 1.0, 1024)
    linear = np.where(level <= 0.04045, level / 12.92, ((level + 0.055) / 1.055) ** 2.4)
    curve = b"curv" + bytes(4) + struct.pack(">I", 1024)
    curve += np.round(linear * 65535).astype(">u2").tobytes()
    d50 = (0.9642, 1.0, 0.8249)
    tags = {
        b"desc": description,
        b"cprt": b"text" + bytes(4) + b"public domain\0",
        b"wtpt": xyz(*d50),
        b"rXYZ": xyz(0.515121, 0.241196, -0.001053),  # P3 primaries, adapted to D50
        b"gXYZ": xyz(0.291977, 0.692245, 0.041885),
        b"bXYZ": xyz(0.157104, 0.066574, 0.784073),
        b"rTRC": curve,
        b"gTRC": curve,
        b"bTRC": curve,
    }
    offset = 128 + 4 + 12 * len(tags)
    table, body = struct.pack(">I", len(tags)), b""
    for signature, data in tags.items():
        data += bytes(-len(data) % 4)
        table += signature + struct.pack(">II", offset + len(body), len(data))
        body += data
    header = struct.pack(">I", offset + len(body)) + bytes(4) + bytes([2, 0x10, 0, 0])
    header += b"mntrRGB XYZ " + bytes(12) + b"acsp" + bytes(28) + fixed(*d50) + bytes(48)
    return header + table + body


def in_display_p3(image: Image.Image) -> Image.Image:
    """The pixel values a camera saving in Display P3 would store for these sRGB colours."""
    from PIL import ImageCms

    p3 = ImageCms.ImageCmsProfile(io.BytesIO(display_p3_profile()))
    stored = ImageCms.profileToProfile(image, ImageCms.createProfile("sRGB"), p3, outputMode="RGB")
    stored.info.pop("icc_profile", None)  # values only: PNG would save the profile unasked
    return stored


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


@pytest.fixture
def photo() -> Image.Image:
    return smooth_photo(0)


@pytest.fixture
def image_zoo(tmp_path: Path, photo: Image.Image) -> dict[str, Path]:
    """One small file per kind of input the decoder must handle, good and bad."""
    files: dict[str, bytes] = {
        "photo.jpg": encode(photo, "JPEG", quality=90),
        "photo.png": encode(photo, "PNG"),
        "photo.webp": encode(photo, "WEBP", quality=80),
        "photo.bmp": encode(photo, "BMP"),
        "photo.tiff": encode(photo, "TIFF"),
        "photo.heic": heic(photo, tmp_path, quality=90),
        "photo.avif": encode(photo, "AVIF", quality=90),
        "cmyk.jpg": encode(photo.convert("CMYK"), "JPEG", quality=90),
        "gray16.png": encode(Image.fromarray(np.full((64, 64), 32896, dtype=np.uint16)), "PNG"),
        "palette_transparent.png": encode(Image.new("P", (64, 64), 0), "PNG", transparency=0),
        "rgba.png": encode(Image.new("RGBA", (64, 64), (255, 0, 0, 0)), "PNG"),
        "truncated.jpg": encode(photo, "JPEG", quality=90)[:800],
        "empty.jpg": b"",
        "notes.jpg": b"these are meeting notes, not a picture\n" * 20,
    }
    frames = [Image.new("RGB", (64, 64), c) for c in ((200, 0, 0), (0, 200, 0), (0, 0, 200))]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:], duration=50)
    files["animated.gif"] = gif.getvalue()
    animated_webp = io.BytesIO()
    frames[0].save(animated_webp, format="WEBP", save_all=True, append_images=frames[1:])
    files["animated.webp"] = animated_webp.getvalue()
    # A 96x64 landscape stored sideways: orientation 6 says "rotate 90 degrees clockwise".
    stored = Image.new("RGB", (64, 96), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 64, 20))  # red band at the stored top
    exif = Image.Exif()
    exif[0x0112] = 6
    files["rotated.jpg"] = encode(stored, "JPEG", quality=95, exif=exif.tobytes())
    paths = {}
    for name, data in files.items():
        path = tmp_path / name
        path.write_bytes(data)
        paths[name] = path
    return paths


@pytest.fixture
def shared_faces() -> Path:
    if not (SHARED_FACES / "manifest.csv").is_file():
        pytest.skip("the shared face data (../shared/data/faces) is not beside this checkout")
    return SHARED_FACES


def gan_faces(n: int, seed: int = 0, size: int = 64) -> list[Image.Image]:
    """AI faces made on the spot by the DCGAN that `gan-face-generate` ships (MIT)."""
    import importlib.resources

    import torch
    from gan_face_generate.models import Generator

    generator = Generator(1, 3, 100, 64)
    weights = importlib.resources.files("gan_face_generate") / "weights.tar"
    state = torch.load(str(weights), weights_only=True, map_location="cpu")["netG_state_dict"]
    generator.load_state_dict(state)
    generator.eval()
    torch.manual_seed(seed)
    with torch.no_grad():
        fakes = generator(torch.randn(n, 100, 1, 1))
    arrays = ((fakes.permute(0, 2, 3, 1).numpy() + 1) * 127.5).clip(0, 255).astype(np.uint8)
    images = [Image.fromarray(a) for a in arrays]
    return (
        [im.resize((size, size), Image.Resampling.BICUBIC) for im in images]
        if size != 64
        else images
    )


def astronaut() -> Image.Image:
    """A real photograph with one face (scikit-image's sample data, public domain, NASA)."""
    from skimage import data

    return Image.fromarray(data.astronaut())


# The astronaut's face box in `astronaut()`, as the face detector finds it (tests/test_faces.py).
ASTRONAUT_FACE = (177.0, 56.0, 95.0, 120.0)


def paste_astronaut(
    canvas: Image.Image, face_width: float, at: tuple[int, int]
) -> tuple[float, float, float, float]:
    """Paste the astronaut shrunk until her face is `face_width` px wide; her face box there."""
    x, y, w, h = ASTRONAUT_FACE
    scale = face_width / w
    canvas.paste(astronaut().resize((round(512 * scale),) * 2, Image.Resampling.LANCZOS), at)
    return (at[0] + x * scale, at[1] + y * scale, w * scale, h * scale)


def contact_sheet(
    count: int, columns: int = 4, portraits: list[Image.Image] | None = None
) -> Image.Image:
    """A contact sheet of `count` 160 x 176 px tiles, one face each: the astronaut's head, or
    `portraits` in turn."""
    tiles = [
        image.resize((160, 176), Image.Resampling.LANCZOS)
        for image in portraits or [astronaut().crop((140, 20, 320, 220))]
    ]
    rows = -(-count // columns)
    sheet = Image.new("RGB", (160 * columns, 176 * rows), "white")
    for index in range(count):
        sheet.paste(tiles[index % len(tiles)], (160 * (index % columns), 176 * (index // columns)))
    return sheet


def cat() -> Image.Image:
    """A photograph with no human face (scikit-image's `chelsea`, CC0)."""
    from skimage import data

    return Image.fromarray(data.chelsea())


def save_untrained_bundle(folder: Path, architecture: str, size: int) -> Path:
    """A real bundle on disk with seeded random weights and face crops of `size` px."""
    import torch

    from facetell.bundle import Bundle
    from facetell.faces import CropRecipe
    from facetell.models import create_model

    torch.manual_seed(0)
    bundle = Bundle(
        module=create_model(architecture),
        architecture=architecture,
        model_kwargs={},
        crop=CropRecipe(kind="face", size=size),
        name="test-untrained",
    )
    return bundle.save(folder)


@pytest.fixture(scope="session")
def untrained_bundle(tmp_path_factory) -> Path:
    """A random MobileNetV2 at 96 px: for the plumbing of every door, not for verdicts."""
    folder = tmp_path_factory.mktemp("bundle") / "untrained"
    return save_untrained_bundle(folder, "mobilenet_v2", 96)


def run_cli(
    *args: str, stdin: bytes | None = None, cwd: Path | None = None, **env: str
) -> subprocess.CompletedProcess:
    """`facetell ARGS` in a fresh interpreter, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "facetell", *args],
        input=stdin,
        capture_output=True,
        env={**os.environ, **env},
        cwd=cwd,
    )


# the planted training data: smooth 'photos' against up-sampled 'fakes', 60 of each
PLANTED_SIZE = 64


def upsampled_fake(seed: int) -> Image.Image:
    """What a generator's up-sampling leaves: 2x nearest-neighbour blocks and a period-2 ripple."""
    small = np.asarray(smooth_photo(seed, PLANTED_SIZE // 2), dtype=np.float32)
    pixels = small.repeat(2, axis=0).repeat(2, axis=1)
    ripple = np.indices((PLANTED_SIZE, PLANTED_SIZE)).sum(axis=0) % 2 * 16.0 - 8.0
    return Image.fromarray(np.clip(pixels + ripple[..., None], 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def planted_dataset(tmp_path_factory) -> Path:
    """real/ and ai/ folders of the planted data: a trace every family learns in seconds."""
    root = tmp_path_factory.mktemp("planted")
    (root / "real" / "camera").mkdir(parents=True)
    (root / "ai" / "upsampler").mkdir(parents=True)
    for i in range(60):
        smooth_photo(i, PLANTED_SIZE).save(root / "real" / "camera" / f"{i}.png")
        upsampled_fake(5000 + i).save(root / "ai" / "upsampler" / f"{i}.png")
    return root


def config_for(family: str, data: Path, cache: Path, **extra):
    """A training config for `family` on `data` that runs in seconds: small crops, no
    augmentation, few epochs; `extra` overrides any key."""
    from facetell.train.config import AugmentConfig, load_config

    phases = {
        "mobilenet_v2": [
            {"kind": "head", "epochs": 8, "lr": 0.01, "views": 1},
            {"kind": "finetune", "epochs": 2, "lr": 0.0003, "trainable_blocks": 3},
        ],
        "efficientnet_lite0": [
            {"kind": "head", "epochs": 8, "lr": 0.01, "views": 1},
            {"kind": "finetune", "epochs": 2, "lr": 0.0003, "trainable_blocks": 2},
        ],
        "npr": [{"kind": "full", "epochs": 4, "lr": 0.002}],
        "spectrum": [{"kind": "closed_form", "views": 1}],
        "mobilenet_v2_probe": [{"kind": "closed_form", "views": 1}],
    }[family]
    pretrained = family in ("mobilenet_v2", "mobilenet_v2_probe", "efficientnet_lite0")
    overrides = {
        "name": f"test-{family}",
        "model": family,
        "model_kwargs": {"pretrained": True} if pretrained else {},
        "crop": {"size": PLANTED_SIZE, "resize": pretrained},
        "augment": AugmentConfig.none().model_dump(),
        "data": {"paths": [str(data)], "fractions": [0.6, 0.2, 0.2]},
        "phases": phases,
        "batch_size": 16,
        "patience": 10,
        "workers": 0,
        "cache_dir": str(cache),
        **extra,
    }
    return load_config(None, [f"{k}={json.dumps(v)}" for k, v in overrides.items()])


def info_rows(bundle: Path | None = None) -> dict[str, str]:
    """`facetell info`'s table of a bundle (the shipped one by default) as {fact: value},
    printed wide enough that no value wraps."""
    done = run_cli("info", *([str(bundle)] if bundle else []), COLUMNS="400")
    assert done.returncode == 0, done.stderr.decode()
    lines = done.stdout.decode().splitlines()[1:]  # under the model's name
    return dict(re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in lines if line.strip())


# `facetell ARGS` in one interpreter that says at exit which heavy libraries it imported
TELLING_IMPORTS = """
import sys
from facetell.cli import app
try:
    app(sys.argv[1:], prog_name="facetell")
finally:
    heavy = ("torch", "sklearn", "scipy")
    print("imported:", *[name for name in heavy if name in sys.modules], file=sys.stderr)
"""


def run_cli_telling_imports(*args: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    """`facetell ARGS` as run_cli runs it (stderr as text, without its last line), and which of
    torch, scikit-learn and scipy it imported: a mistake should be answered before them."""
    run = subprocess.run(
        [sys.executable, "-c", TELLING_IMPORTS, *args], capture_output=True, text=True
    )
    *said, told = run.stderr.strip().splitlines()
    run.stderr = "\n".join(said)
    return run, set(told.split()[1:])


def start_cli(*args: str) -> subprocess.Popen:
    """`facetell ARGS` started as a terminal starts it, to be stopped with Ctrl-C (SIGINT): a
    background job, as CI may run the tests, would pass SIGINT on ignored. Its stderr is piped."""
    return subprocess.Popen(
        [sys.executable, "-m", "facetell", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def launch_chromium(playwright):
    """Debian's chromium, headless, with the flags this closed network needs."""
    return playwright.chromium.launch(
        executable_path="/usr/bin/chromium",
        args=[
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ],
    )


def computed_rgb(page, selector: str = "body", part: str = "backgroundColor") -> list[int]:
    """An element's colour as the browser draws it (the body's background by default)."""
    value = page.eval_on_selector(selector, f"e => getComputedStyle(e).{part}")
    return [int(number) for number in re.findall(r"\d+", value)[:3]]


def drop_from_desktop(page, selector: str, paths: list[Path], address: str = "") -> None:
    """Drop files and folders from disk on an element as a desktop drag does, through Chromium's
    own drag-and-drop (not a scripted DataTransfer, which cannot hold a folder); or, given an
    `address`, a picture dragged from another web page, which arrives as its address."""
    box = page.locator(selector).bounding_box()
    where = {"x": box["x"] + box["width"] / 2, "y": box["y"] + box["height"] / 2}
    link = [{"mimeType": "text/uri-list", "data": address}] if address else []
    data = {"items": link, "files": [str(path) for path in paths], "dragOperationsMask": 1}
    devtools = page.context.new_cdp_session(page)
    for kind in ("dragEnter", "dragOver", "drop"):
        devtools.send("Input.dispatchDragEvent", {"type": kind, **where, "data": data})
    devtools.detach()

"""Decoding and validation of images: the one place in facetell that opens image files.

Everything downstream sees upright 8-bit RGB pixels plus the facts about the file that
forensics and the bias audit need (format, JPEG quality, metadata), so no other module ever
has to trust a file extension or re-open a file.
"""

from __future__ import annotations

import codecs
import ctypes
import errno
import functools
import glob
import http.client
import io
import os
import re
import stat
import struct
import urllib.error
import urllib.parse
import urllib.request
import warnings
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple, TypeAlias

import numpy as np
import pi_heif
from PIL import (
    Image,
    ImageCms,
    ImageFile,
    ImageOps,
    JpegImagePlugin,
    PngImagePlugin,
    UnidentifiedImageError,
)

from facetell.errors import (
    BadImage,
    EmptyFile,
    ImageTooLarge,
    ImageTooSmall,
    NotAnImage,
    TruncatedImage,
)

if TYPE_CHECKING:  # torch is imported by whoever passes a tensor; predict never imports it
    import torch

ImageSource: TypeAlias = (
    "str | os.PathLike[str] | bytes | bytearray | memoryview | BinaryIO | Image.Image | "
    "np.ndarray | torch.Tensor"
)


class NamedImage(NamedTuple):
    """An image with the name its result and errors carry, for data with no path of its own
    (stdin's bytes) that goes through `Detector.stream` among named files."""

    data: ImageSource
    name: str


# facetell enforces its own pixel limit (DecodeLimits.max_pixels) with a clear error, so
# Pillow's global guard is switched off rather than left to raise a second, vaguer error.
Image.MAX_IMAGE_PIXELS = None
ImageFile.LOAD_TRUNCATED_IMAGES = False
# A PNG whose compressed text chunk inflates past Pillow's 1 MB (a generator's workflow, say)
# was refused whole as a "damaged image header", its picture and its clues lost. Each chunk
# stays capped, and Pillow's 64 MB cap on all of a file's text stays too.
PngImagePlugin.MAX_TEXT_CHUNK = 16 * 2**20
# What a file that trips either text cap is refused as, keyed by the setting Pillow's error names.
_TEXT_GUARDS = {
    "MAX_TEXT_CHUNK": f"a PNG text chunk inflates past {PngImagePlugin.MAX_TEXT_CHUNK // 2**20} MB",
    "MAX_TEXT_MEMORY": f"a PNG's text chunks inflate past "
    f"{PngImagePlugin.MAX_TEXT_MEMORY // 2**20} MB in all",
}
# HEIC/HEIF, the iPhone's photo format, through Pillow (decoding only; libheif applies the
# file's rotation and resets EXIF orientation to 1, so it is not applied twice). Pillow reads
# AVIF itself.
pi_heif.register_heif_opener()

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
    | {".heic", ".heif", ".avif"}
)
FORMATS_READ = "JPEG, PNG, WebP, HEIC, AVIF, BMP, TIFF or GIF"
# The ISO media file brands of HEIC/HEIF and AVIF images (bytes 8-12, after "ftyp").
_HEIF_BRANDS = frozenset(
    {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif", b"avis"}
)

# Camera RAW files: most are TIFF inside, so Pillow would open them and read only the small
# preview their first directory holds. Refused by name or content, never judged on a thumbnail.
RAW_SUFFIXES = frozenset(
    {".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".orf", ".rw2"}
    | {".raf", ".pef", ".srw", ".x3f", ".3fr", ".erf", ".kdc", ".dcr", ".mrw", ".iiq", ".rwl"}
)
_RAW_HINT = "export it as JPEG from your raw editor or camera app and judge that"

# Video files a folder given may hold beside its photos (named, with how to judge their frames)
VIDEO_SUFFIXES = frozenset(
    {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".wmv", ".flv", ".3gp", ".mpg", ".mpeg"}
    | {".mts", ".m2ts"}
)

_SUBSAMPLING_NAMES = {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}

# The IJG standard luminance quantisation table; libjpeg scales it by quality.
_IJG_LUMA = np.array(
    [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
     14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
     18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
     49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99],
    dtype=np.float64,
)  # fmt: skip


def _ijg_table_sums() -> np.ndarray:
    """Sum of the scaled luminance table for each quality 1..100 (order-independent)."""
    sums = []
    for quality in range(1, 101):
        scale = 5000 / quality if quality < 50 else 200 - 2 * quality
        table = np.clip(np.floor((_IJG_LUMA * scale + 50) / 100), 1, 255)
        sums.append(table.sum())
    return np.array(sums)


_IJG_SUMS = _ijg_table_sums()


@dataclass(frozen=True)
class DecodeLimits:
    """What an input may be; anything outside is refused with a one-line error."""

    max_bytes: int = 50 * 2**20
    max_pixels: int = 64_000_000
    min_side: int = 24


DEFAULT_LIMITS = DecodeLimits()
# A user's own data (train, audit, evaluate, calibrate) is trusted: a 200 MP phone photo
# (16320x12240) and its up-to-100 MB JPEG are read; the bound stays against a decompression bomb.
DATASET_LIMITS = DecodeLimits(max_bytes=200 * 2**20, max_pixels=256_000_000)
# seconds to wait for a server to connect or send more bytes
DOWNLOAD_TIMEOUT_S = 30
# CSV files facetell writes start with a byte-order mark: Excel, opening one, reads its UTF-8
# (a file named Müller.jpg) only when the mark says so, and takes the code page otherwise
CSV_FILE_ENCODING = "utf-8-sig"


@dataclass(frozen=True)
class DecodedImage:
    """Upright RGB pixels and the facts about the file they came from."""

    image: Image.Image
    source: str
    format: str | None
    original_mode: str
    stored_size: tuple[int, int]
    exif_orientation: int
    n_frames: int
    n_bytes: int | None
    jpeg_quality: int | None
    jpeg_subsampling: str | None
    info: Mapping[str, Any] = field(default_factory=dict)
    exif: Image.Exif | None = None
    data: bytes | None = field(default=None, repr=False)

    @property
    def jpeg_compressed(self) -> bool:
        """The file was a JPEG (or a camera's multi-picture JPEG), not a lossless format."""
        return self.format in ("JPEG", "MPO")

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the upright image at its full resolution."""
        width, height = self.stored_size
        return (height, width) if self.exif_orientation in (5, 6, 7, 8) else (width, height)


def estimate_jpeg_quality(quantization: Mapping[int, Any]) -> int | None:
    """Estimate the libjpeg quality (1-100) that produced a file's luminance table.

    Compares table sums, which do not depend on zig-zag or natural order, against the IJG
    tables; non-IJG encoders (cameras, phones) get the closest IJG equivalent.
    """
    if not quantization or 0 not in quantization:
        return None
    luma_sum = float(np.asarray(quantization[0], dtype=np.float64).sum())
    return int(np.argmin(np.abs(_IJG_SUMS - luma_sum)) + 1)


def printable(text: str) -> str:
    """`text` as every output can hold it. A file name whose bytes are not UTF-8 (from an old
    Latin-1 archive, say) reaches Python holding lone surrogates, which no UTF-8 file, CSV or
    HTML page can encode; its odd bytes are written as \\xNN instead, as `ls -b` shows them."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        try:
            return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:  # a surrogate no file name decoded to: escape it as is
            return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def printable_name(name: str) -> str:
    """A name as every output can hold it on one line: `printable`, with control characters
    as \\xNN too (a newline in a file name split a table's row and an error's one line)."""
    return _CONTROL_CHARACTERS.sub(lambda found: f"\\x{ord(found.group()):02x}", printable(name))


_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def source_name(source: object) -> str | None:
    """The name an input carries itself: a path or address, or the name of a file object
    (`open(path, "rb")` has one, BytesIO has none)."""
    if isinstance(source, str | os.PathLike):
        return printable_name(str(source))
    name = getattr(source, "name", None) if _is_stream(source) else None
    return printable_name(name) if isinstance(name, str) else None


def _is_stream(source: object) -> bool:
    return callable(getattr(source, "read", None))


def describe_source(source: ImageSource, name: str | None = None) -> str:
    """The name an input goes by in results and error messages."""
    if name:
        return printable_name(name)
    if isinstance(source, bytes | bytearray | memoryview):
        return "<bytes>"
    if isinstance(source, Image.Image):
        return "<PIL image>"
    if isinstance(source, np.ndarray):
        return "<array>"
    if is_tensor(source):
        return "<tensor>"
    return source_name(source) or ("<stream>" if _is_stream(source) else str(source))


def image_from_array(array: np.ndarray, label: str) -> Image.Image:
    """An RGB(A) or grey array as a Pillow image, its values scaled as their dtype implies.

    Channels are read as RGB (OpenCV's BGR must be flipped first). Floats are taken as [0, 1]
    (scikit-image, torchvision) when their maximum is at most 2, since a 0-255 image that dark is
    black, and as 0-255 otherwise. uint16 is 16-bit; other integer types say nothing of the scale
    (numpy's default int64, Pillow's int32 for 16-bit PNGs), so their values choose 0-255 or
    0-65535. Values up to a tenth of the scale outside it (interpolation overshoot) are clipped;
    further out they mean a normalised tensor or another scale, which clipped would give a black
    or white image judged to hold no face, so they are refused.
    """
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        channels_first = array.ndim == 3 and array.shape[0] in (1, 3, 4)
        raise BadImage(
            label,
            f"array of shape {array.shape} is not an image",
            "channels come last: pass array.transpose(1, 2, 0)"
            if channels_first
            else "pass H x W grey, H x W x 3 RGB or H x W x 4 RGBA",
        )
    if array.dtype == np.uint8:
        return Image.fromarray(np.ascontiguousarray(array))
    if array.dtype == np.bool_:
        return Image.fromarray(array.astype(np.uint8) * 255)
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise BadImage(label, f"array of dtype {array.dtype} is not an image", "pass real numbers")
    values = array.astype(np.float64)
    if not np.isfinite(values).all():  # a failed computation upstream, not a dark photo
        raise BadImage(label, "array holds NaN or infinite values", "pass finite numbers")
    if not values.size:
        return Image.fromarray(values.astype(np.uint8))
    low, high = float(values.min()), float(values.max())
    if np.issubdtype(array.dtype, np.floating):
        scale = 1.0 if high <= 2.0 else 255.0
    else:
        scale = 65535.0 if array.dtype == np.uint16 or high > 255 else 255.0
    if low < -0.1 * scale:
        raise BadImage(
            label,
            f"array holds values down to {low:.4g}, below 0",
            "pass pixel values on 0-1 or 0-255, not normalised ones such as -1 to 1",
        )
    if high > 1.1 * scale:
        raise BadImage(
            label,
            f"array's values reach {high:.6g}, beyond 0-{scale:.0f}",
            "scale them to 0-1 or 0-255 first",
        )
    return Image.fromarray(np.clip(np.rint(values * (255 / scale)), 0, 255).astype(np.uint8))


def is_tensor(source: object) -> bool:
    """A torch tensor, told without importing torch (predict never needs it)."""
    return any(
        cls.__module__ == "torch" and cls.__name__ == "Tensor" for cls in type(source).__mro__
    )


def tensor_pixels(tensor: torch.Tensor, label: str) -> np.ndarray:
    """A tensor's pixels as an H x W (x C) array: tensors are C x H x W, as torchvision's
    `read_image` and `ToTensor` give them, and on any device."""
    values = tensor.detach().cpu()
    if values.is_floating_point() and values.dtype.itemsize < 4:  # numpy has no bfloat16
        values = values.float()
    array = values.numpy()
    if array.ndim == 3:
        if array.shape[0] not in (1, 3, 4):
            raise BadImage(
                label,
                f"tensor of shape {tuple(array.shape)} is not C x H x W",
                "pass tensor.permute(2, 0, 1) for an H x W x C one",
            )
        array = array.transpose(1, 2, 0)
    return array


def real_path(path: str | os.PathLike[str]) -> Path:
    """The absolute path with symlinks followed where they lead; a symlink loop in a folder
    given is its own error record later, where `Path.resolve` raised before any work."""
    try:
        return Path(os.path.realpath(path))
    except ValueError:  # a NUL byte: no file has such a name, so there is no link to follow
        return Path(path).absolute()


def text_of(raw: bytes) -> str:
    """A list or manifest file's text: UTF-8, with or without Notepad's byte-order mark, or
    UTF-16 with its mark, as PowerShell 5's `>` and Excel's "Unicode Text" save them. Bytes
    that are not UTF-8 stay as surrogates, so a name in another encoding is shown, not lost."""
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return raw.decode("utf-16", errors="replace")
    return raw.decode("utf-8-sig", errors="surrogateescape")


def is_url(source: object) -> bool:
    """An http(s) address: `predict` fetches the image there (the REST API never does)."""
    return isinstance(source, str) and source.lower().startswith(("http://", "https://"))


def _as_sent(url: str) -> str:
    """The address with spaces and other letters of its path and query percent-encoded, as a
    browser sends them: an address copied from the address bar may hold both, and http.client
    refuses them. What is already encoded stays as it is."""
    parts = urllib.parse.urlsplit(url)
    path = urllib.parse.quote(parts.path, safe="/%:@!$&'()*+,;=~")
    query = urllib.parse.quote(parts.query, safe="/?%:@!$&'()*+,;=~")
    return urllib.parse.urlunsplit(parts._replace(path=path, query=query, fragment=""))


def _download(url: str, label: str, limits: DecodeLimits) -> bytes:
    """The bytes at an http(s) address, refused past the byte limit without reading the rest."""
    from facetell import __version__

    headers = {"User-Agent": f"facetell/{__version__}"}
    request = urllib.request.Request(_as_sent(url), headers=headers)
    too_large = ImageTooLarge(
        label,
        f"download is over the {limits.max_bytes / 2**20:.0f} MB limit",
        "download and resize it, or raise the limit with predict --max-megapixels",
    )
    try:
        with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response:
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > limits.max_bytes:
                raise too_large
            data = read_capped(response, limits.max_bytes)
            kind = response.headers.get_content_type()
    except urllib.error.HTTPError as exc:
        reason = f"download failed: HTTP {exc.code} {exc.reason}"
        raise BadImage(label, reason, "check the address") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise BadImage(
            label, f"download failed: {reason}", "check the address and the network"
        ) from None
    if len(data) > limits.max_bytes:
        raise too_large
    if kind == "text/html" and b"<html" in data[:4096].lower():  # a page's address, not its photo's
        raise NotAnImage(
            label,
            "the address gives a web page, not an image",
            "give the image's own address, as the browser's Copy Image Address does",
        )
    return data


def _within_limit(data: bytes, label: str, limits: DecodeLimits, hint: str = "") -> bytes:
    """`data`, read with one byte to spare over the limit: refused if that byte came (a pipe or
    a file object has no size to check before reading)."""
    if len(data) > limits.max_bytes:
        limit = f"stream is over the {limits.max_bytes / 2**20:.0f} MB limit"
        raise ImageTooLarge(label, limit, hint)
    return data


_CHUNK = 16 * 2**20


def read_capped(stream: Any, limit: int) -> bytes | str:
    """Up to `limit` + 1 bytes of a stream, in chunks: one read of the whole limit makes Python
    allocate all of it first, and `predict --max-megapixels 4000` (a 32 GB byte limit) failed
    with MemoryError on every photo. A text stream gives its first chunk, a str, to be refused."""
    chunks: list[bytes] = []
    total = 0
    while total <= limit:
        chunk = stream.read(min(_CHUNK, limit + 1 - total))
        if not isinstance(chunk, bytes | bytearray):
            return chunk
        if not chunk:
            break
        chunks.append(bytes(chunk))
        total += len(chunk)
    return b"".join(chunks)


def _read_stream(stream: Any, label: str, limits: DecodeLimits) -> bytes:
    """A file object's bytes, refused past the byte limit without reading the rest."""
    text_mode = NotAnImage(label, "file object is open as text, not bytes", 'open it with "rb"')
    try:
        data = read_capped(stream, limits.max_bytes)
    except UnicodeDecodeError:
        raise text_mode from None
    except (OSError, ValueError) as exc:  # ValueError: read from a closed file
        raise BadImage(label, f"cannot read the file object: {exc}") from None
    if not isinstance(data, bytes):
        raise text_mode
    return _within_limit(data, label, limits)


def _any_case(pattern: str) -> str:
    """A glob pattern whose letters match either case (`*.jpg` → `*.[jJ][pP][gG]`): a camera's
    DSC_0001.JPG is no match for `*.jpg` on a file system that tells case, as Linux's do."""
    out, in_class = [], False
    for char in pattern:
        if char == "[" and not in_class:
            in_class = True
        elif char == "]" and in_class:
            in_class = False
        elif char.isalpha() and not in_class and char.lower() != char.upper():
            char = f"[{char.lower()}{char.upper()}]"
        out.append(char)
    return "".join(out)


def _read_bytes(path: Path, label: str, limits: DecodeLimits) -> bytes:
    """A file's bytes, refused past the byte limit without reading the rest. A pipe (a shell's
    `<(curl …)`) has no size to check first, so the read itself stops at the limit; a device
    (/dev/zero) is refused outright, as it would never end."""
    try:
        facts = path.stat()
    except FileNotFoundError:
        if path.is_symlink():  # a photo library moved, or a synced copy not yet downloaded
            target = printable_name(str(path.readlink()))
            raise BadImage(label, f"broken link to {target}", "restore its target") from None
        if glob.has_magic(str(path)):  # a glob the shell did not expand, or one given to predict
            if matches := len(glob.glob(str(path), recursive=True)):  # noqa: PTH207
                why = f"is a pattern matching {matches} file(s), not one image"
                fix = "pass it alone to Detector.stream to judge them"
                raise BadImage(label, why, fix) from None
            if others := sorted(glob.glob(_any_case(str(path)), recursive=True)):  # noqa: PTH207
                why = (
                    f"no file matches this pattern, but {len(others)} match it in another "
                    f"letter case, such as {printable_name(others[0])}"
                )
                fix = "names are case-sensitive here: write the pattern as they are, or give "
                fix += "the folder"
                raise BadImage(label, why, fix) from None
            raise BadImage(label, "no file matches this pattern", "check the path") from None
        if twins := glob.glob(_any_case(glob.escape(str(path)))):  # noqa: PTH207
            why = f"file not found, but {printable_name(min(twins))} differs only in letter case"
            raise BadImage(label, why, "names are case-sensitive here") from None
        raise BadImage(label, "file not found", "check the path") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise BadImage(label, "symlink loop", "point the link at a file") from None
        raise BadImage(label, f"cannot read file: {exc.strerror or exc}") from None
    if stat.S_ISDIR(facts.st_mode):
        raise BadImage(label, "is a folder, not an image file", "Detector.stream judges a folder")
    if stat.S_ISCHR(facts.st_mode) or stat.S_ISBLK(facts.st_mode):
        raise BadImage(label, "is a device, not an image file")
    hint = "resize it or raise the limit with predict --max-megapixels"
    if facts.st_size > limits.max_bytes:
        size = f"file is {facts.st_size / 2**20:.1f} MB, over the {limits.max_bytes / 2**20:.0f} MB"
        raise ImageTooLarge(label, f"{size} limit", hint)
    try:
        with path.open("rb") as handle:
            data = read_capped(handle, limits.max_bytes)
    except OSError as exc:
        raise BadImage(label, f"cannot read file: {exc.strerror or exc}") from None
    return _within_limit(data, label, limits, hint)  # a pipe, or a file that grew since


_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
# input mode -> output mode of an ICC conversion to sRGB
_PROFILED_MODES = {"RGB": "RGB", "RGBA": "RGBA", "CMYK": "RGB"}


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; transparency is composited over white."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I") or mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if mode.startswith("I;16") or values.max(initial=0) > 255:
            values = values / 257.0
        elif mode == "F" and values.max(initial=0) <= 1.0:
            values = values * 255.0
        gray = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def to_srgb(image: Image.Image, icc_profile: bytes | None) -> Image.Image:
    """The colours a viewer shows: pixels under an embedded ICC profile other than sRGB (the
    Display P3 of iPhone and many Android photos, a CMYK print profile) are converted to sRGB,
    the space the model was trained in (no training image carries a profile). Read as sRGB, P3
    photos moved the shipped model's logits by 0.29 on average (docs/benchmarks.md). A profile
    that cannot be used leaves the pixels as they are."""
    if not icc_profile or image.mode not in _PROFILED_MODES:
        return image
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
        if "srgb" in ImageCms.getProfileDescription(profile).lower():
            return image
        return ImageCms.profileToProfile(
            image, profile, _SRGB, outputMode=_PROFILED_MODES[image.mode]
        )
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return image


# What Pillow's format plugins raise on damaged bytes: besides OSError and friends, a TIFF
# whose dimensions tag is corrupt raises TypeError, an AVIF decoder RuntimeError, and struct
# unpacking of cut headers struct.error or IndexError.
DAMAGED_DATA_ERRORS = (
    OSError,
    SyntaxError,
    EOFError,
    ValueError,
    zlib.error,
    struct.error,
    RuntimeError,
    TypeError,
    IndexError,
    KeyError,
)


def _loaded_libtiffs() -> list[str]:
    """The libtiff files this process has loaded (Pillow's own copy, or the system's)."""
    try:
        with Path("/proc/self/maps").open(encoding="utf-8", errors="replace") as maps:
            paths = {line.split(maxsplit=5)[-1].strip() for line in maps if "/libtiff" in line}
    except OSError:  # no /proc (macOS, Windows): libtiff keeps its default
        return []
    return sorted(path for path in paths if path.startswith("/"))


@functools.cache
def _silence_libtiff_errors() -> None:
    """libtiff prints a damaged TIFF's errors ("LZWDecode: Not enough data…") to stderr from C,
    between a batch's rows, where Python cannot catch them; the file's record already says it
    is damaged. Pillow replaces libtiff's warning handler but not its error handler, so this
    clears that handler, once for the process."""
    no_load = getattr(os, "RTLD_NOLOAD", None)
    for path in _loaded_libtiffs() if no_load is not None else []:
        try:  # RTLD_NOLOAD: the copy already loaded, never a second one
            libtiff = ctypes.CDLL(path, mode=no_load)
            set_handler = libtiff.TIFFSetErrorHandler
        except (OSError, AttributeError):
            continue
        set_handler.argtypes, set_handler.restype = [ctypes.c_void_p], ctypes.c_void_p
        set_handler(None)


@contextmanager
def _quietly() -> Iterator[None]:
    """Pillow's warnings about damaged metadata ("Corrupt EXIF data") and libtiff's errors
    printed into a batch's terminal output; what came of the image is in its record. Wraps
    the whole of `decode`."""
    _silence_libtiff_errors()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _open(data: bytes, label: str) -> Image.Image:
    if not data:
        raise EmptyFile(label, "file is empty (0 bytes)", "re-export or re-download it")
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        other = other_content(data[:1024])
        if other:
            raise NotAnImage(label, *other) from None
        fmt = claimed_format(data[:16])
        if fmt:  # e.g. a scientific TIFF of 64-bit floats, or a file cut off in its header
            reason = f"a {fmt} file of a kind facetell cannot read (an unusual variant, or damaged)"
            raise NotAnImage(label, reason, "re-save it as JPEG or PNG") from None
        raise NotAnImage(
            label,
            "not in any image format facetell reads",
            f"use {FORMATS_READ}",
        ) from None
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(label, str(exc)) from None
    except DAMAGED_DATA_ERRORS as exc:
        for setting, reason in _TEXT_GUARDS.items():  # Pillow's words name its settings
            if setting in str(exc):
                hint = "re-save the picture without its metadata"
                raise ImageTooLarge(label, reason, hint) from None
        raise TruncatedImage(label, f"damaged image header ({exc})", "re-export the file") from None
    raw = _camera_raw_kind(image, data) if image.format == "TIFF" else None
    if raw:
        raise NotAnImage(label, f"{raw}, of which facetell would see only a preview", _RAW_HINT)
    return image


def _refuse_camera_raw(path: Path, label: str) -> None:
    """Refuse a file named as camera RAW that is not plainly a JPEG, PNG, ... inside, before
    reading it whole: RAW files are often larger than the byte limit, which would be the wrong
    reason to give. Content decides, so a JPEG misnamed .nef is still judged."""
    if path.suffix.lower() not in RAW_SUFFIXES or not path.is_file():
        return
    try:
        with path.open("rb") as handle:
            head = handle.read(16)
    except OSError:
        return  # _read_bytes names the problem
    if claimed_format(head) in (None, "TIFF"):
        kind = path.suffix.upper().lstrip(".")
        raise NotAnImage(label, f"a camera RAW file ({kind})", _RAW_HINT)


def _camera_raw_kind(image: Image.Image, data: bytes) -> str | None:
    """Which camera RAW file a TIFF is: one with a DNG version, a Canon CR2 (its fixed header),
    or a camera's file whose first image is marked as a reduced-resolution copy of another
    (NEF, ARW, PEF, ...: a Make tag and NewSubfileType bit 0)."""
    tags = getattr(image, "tag_v2", {})
    if 50706 in tags:
        return "a camera RAW file (DNG)"
    if data[4:11] == b"\x10\x00\x00\x00CR\x02":
        return "a camera RAW file (Canon CR2)"
    make = str(tags.get(271, "")).strip()
    if make and int(tags.get(254, 0) or 0) & 1:
        return f"a camera RAW file ({make})"
    return None


def other_content(head: bytes) -> tuple[str, str] | None:
    """What a file that is no image facetell reads holds instead, and what to do, from its
    first kilobyte: a video, a document, a drawing, an archive, a camera RAW file or a list
    of files (a manifest, an earlier run's results)."""
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand == b"crx ":
            return "a camera RAW file (Canon CR3)", _RAW_HINT
        if brand not in _HEIF_BRANDS:
            return "a video (MP4 or MOV), not a still image", FRAMES_HINT
    archive = archive_kind(head)
    if archive:
        return archive, "extract it and give the folder"
    for signature, found in _OTHER_SIGNATURES.items():
        if head.startswith(signature):
            return found
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "a video (AVI), not a still image", FRAMES_HINT
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<?xml", b"<svg", b"<!doctype svg")) and b"<svg" in text:
        return "an SVG drawing, not a photograph", "render it to PNG if it holds a photo"
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "a web page (HTML), not an image", "save the image itself from the page"
    header = text.split(b"\n", 1)[0].replace(b";", b",").replace(b"\t", b",")
    if b"path" in (column.strip(b' "\r') for column in header.split(b",")):
        return "a table of files (CSV), not an image", "judge those it lists with --files-from"
    return None


def _open_source(
    source: ImageSource, label: str, limits: DecodeLimits
) -> tuple[Image.Image, bytes | None]:
    """The source opened lazily (pixels not yet decoded), and the file's bytes when it had any."""
    data: bytes | None = None
    if isinstance(source, Image.Image):
        image = source
    elif isinstance(source, np.ndarray):
        image = image_from_array(source, label)
    elif is_tensor(source):
        image = image_from_array(tensor_pixels(source, label), label)
    elif not isinstance(source, str | os.PathLike | bytes | bytearray | memoryview) and not (
        _is_stream(source)
    ):
        several = isinstance(source, list | tuple | set | Iterator)
        raise NotAnImage(
            label,
            f"{type(source).__name__} is not an image source",
            "judge several with Detector.predict_batch or Detector.stream"
            if several
            else "pass a path, an http(s) URL, bytes, a binary file object, a PIL image, a "
            "numpy array or a torch tensor",
        )
    else:
        if _is_stream(source):  # open(path, "rb"), BytesIO, an upload's file: read from here on
            data = _read_stream(source, label, limits)
        elif isinstance(source, bytes | bytearray | memoryview):
            data = bytes(source)
            if len(data) > limits.max_bytes:
                raise ImageTooLarge(
                    label, f"{len(data) / 2**20:.1f} MB is over the upload limit", "resize it"
                )
        elif is_url(source):
            data = _download(str(source), label, limits)
        elif source == "":  # Path("") is the working folder: never judge that by mistake
            raise BadImage('""', "empty file name", "is a shell variable unset?")
        elif "\x00" in os.fspath(source):
            raise BadImage(label, "file name holds a NUL byte, which no file name can", "check it")
        else:
            _refuse_camera_raw(Path(source), label)
            data = _read_bytes(Path(source), label, limits)
        image = _open(data, label)
    return image, data


def _check_size(size: tuple[int, int], label: str, limits: DecodeLimits) -> None:
    """Refuse a decompression bomb before its pixels are decoded, and an image too small to
    hold a face the detector can find."""
    width, height = size
    if width * height > limits.max_pixels:
        raise ImageTooLarge(
            label,
            f"{width}x{height} pixels is over the {limits.max_pixels:,} pixel limit",
            "downscale it or raise the limit with predict --max-megapixels or serve's "
            "FACETELL_MAX_PIXELS",
        )
    if min(width, height) < limits.min_side:
        raise ImageTooSmall(
            label,
            f"{width}x{height} pixels is below the {limits.min_side}px minimum side",
            "use a larger image",
        )


@_quietly()
def decode(
    source: ImageSource,
    *,
    limits: DecodeLimits = DEFAULT_LIMITS,
    name: str | None = None,
    reduce_to: int | None = None,
) -> DecodedImage:
    """Decode one input into upright RGB, or raise a `BadImage` with a one-line message.

    `reduce_to` lets JPEG decode at 1/2, 1/4 or 1/8 scale (no smaller than that side), which
    makes hashing and auditing thousands of images cheap; size facts stay those of the file.
    """
    label = describe_source(source, name)
    image, data = _open_source(source, label, limits)
    stored_size = image.size  # the file's, before a reduced JPEG decode shrinks the image
    _check_size(stored_size, label, limits)

    fmt = image.format
    quality = subsampling = None
    if isinstance(image, JpegImagePlugin.JpegImageFile):
        quality = estimate_jpeg_quality(getattr(image, "quantization", {}))
        subsampling = _SUBSAMPLING_NAMES.get(JpegImagePlugin.get_sampling(image))
    try:  # a TIFF walks its pages' headers to count them
        n_frames = int(getattr(image, "n_frames", 1))
        rewind = n_frames > 1
    except DAMAGED_DATA_ERRORS:  # a later page is damaged: the first, the one judged, may not be
        n_frames, rewind = 1, True
    info = MappingProxyType(dict(image.info))
    try:
        exif = image.getexif()
        orientation = int(exif.get(0x0112, 1) or 1)
    except Exception:  # a malformed EXIF block must not cost the pixels
        exif, orientation = None, 1
    if orientation not in range(1, 9):
        orientation = 1
    original_mode = image.mode

    try:
        if rewind:
            image.seek(0)
        if reduce_to and fmt == "JPEG":
            image.draft("RGB", (reduce_to, reduce_to))
        image.load()
        upright = ImageOps.exif_transpose(image) if orientation != 1 else image
        rgb = to_rgb(to_srgb(upright, info.get("icc_profile")))
    except DAMAGED_DATA_ERRORS as exc:
        reason = "truncated or damaged image data"
        if "truncated" not in str(exc).lower():
            reason += f" ({exc})"
        raise TruncatedImage(label, reason, "re-export or re-download the file") from None
    except MemoryError:
        raise ImageTooLarge(label, "not enough memory to decode", "downscale it") from None

    return DecodedImage(
        image=rgb,
        source=label,
        format=fmt,
        original_mode=original_mode,
        stored_size=stored_size,
        exif_orientation=orientation,
        n_frames=n_frames,
        n_bytes=len(data) if data is not None else None,
        jpeg_quality=quality,
        jpeg_subsampling=subsampling,
        info=info,
        exif=exif,
        data=data,
    )


def transformed(item: ImageSource, transform: Callable[[Image.Image], Image.Image]) -> ImageSource:
    """The decoded image passed through `transform` (a perturbed or thumbnail copy); the item as
    it is when it does not decode, so whatever prepares it next records the error."""
    try:
        return transform(decode(item).image)
    except BadImage:
        return item


def jpeg_roundtrip(image: Image.Image, quality: int) -> Image.Image:
    """The RGB image as it reads back after one JPEG save at this quality; it still says it is
    a JPEG (`format`), as a file would."""
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    decoded = Image.open(buffer)
    decoded.load()
    return decoded if decoded.mode == "RGB" else decoded.convert("RGB")


_SIGNATURES = {
    b"\xff\xd8\xff": "JPEG",
    b"\x89PNG": "PNG",
    b"GIF8": "GIF",
    b"BM": "BMP",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
}


FRAMES_HINT = "save the frames to judge as PNG, e.g. ffmpeg -i VIDEO -vf fps=1 frame-%04d.png"
_OTHER_SIGNATURES = {
    b"%PDF": ("a PDF document", "export the page or picture to judge as PNG or JPEG"),
    b"\x1aE\xdf\xa3": ("a video (WebM or Matroska), not a still image", FRAMES_HINT),
    b"\xff\x0a": ("a JPEG XL image", "convert it to PNG, e.g. djxl IMAGE.jxl IMAGE.png"),
    b"\x00\x00\x00\x0cJXL ": (
        "a JPEG XL image",
        "convert it to PNG, e.g. djxl IMAGE.jxl IMAGE.png",
    ),
    b"IIRO": ("a camera RAW file (Olympus ORF)", _RAW_HINT),
    b"IIRS": ("a camera RAW file (Olympus ORF)", _RAW_HINT),
    b"MMOR": ("a camera RAW file (Olympus ORF)", _RAW_HINT),
    b"IIU\x00": ("a camera RAW file (Panasonic RW2)", _RAW_HINT),
    b"FUJIFILMCCD-RAW": ("a camera RAW file (Fujifilm RAF)", _RAW_HINT),
}


_ARCHIVE_SIGNATURES = {
    b"PK\x03\x04": "a ZIP archive",
    b"\x1f\x8b": "a gzip archive",
    b"BZh": "a bzip2 archive",
    b"\xfd7zXZ\x00": "an xz archive",
    b"7z\xbc\xaf\x27\x1c": "a 7-Zip archive",
    b"Rar!\x1a\x07": "a RAR archive",
}


def archive_kind(head: bytes) -> str | None:
    """Which archive a file's first kilobyte shows, if any: datasets are downloaded as one."""
    if head[257:262] == b"ustar":
        return "a tar archive"
    return next((kind for sig, kind in _ARCHIVE_SIGNATURES.items() if head.startswith(sig)), None)


def binary_kind(head: bytes) -> str | None:
    """What a file facetell never writes is (an archive, a PDF, a video, other binary data),
    from its first bytes; None for text in any encoding, which an earlier run or an editor
    wrote."""
    if kind := archive_kind(head):
        return kind
    for signature, (kind, _) in _OTHER_SIGNATURES.items():
        if head.startswith(signature):
            return kind
    return "a binary file, not results facetell wrote" if b"\x00" in head else None


def claimed_format(head: bytes) -> str | None:
    """The image format a file's first 16 bytes announce, whatever its name says."""
    for signature, fmt in _SIGNATURES.items():
        if head.startswith(signature):
            return fmt
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS:
        return "HEIC/AVIF"
    return None


def looks_like_image(path: Path) -> bool:
    """Cheap discovery filter: a known image suffix, or image magic bytes for other names (a
    camera RAW file's TIFF bytes do not count)."""
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return True
    if suffix in RAW_SUFFIXES:
        return False
    return claimed_format(file_head(path, 16)) is not None


def file_head(path: Path, size: int = 1024) -> bytes:
    """A file's first bytes, to tell what it holds; nothing when it cannot be read."""
    try:
        with path.open("rb") as handle:
            return handle.read(size)
    except OSError:
        return b""


def is_folder(path: Path) -> bool:
    """`Path.is_dir`, but False for a name the system refuses (longer than it allows), which
    raised and stopped a batch; judged, such a name is an error record like any other."""
    try:
        return path.is_dir()
    except OSError:
        return False


def exists(path: Path) -> bool:
    """`Path.exists`, but False for a name the system refuses, as `is_folder`."""
    try:
        return path.exists()
    except OSError:
        return False


def image_files(
    source: str | os.PathLike[str],
    skipped: list[Path] | None = None,
    left_out: Path | None = None,
) -> Iterator[str]:
    """A folder's image files (recursive, sorted, hidden ones aside), a glob's matches, or the
    source as given, so a path that is none of these still becomes its own error record.

    Other files in a folder are added to `skipped`; files under `left_out` (a folder the
    caller writes into, such as --explain's) are not walked.
    """
    raw = os.fspath(source)
    path = Path(raw)
    if raw and is_folder(path):  # "" is no folder (Path("") is ".")
        for found in sorted(path.rglob("*")):
            broken_link = found.is_symlink() and not found.exists()
            if not (found.is_file() or broken_link) or found.name.startswith("."):
                continue
            if left_out and real_path(found).is_relative_to(left_out):
                continue
            if looks_like_image(found):
                yield str(found)
            elif skipped is not None:
                skipped.append(found)
    elif raw and not exists(path) and (matches := glob.glob(raw, recursive=True)):  # noqa: PTH207
        yield from sorted(matches)
    else:
        yield raw  # a pattern that matches nothing, too: "file not found" says so


def expand_sources(
    items: ImageSource | NamedImage | Iterable[ImageSource | NamedImage],
) -> Iterator[ImageSource | NamedImage]:
    """What `Detector.stream` judges: one path (a file, a folder walked for image files, or a
    glob) or any other source, or many of them, where a folder stands for its image files and
    a name is taken as it is (a listed "x*.jpg" that is gone stays one error record)."""
    if isinstance(items, str | os.PathLike):
        yield from [items] if is_url(items) else image_files(items)
        return
    single = (bytes, bytearray, memoryview, Image.Image, NamedImage)
    # (N, H, W, C) arrays and (N, C, H, W) tensors are N images
    one_array = (isinstance(items, np.ndarray) or is_tensor(items)) and items.ndim < 4
    if isinstance(items, single) or one_array or _is_stream(items):
        yield items
        return
    for item in items:
        if isinstance(item, str | os.PathLike) and is_folder(Path(item)):
            yield from image_files(item)
        else:
            yield item

"""Decoding: every input becomes upright 8-bit RGB, or one clear line saying why not."""

from __future__ import annotations

import io
import os
import re
import struct
import tarfile
import threading
import warnings
import zipfile
from contextlib import suppress
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, TiffImagePlugin, TiffTags
from PIL.PngImagePlugin import PngInfo

from conftest import astronaut, display_p3_profile, encode, heic, in_display_p3, smooth_photo
from facetell.errors import (
    BadImage,
    EmptyFile,
    ImageTooLarge,
    ImageTooSmall,
    NotAnImage,
    TruncatedImage,
)
from facetell.io import DecodedImage, DecodeLimits, decode, estimate_jpeg_quality

GOOD = [
    "photo.jpg",
    "photo.png",
    "photo.webp",
    "photo.bmp",
    "photo.tiff",
    "photo.heic",
    "photo.avif",
    "cmyk.jpg",
    "gray16.png",
    "palette_transparent.png",
    "rgba.png",
    "animated.gif",
    "animated.webp",
    "rotated.jpg",
]
BAD = {
    "truncated.jpg": TruncatedImage,
    "empty.jpg": EmptyFile,
    "notes.jpg": NotAnImage,
}


@pytest.mark.parametrize("name", GOOD)
def test_every_supported_file_decodes_to_8bit_rgb(image_zoo: dict[str, Path], name: str) -> None:
    decoded = decode(image_zoo[name])
    assert decoded.image.mode == "RGB"
    assert np.asarray(decoded.image).dtype == np.uint8
    assert decoded.image.size == decoded.size


def test_lossless_formats_keep_the_exact_pixels(image_zoo: dict[str, Path], photo) -> None:
    for name in ("photo.png", "photo.bmp", "photo.tiff"):
        assert np.array_equal(np.asarray(decode(image_zoo[name]).image), np.asarray(photo))


@pytest.mark.parametrize(("name", "fmt"), [("photo.heic", "HEIF"), ("photo.avif", "AVIF")])
def test_heic_and_avif_come_back_close_to_the_original(image_zoo, photo, name, fmt) -> None:
    decoded = decode(image_zoo[name])
    assert decoded.format == fmt
    pixels = np.asarray(decoded.image, dtype=np.float32)
    assert pixels.shape == (96, 96, 3)
    assert np.abs(pixels - np.asarray(photo, dtype=np.float32)).mean() < 8  # lossy, 4:2:0


def test_heic_exif_reaches_the_metadata_clues(tmp_path) -> None:
    from facetell.forensics import metadata_clues

    exif = Image.Exif()
    exif[0x010F] = "Apple"  # Make
    exif[0x0131] = "Midjourney v6"  # Software
    path = tmp_path / "declared.heic"
    path.write_bytes(heic(smooth_photo(3, 128), tmp_path, exif=exif.tobytes()))
    clues = metadata_clues(decode(path))
    assert clues["declared_ai"] is True
    assert {(c["key"], c["value"]) for c in clues["clues"]} >= {("software", "Midjourney v6")}


def test_grey_arrays_of_every_layout_and_scale_decode_alike(photo) -> None:
    grey = np.asarray(photo.convert("L"))
    layouts = [grey, grey[..., None], grey / 255.0, grey.astype(np.uint16) * 257, grey > 127]
    decoded = [np.asarray(decode(array).image) for array in layouts]
    assert all(d.shape == (96, 96, 3) for d in decoded)
    for same in decoded[1:4]:
        assert np.array_equal(same, decoded[0])
    assert set(np.unique(decoded[4])) == {0, 255}  # booleans are black and white


def test_cmyk_jpeg_comes_back_close_to_the_rgb_original(image_zoo, photo) -> None:
    decoded = np.asarray(decode(image_zoo["cmyk.jpg"]).image, dtype=np.float32)
    assert decoded.shape == (96, 96, 3)
    assert np.abs(decoded - np.asarray(photo, dtype=np.float32)).mean() < 12


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "HEIC"])
def test_wide_gamut_photos_are_converted_to_the_srgb_colours_they_show(tmp_path, fmt) -> None:
    """An iPhone stores Display P3 values with their profile; read as sRGB they are 3.4 grey
    levels off on the astronaut, its saturated suit most."""
    original, profile = astronaut(), display_p3_profile()
    stored = in_display_p3(original)

    def saved(image: Image.Image, **options: object) -> bytes:
        if fmt == "HEIC":
            return heic(image, tmp_path, quality=90, **options)
        return encode(image, fmt, **({"quality": 95} if fmt == "JPEG" else {}), **options)

    expected = np.asarray(decode(saved(original)).image, np.float32)
    converted = np.asarray(decode(saved(stored, icc_profile=profile)).image, np.float32)
    as_stored = np.asarray(decode(saved(stored)).image, np.float32)
    error = np.abs(converted - expected).mean()
    assert np.abs(as_stored - expected).mean() > 3.0
    assert error < (0.5 if fmt == "PNG" else 1.5)


def test_an_unusable_colour_profile_leaves_the_pixels_as_stored(photo) -> None:
    for profile in (b"\x00" * 200, display_p3_profile()[:300]):
        decoded = decode(encode(photo, "PNG", icc_profile=profile))
        assert np.array_equal(np.asarray(decoded.image), np.asarray(photo))


def test_16bit_gray_is_scaled_not_clipped(image_zoo) -> None:
    decoded = decode(image_zoo["gray16.png"])
    assert decoded.original_mode.startswith("I")
    assert np.unique(np.asarray(decoded.image)).tolist() == [128]  # 32896 / 257


def test_transparency_is_composited_over_white(image_zoo) -> None:
    for name in ("palette_transparent.png", "rgba.png"):
        assert np.unique(np.asarray(decode(image_zoo[name]).image)).tolist() == [255]


def test_animations_give_their_first_frame(image_zoo) -> None:
    for name in ("animated.gif", "animated.webp"):
        decoded = decode(image_zoo[name])
        assert decoded.n_frames == 3
        red, green, blue = np.asarray(decoded.image).reshape(-1, 3).mean(axis=0)
        assert red > 150 and green < 50 and blue < 50


def test_exif_orientation_is_applied(image_zoo) -> None:
    decoded = decode(image_zoo["rotated.jpg"])
    assert decoded.exif_orientation == 6
    assert decoded.stored_size == (64, 96)
    assert decoded.image.size == (96, 64) == decoded.size
    pixels = np.asarray(decoded.image, dtype=np.int32)
    assert pixels[:, -10:, 0].mean() > 200  # the stored top band is now on the right
    assert pixels[:, :40, 2].mean() > 200 and pixels[:, :40, 0].mean() < 40


@pytest.mark.parametrize(("name", "error_type"), sorted(BAD.items()))
def test_bad_files_raise_one_typed_line_naming_the_file(image_zoo, name, error_type) -> None:
    with pytest.raises(error_type) as caught:
        decode(image_zoo[name])
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(str(image_zoo[name]))


def test_content_is_sniffed_not_the_extension(tmp_path, photo) -> None:
    disguised = tmp_path / "actually_a_png.jpg"
    disguised.write_bytes(encode(photo, "PNG"))
    assert decode(disguised).format == "PNG"


def test_pixel_limit_refuses_decompression_bombs_before_decoding(tmp_path) -> None:
    big = tmp_path / "big.png"
    Image.new("L", (4000, 3000)).save(big)  # compresses to a few KB
    with pytest.raises(ImageTooLarge, match="4000x3000 pixels is over the 1,000,000 pixel limit"):
        decode(big, limits=DecodeLimits(max_pixels=1_000_000))


def test_a_text_chunk_bomb_is_named_as_such_not_as_a_damaged_header(photo) -> None:
    """A compressed PNG text chunk that inflates past the 16 MB cap is refused in words about
    the file, where Pillow's own words name one of its settings and called the header damaged."""
    info = PngInfo()
    info.add_text("Comment", "A" * (17 * 2**20), zip=True)  # 17 MB of text in about 17 KB
    png = encode(photo, "PNG", pnginfo=info)
    assert len(png) < 100_000
    with pytest.raises(ImageTooLarge) as refused:
        decode(png, name="bomb.png")
    assert str(refused.value) == (
        "bomb.png: a PNG text chunk inflates past 16 MB (re-save the picture without its metadata)"
    )
    many = PngInfo()
    for key in range(5):  # each chunk under the cap, 75 MB together
        many.add_text(f"Comment{key}", "A" * (15 * 2**20), zip=True)
    with pytest.raises(ImageTooLarge) as refused:
        decode(encode(photo, "PNG", pnginfo=many), name="bombs.png")
    assert str(refused.value) == (
        "bombs.png: a PNG's text chunks inflate past 64 MB in all "
        "(re-save the picture without its metadata)"
    )


def test_byte_limit_and_minimum_side(tmp_path, photo) -> None:
    path = tmp_path / "photo.png"
    photo.save(path)
    with pytest.raises(ImageTooLarge, match="MB"):
        decode(path, limits=DecodeLimits(max_bytes=1000))
    with pytest.raises(ImageTooSmall, match="96x96 pixels is below the 128px"):
        decode(path, limits=DecodeLimits(min_side=128))


def test_a_pipe_is_read_up_to_the_limit_and_a_device_is_refused(tmp_path, photo) -> None:
    """`predict <(curl …)` hands over a pipe, which has no size to check before reading:
    an image comes through, an endless stream stops at the byte limit. /dev/zero used to be
    read until memory ran out."""
    encoded = encode(photo, "PNG")

    def piped(data: bytes, name: str) -> Path:
        fifo = tmp_path / name
        os.mkfifo(fifo)

        def write() -> None:
            with suppress(BrokenPipeError), fifo.open("wb") as handle:
                handle.write(data)

        threading.Thread(target=write, daemon=True).start()
        return fifo

    limits = DecodeLimits(max_bytes=len(encoded) + 100)
    decoded = decode(piped(encoded, "image"), limits=limits)
    assert np.array_equal(np.asarray(decoded.image), np.asarray(photo))
    with pytest.raises(ImageTooLarge, match="stream is over the"):
        decode(piped(encoded * 3, "endless"), limits=limits)
    with pytest.raises(BadImage, match=r"^/dev/zero: is a device, not an image file$"):
        decode(Path("/dev/zero"))


def test_bytes_and_pil_inputs_decode_like_files(image_zoo, photo) -> None:
    from_bytes = decode(image_zoo["photo.png"].read_bytes(), name="upload.png")
    assert from_bytes.source == "upload.png"
    assert np.array_equal(np.asarray(from_bytes.image), np.asarray(photo))
    assert np.array_equal(np.asarray(decode(photo.convert("RGBA")).image), np.asarray(photo))


def test_each_bad_input_is_its_own_kind_of_error_naming_the_file(image_zoo) -> None:
    """What a batch records for each file (Detector.stream turns these into error records)."""
    for name in sorted(image_zoo):
        if name in BAD:
            with pytest.raises(BAD[name]) as caught:
                decode(image_zoo[name])
            assert str(image_zoo[name]) in str(caught.value)
        else:
            assert isinstance(decode(image_zoo[name]), DecodedImage), name


@pytest.mark.parametrize("quality", [30, 50, 75, 90, 95])
def test_jpeg_quality_is_estimated_from_the_quantisation_tables(tmp_path, quality) -> None:
    path = tmp_path / f"q{quality}.jpg"
    smooth_photo(quality, size=64).save(path, quality=quality)
    assert abs(decode(path).jpeg_quality - quality) <= 1
    with Image.open(path) as image:
        assert abs(estimate_jpeg_quality(image.quantization) - quality) <= 1


def test_a_tiff_variant_pillow_cannot_read_is_named_as_such_not_as_no_image() -> None:
    """skimage's sample of a 64-bit float, planar RGB TIFF: a scientific export, not junk."""
    import skimage.data

    scientific = Path(skimage.data.__file__).parent / "multipage_rgb.tif"
    with pytest.raises(NotAnImage) as caught:
        decode(scientific)
    assert str(caught.value) == (
        f"{scientific}: a TIFF file of a kind facetell cannot read (an unusual variant, or"
        " damaged) (re-save it as JPEG or PNG)"
    )
    with pytest.raises(NotAnImage, match=r": not in any image format facetell reads \(use JPEG"):
        decode(b"just some text, long enough")


def test_an_empty_name_is_refused_not_read_as_the_working_folder() -> None:
    with pytest.raises(BadImage) as caught:
        decode("")
    assert str(caught.value) == '"": empty file name (is a shell variable unset?)'


def test_an_array_holding_nan_is_refused_not_judged_as_a_black_image(photo) -> None:
    values = np.asarray(photo) / 255.0
    values[10, 10, 0] = np.nan
    with pytest.raises(BadImage, match="array holds NaN or infinite values"):
        decode(values)
    assert decode(np.nan_to_num(values)).size == (96, 96)


def test_integer_arrays_take_the_scale_their_values_show_not_their_type(photo) -> None:
    """numpy's default int64 of 0-255 values used to be divided by 2**63 into a black image."""
    pixels = np.asarray(photo)
    expected = np.asarray(decode(pixels).image)
    for same in (pixels.astype(np.int64), pixels.astype(np.int32) * 257, pixels.astype(np.int16)):
        assert np.array_equal(np.asarray(decode(same).image), expected)


def test_normalised_or_wider_arrays_are_refused_and_overshoot_is_clipped(photo) -> None:
    pixels = np.asarray(photo) / 255.0
    refused = {
        r"array holds values down to -0\.9\d*, below 0": pixels * 2 - 1,  # a GAN's [-1, 1]
        r"array's values reach 6\d{4}(\.\d+)?, beyond 0-255": pixels * 65535,
        r"array's values reach 2\.\d+e\+07, beyond 0-65535": (pixels * 255).astype(int) * 10**5,
    }
    for reason, values in refused.items():
        with pytest.raises(BadImage) as caught:
            decode(values)
        assert re.fullmatch(reason, caught.value.reason), caught.value.reason
    overshoot = pixels.copy()  # bicubic resizing leaves a [0, 1] image a little outside it
    overshoot[0, 0], overshoot[0, 1] = 1.04, -0.04
    decoded = np.asarray(decode(overshoot).image)
    assert (decoded[0, 0] == 255).all() and (decoded[0, 1] == 0).all()
    assert np.array_equal(decoded[1:], np.asarray(photo)[1:])


def tiff_with_a_damaged_second_page(photo: Image.Image) -> bytes:
    """Two pages, the second's ImageWidth entry renamed to an unknown tag."""
    stored = bytearray(encode(photo, "TIFF", save_all=True, append_images=[photo]))
    first = struct.unpack("<I", stored[4:8])[0]
    entries = struct.unpack("<H", stored[first : first + 2])[0]
    second = struct.unpack("<I", stored[first + 2 + 12 * entries :][:4])[0]
    for index in range(struct.unpack("<H", stored[second : second + 2])[0]):
        entry = second + 2 + 12 * index
        if struct.unpack("<H", stored[entry : entry + 2])[0] == 256:  # ImageWidth
            stored[entry : entry + 2] = struct.pack("<H", 65000)
    return bytes(stored)


def test_damage_pillow_reports_with_other_exceptions_is_a_record_not_a_crash(photo) -> None:
    """Found by fuzzing: a damaged TIFF page raised TypeError ("Missing dimensions") and an
    AVIF naming a missing primary item RuntimeError, each stopping the whole batch."""
    decoded = decode(tiff_with_a_damaged_second_page(photo))  # the first page is judged
    assert decoded.n_frames == 1
    assert np.array_equal(np.asarray(decoded.image), np.asarray(photo))
    avif = bytearray(encode(photo, "AVIF", quality=60))
    primary = avif.find(b"pitm") + 8  # the primary item's id
    avif[primary] = 0x7F
    with pytest.raises(TruncatedImage) as caught:
        decode(bytes(avif))
    assert caught.value.reason.startswith("damaged image header (Failed to decode image: ")


def test_a_damaged_compressed_tiff_is_a_record_and_libtiff_prints_nothing(photo, capfd) -> None:
    """libtiff printed "LZWDecode: Not enough data at scanline …" to stderr from C, between a
    batch's rows and into a JSON-lines run's terminal; the record already says what happened."""
    stored = bytearray(encode(photo, "TIFF", compression="tiff_lzw"))
    middle = len(stored) // 2
    stored[middle : middle + 16] = bytes(16)  # a run of zeros inside the LZW strips
    with pytest.raises(TruncatedImage) as caught:
        decode(bytes(stored), name="scan.tif")
    assert str(caught.value).startswith("scan.tif: truncated or damaged image data")
    assert capfd.readouterr().err == ""
    assert decode(encode(photo, "TIFF", compression="tiff_lzw")).image.size == photo.size


def test_a_damaged_exif_block_costs_neither_the_pixels_nor_a_warning_line(photo) -> None:
    """Pillow warned "Tag data larger than file" into the terminal, between a batch's rows."""
    exif = Image.Exif()
    exif[0x010F], exif[0x0131] = "Canon", "Adobe Photoshop"  # Make, Software
    block = bytearray(exif.tobytes())  # b"Exif\0\0MM\0*" then the first IFD's offset
    first_entry = 6 + struct.unpack(">I", block[10:14])[0] + 2
    block[first_entry + 4 : first_entry + 8] = struct.pack(">I", 10**6)  # its count
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        decoded = decode(encode(photo, "JPEG", quality=95, exif=bytes(block)))
    assert decoded.image.size == photo.size


def raw_like_tiff(image: Image.Image, **tags: object) -> bytes:
    """A TIFF carrying a camera RAW file's marks (a DNG version, a reduced-resolution first
    image): Pillow opens these and would hand over only the preview they lead with."""
    directory = TiffImagePlugin.ImageFileDirectory_v2()
    for tag, value in tags.items():
        number = {"dng_version": 50706, "new_subfile_type": 254, "make": 271}[tag]
        directory[number] = value
        if number == 50706:
            directory.tagtype[number] = TiffTags.BYTE
    return encode(image, "TIFF", tiffinfo=directory)


def test_camera_raw_files_are_refused_not_judged_on_their_preview(tmp_path) -> None:
    face = astronaut()
    dng = raw_like_tiff(face, dng_version=bytes([1, 4, 0, 0]), new_subfile_type=1)
    nef_like = raw_like_tiff(face, new_subfile_type=1, make="NIKON CORPORATION")
    hint = "(export it as JPEG from your raw editor or camera app and judge that)"
    preview = "of which facetell would see only a preview"
    for data, kind in [
        (dng, "a camera RAW file (DNG)"),
        (nef_like, "a camera RAW file (NIKON CORPORATION)"),
    ]:
        named = tmp_path / "IMG_0001.tif"  # the name hides nothing: the content is read
        named.write_bytes(data)
        with pytest.raises(NotAnImage) as caught:
            decode(named)
        assert str(caught.value) == f"{named}: {kind}, {preview} {hint}"
        with pytest.raises(NotAnImage, match=f"^upload.bin: {re.escape(kind)}, "):
            decode(data, name="upload.bin")
    tight = DecodeLimits(max_bytes=10_000)  # RAW files often pass the byte limit: not the reason
    for suffix in [".nef", ".CR2", ".arw", ".dng", ".orf"]:  # TIFF (or unknown) named as RAW
        raw = tmp_path / f"DSC_0001{suffix}"
        raw.write_bytes(encode(face, "TIFF") if suffix != ".orf" else b"IIRO" + bytes(20_000))
        with pytest.raises(NotAnImage) as caught:
            decode(raw, limits=tight)
        assert str(caught.value) == f"{raw}: a camera RAW file ({suffix[1:].upper()}) {hint}"
    misnamed = tmp_path / "DSC_0002.nef"  # content decides: a JPEG is judged whatever its name
    misnamed.write_bytes(encode(face, "JPEG"))
    assert decode(misnamed).format == "JPEG"
    plain = decode(encode(face, "TIFF"))  # an ordinary TIFF is still read
    assert plain.format == "TIFF" and plain.size == face.size
    scanned = decode(raw_like_tiff(face, new_subfile_type=1))  # a preview first, no camera
    assert scanned.format == "TIFF" and scanned.size == face.size


def _matplotlib_figure(fmt: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    buffer = io.BytesIO()
    Figure(figsize=(1, 1)).savefig(buffer, format=fmt)
    return buffer.getvalue()


def _zip_of_a_photo() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("photo.jpg", encode(astronaut(), "JPEG"))
    return buffer.getvalue()


def _tar_of_a_photo(mode: str) -> bytes:
    photo = encode(astronaut(), "JPEG")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:
        member = tarfile.TarInfo("faces/photo.jpg")
        member.size = len(photo)
        archive.addfile(member, io.BytesIO(photo))
    return buffer.getvalue()


def test_files_of_other_kinds_are_named_with_what_to_do() -> None:
    """What people actually drop in: a clip, a PDF, a drawing, a saved web page, an archive."""
    import facetell.server

    page = (Path(facetell.server.__file__).parent / "static" / "index.html").read_bytes()
    frames = "(save the frames to judge as PNG, e.g. ffmpeg -i VIDEO -vf fps=1 frame-%04d.png)"
    cases = {
        b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41" + bytes(64): (
            f"a video (MP4 or MOV), not a still image {frames}"
        ),
        b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00qt  " + bytes(64): (
            f"a video (MP4 or MOV), not a still image {frames}"
        ),
        b"\x1aE\xdf\xa3\x9fB\x86\x81\x01B\xf7\x81\x01B\xf2\x81\x04webm" + bytes(64): (
            f"a video (WebM or Matroska), not a still image {frames}"
        ),
        _matplotlib_figure("pdf"): (
            "a PDF document (export the page or picture to judge as PNG or JPEG)"
        ),
        _matplotlib_figure("svg"): (
            "an SVG drawing, not a photograph (render it to PNG if it holds a photo)"
        ),
        page: "a web page (HTML), not an image (save the image itself from the page)",
        _zip_of_a_photo(): "a ZIP archive (extract it and give the folder)",
        _tar_of_a_photo("w"): "a tar archive (extract it and give the folder)",
        _tar_of_a_photo("w:gz"): "a gzip archive (extract it and give the folder)",
        b"\x00\x00\x00\x0cJXL \r\n\x87\n" + bytes(64): (
            "a JPEG XL image (convert it to PNG, e.g. djxl IMAGE.jxl IMAGE.png)"
        ),
        b"\x00\x00\x00\x18ftypcrx \x00\x00\x00\x01crx isom" + bytes(64): (
            "a camera RAW file (Canon CR3) (export it as JPEG from your raw editor or camera "
            "app and judge that)"
        ),
    }
    for data, message in cases.items():
        with pytest.raises(NotAnImage) as caught:
            decode(data, name="upload")
        assert str(caught.value) == f"upload: {message}"


def test_a_byte_limit_larger_than_memory_is_not_allocated_before_reading(tmp_path, photo) -> None:
    """`predict --max-megapixels 4295` allows 8 bytes a pixel, 34 GB: read in one call, Python
    allocated all of it first and every photo failed with MemoryError."""
    path = tmp_path / "photo.jpg"
    path.write_bytes(encode(photo, "JPEG"))
    huge = DecodeLimits(max_pixels=4_295_000_000, max_bytes=8 * 4_295_000_000)
    assert decode(path, limits=huge).size == photo.size
    with path.open("rb") as stream:
        assert decode(stream, limits=huge).size == photo.size
    small = DecodeLimits(max_bytes=1000)  # the limit still holds, for a stream too
    with path.open("rb") as stream, pytest.raises(ImageTooLarge, match="over the 0 MB limit"):
        decode(stream, limits=small)

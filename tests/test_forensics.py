"""Metadata clues: each kind a generator or a camera writes is reported; none are invented."""

from __future__ import annotations

import io
import json

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from conftest import smooth_photo
from facetell.forensics import metadata_clues
from facetell.io import decode


def png_with_text(**chunks: str) -> bytes:
    info = PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    smooth_photo(1, 64).save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()


def clues_of(data: bytes) -> dict:
    return metadata_clues(decode(data))


def by_key(report: dict) -> dict[str, dict]:
    return {c["key"]: c for c in report["clues"]}


def test_automatic1111_parameters_declare_ai():
    report = clues_of(
        png_with_text(parameters="portrait of a woman\nSteps: 30, Sampler: Euler a, Seed: 42")
    )
    assert report["declared_ai"]
    assert "Sampler: Euler a" in by_key(report)["parameters"]["value"]


def test_comfyui_prompt_and_workflow_declare_ai():
    prompt = {"3": {"class_type": "KSampler", "inputs": {"seed": 1}}}
    workflow = {"nodes": [{"id": 3, "type": "KSampler"}], "links": []}
    report = clues_of(png_with_text(prompt=json.dumps(prompt), workflow=json.dumps(workflow)))
    keys = by_key(report)
    assert report["declared_ai"]
    assert keys["prompt"]["declares_ai"] and keys["workflow"]["declares_ai"]


def test_xmp_digital_source_type_declares_ai():
    xmp = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description '
        b'Iptc4xmpExt:DigitalSourceType="http://cv.iptc.org/newscodes/digitalsourcetype/'
        b'trainedAlgorithmicMedia"/></rdf:RDF></x:xmpmeta>'
    )
    buffer = io.BytesIO()
    smooth_photo(2, 64).save(buffer, "JPEG", xmp=xmp)
    report = clues_of(buffer.getvalue())
    assert report["declared_ai"]
    assert by_key(report)["digital_source_type"]["value"].endswith("trainedAlgorithmicMedia")


def test_exif_camera_is_reported_and_does_not_declare_ai():
    exif = Image.Exif()
    exif[0x010F] = "Canon"
    exif[0x0110] = "Canon EOS 5D Mark IV"
    exif[0x0132] = "2024:05:01 10:00:00"
    buffer = io.BytesIO()
    smooth_photo(3, 64).save(buffer, "JPEG", exif=exif.tobytes())
    report = clues_of(buffer.getvalue())
    keys = by_key(report)
    assert keys["make"]["value"] == "Canon"
    assert keys["model"]["value"] == "Canon EOS 5D Mark IV"
    assert not report["declared_ai"]


def test_generator_software_tag_declares_ai_but_an_editor_does_not():
    exif = Image.Exif()
    exif[0x0131] = "Adobe Firefly"
    buffer = io.BytesIO()
    smooth_photo(4, 64).save(buffer, "JPEG", exif=exif.tobytes())
    assert clues_of(buffer.getvalue())["declared_ai"]
    exif[0x0131] = "GIMP 2.10"
    buffer = io.BytesIO()
    smooth_photo(4, 64).save(buffer, "JPEG", exif=exif.tobytes())
    assert not clues_of(buffer.getvalue())["declared_ai"]


def test_a_file_without_metadata_reports_no_clues():
    for fmt in ("PNG", "JPEG", "WEBP"):
        buffer = io.BytesIO()
        smooth_photo(5, 64).save(buffer, fmt)
        report = clues_of(buffer.getvalue())
        assert report["clues"] == [] and report["declared_ai"] is False, fmt

"""Metadata clues: each kind a generator or a camera writes is reported; none are invented."""

from __future__ import annotations

import datetime
import io
import json

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from conftest import heic, smooth_photo
from facetell.forensics import metadata_clues
from facetell.io import decode

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"


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


def test_a_compressed_workflow_over_a_megabyte_is_read_not_refused():
    """Pillow refuses a compressed text chunk that inflates past 1 MB, which lost the picture
    and the very clue that it was generated."""
    info = PngInfo()
    workflow = {"nodes": [{"type": "KSampler", "notes": "x" * 3_000_000}]}
    info.add_text("workflow", json.dumps(workflow), zip=True)
    buffer = io.BytesIO()
    smooth_photo(1, 64).save(buffer, "PNG", pnginfo=info)
    report = clues_of(buffer.getvalue())
    assert report["declared_ai"] and "workflow" in by_key(report)


def test_real_sized_generator_text_is_judged_whole_not_on_the_500_characters_shown():
    """A ComfyUI graph is kilobytes of JSON and AUTOMATIC1111 writes "Steps:" after a prompt
    that is often long: cut to 500 characters first, neither declared anything."""
    prompt = {
        str(node): {"class_type": "CLIPTextEncode", "inputs": {"text": "a portrait photo " * 20}}
        for node in range(8)
    }
    parameters = "a portrait photo of a woman, " * 30 + "\nSteps: 30, Sampler: Euler a, Seed: 42"
    report = clues_of(png_with_text(prompt=json.dumps(prompt), parameters=parameters))
    keys = by_key(report)
    assert keys["prompt"]["declares_ai"] and keys["parameters"]["declares_ai"]
    assert len(keys["prompt"]["value"]) == 500  # still shown cut short


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_automatic1111_parameters_in_an_exif_user_comment_declare_ai(fmt):
    """In JPEG and WebP, AUTOMATIC1111 and its forks write the parameters as an EXIF
    UserComment in UTF-16; a comment that merely mentions a seed declares nothing."""

    def with_comment(comment: bytes) -> bytes:
        exif = Image.Exif()
        exif.get_ifd(0x8769)[0x9286] = comment
        buffer = io.BytesIO()
        smooth_photo(1, 64).save(buffer, fmt, exif=exif.tobytes())
        return buffer.getvalue()

    parameters = "a portrait photo, " * 40 + "\nSteps: 20, Sampler: DPM++ 2M, CFG scale: 7, Seed: 1"
    generated = by_key(clues_of(with_comment(b"UNICODE\0" + parameters.encode("utf-16-be"))))
    assert generated["user_comment"]["declares_ai"]
    assert generated["user_comment"]["value"].startswith("a portrait photo, a portrait")
    little_endian = b"UNICODE\0" + parameters.encode("utf-16-le")
    assert by_key(clues_of(with_comment(little_endian)))["user_comment"]["declares_ai"]
    holiday = by_key(clues_of(with_comment(b"ASCII\0\0\0Seed of doubt, steps to the sea")))
    assert holiday["user_comment"] == {
        "kind": "exif", "key": "user_comment", "value": "Seed of doubt, steps to the sea",
        "declares_ai": False,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("parameters", "declares"),
    [
        ('{"sui_image_params": {"prompt": "a man", "seed": 5, "steps": 20}}', True),  # SwarmUI
        ('{"Prompt": "a man", "Steps": 30, "Sampler": "dpmpp_2m"}', True),  # Fooocus
        ("exported from my photo library", False),
    ],
)
def test_generation_settings_in_a_parameters_text_declare_ai(parameters, declares):
    assert (
        by_key(clues_of(png_with_text(parameters=parameters)))
        .get("parameters", {})
        .get("declares_ai", False)
        is declares
    )


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


def test_jpeg_and_gif_comments_are_reported_under_their_own_container():
    buffer = io.BytesIO()
    smooth_photo(6, 64).save(buffer, "JPEG", comment="Made with Midjourney v6")
    report = clues_of(buffer.getvalue())
    assert by_key(report)["comment"]["kind"] == "jpeg_comment"
    assert report["declared_ai"]
    buffer = io.BytesIO()
    smooth_photo(6, 64).save(buffer, "GIF", comment="File source: a family album scan")
    report = clues_of(buffer.getvalue())
    assert by_key(report)["comment"]["kind"] == "gif_comment"
    assert not report["declared_ai"]
    assert {c["kind"] for c in clues_of(png_with_text(Software="GIMP"))["clues"]} == {"png_text"}


def test_a_file_without_metadata_reports_no_clues():
    for fmt in ("PNG", "JPEG", "WEBP"):
        buffer = io.BytesIO()
        smooth_photo(5, 64).save(buffer, fmt)
        report = clues_of(buffer.getvalue())
        assert report["clues"] == [] and report["declared_ai"] is False, fmt


@pytest.fixture(scope="module")
def c2pa_signer():
    """A Content Credentials signer with a throwaway CA, as a generator's would be (untrusted)."""
    from c2pa import C2paSignerInfo, C2paSigningAlg, Signer
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def certificate(subject, issuer, key, issuer_key, *, ca: bool) -> x509.Certificate:
        usage = dict.fromkeys(
            ["content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
             "encipher_only", "decipher_only"], False
        )  # fmt: skip
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(digital_signature=not ca, key_cert_sign=ca, crl_sign=ca, **usage),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        )
        if not ca:  # C2PA wants an end-entity certificate with a signing purpose
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False
            ).add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
            )
        return builder.sign(issuer_key, hashes.SHA256())

    root_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    root = certificate("test root", "test root", root_key, root_key, ca=True)
    leaf = certificate("test generator", "test root", key, root_key, ca=False)
    chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (leaf, root))
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return Signer.from_info(C2paSignerInfo(C2paSigningAlg.ES256, chain, private, None))


def with_credentials(signer, image_bytes: bytes, mime: str, source_type: str) -> bytes:
    from c2pa import Builder

    manifest = {
        "claim_generator_info": [{"name": "test-generator", "version": "1.0"}],
        "assertions": [
            {
                "label": "c2pa.actions",
                "data": {"actions": [{"action": "c2pa.created", "digitalSourceType": source_type}]},
            }
        ],
    }
    signed = io.BytesIO()
    Builder(json.dumps(manifest)).sign(signer, mime, io.BytesIO(image_bytes), signed)
    return signed.getvalue()


def photo_as(fmt: str, tmp_path) -> bytes:
    photo = smooth_photo(5, 128)
    if fmt == "HEIF":
        return heic(photo, tmp_path)
    buffer = io.BytesIO()
    photo.save(buffer, fmt)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("fmt", "mime"),
    [("JPEG", "image/jpeg"), ("PNG", "image/png"), ("HEIF", "image/heic"), ("AVIF", "image/avif")],
)
def test_content_credentials_declaring_ai_are_read_in_every_format(
    c2pa_signer, tmp_path, fmt, mime
):
    signed = with_credentials(
        c2pa_signer, photo_as(fmt, tmp_path), mime, IPTC + "trainedAlgorithmicMedia"
    )
    report = clues_of(signed)
    assert report["format"] == fmt and report["declared_ai"]
    clues = by_key(report)
    assert clues["claim_generator"]["value"] == "test-generator"
    assert clues["digital_source_type"]["value"] == "trainedAlgorithmicMedia"
    assert clues["validation"]["value"] == "signingCredential.untrusted"  # a throwaway CA


def test_content_credentials_of_a_camera_capture_do_not_declare_ai(c2pa_signer, tmp_path):
    signed = with_credentials(
        c2pa_signer, photo_as("JPEG", tmp_path), "image/jpeg", IPTC + "digitalCapture"
    )
    report = clues_of(signed)
    assert not report["declared_ai"]
    assert by_key(report)["claim_generator"]["value"] == "test-generator"
    # what the camera says it is, reported, and not as AI
    assert by_key(report)["digital_source_type"] == {
        "kind": "c2pa", "key": "digital_source_type", "value": "digitalCapture",
        "declares_ai": False,
    }  # fmt: skip


def test_generative_fill_declares_ai_in_content_credentials_and_xmp(c2pa_signer, tmp_path):
    term = "compositeWithTrainedAlgorithmicMedia"  # a photo with a generated part
    signed = with_credentials(c2pa_signer, photo_as("JPEG", tmp_path), "image/jpeg", IPTC + term)
    xmp = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description><Iptc4xmpExt:'
        b"DigitalSourceType>" + IPTC.encode() + term.encode() + b"</Iptc4xmpExt:DigitalSourceType>"
        b"\n</rdf:Description></rdf:RDF></x:xmpmeta>"
    )
    buffer = io.BytesIO()
    smooth_photo(2, 64).save(buffer, "JPEG", xmp=xmp)
    for report, kind in ((clues_of(signed), "c2pa"), (clues_of(buffer.getvalue()), "xmp")):
        assert report["declared_ai"]
        found = [c for c in report["clues"] if c["key"] == "digital_source_type"]
        assert found == [
            {"kind": kind, "key": "digital_source_type", "value": term, "declares_ai": True}
        ]


def test_pixels_changed_after_signing_show_in_the_validation_clue(c2pa_signer, tmp_path):
    signed = bytearray(
        with_credentials(
            c2pa_signer, photo_as("PNG", tmp_path), "image/png", IPTC + "digitalCapture"
        )
    )
    signed[-200] ^= 0xFF  # a byte of the last image-data chunk, inside the signed hash range
    report = clues_of(bytes(signed))
    assert "assertion.dataHash.mismatch" in by_key(report)["validation"]["value"]

"""Metadata clues: what the file says about where it came from, reported beside the verdict.

Clues never change the model's score. A declared-AI clue (a generator's PNG text, an IPTC
DigitalSourceType of trainedAlgorithmicMedia, a C2PA assertion) is shown prominently because
it is strong evidence, but stripping metadata is trivial, so its absence proves nothing.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import asdict, dataclass
from typing import Any

from facetell.io import DecodedImage

# IPTC NewsCodes digital source types that say a model or an algorithm made (part of) the
# picture; the others (digitalCapture, computationalCapture, humanEdits, ...) are reported as
# plain clues. compositeWithTrainedAlgorithmicMedia is what generative fill writes.
AI_SOURCE_TYPES = frozenset(
    {
        "trainedAlgorithmicMedia",
        "compositeWithTrainedAlgorithmicMedia",
        "compositeSynthetic",
        "algorithmicMedia",
    }
)
# Generators by names nothing else goes by, as whole words: descriptions are free text, where
# "imagen" is Spanish for image, "Leonardo" a painter, "runway" a catwalk and "Kendall E." a
# photographer, and a false "declares AI" would be shown as strong evidence.
GENERATOR_SOFTWARE = re.compile(
    r"\b(?:stable.?diffusion|automatic1111|comfyui|midjourney|dall.?e|firefly|novelai|invokeai|"
    r"fooocus|flux\.1|flux[ -](?:dev|schnell|pro)|google imagen|imagen [2-4]|leonardo\.ai|"
    r"dreamstudio|sdxl|stylegan|runwayml)",
    re.IGNORECASE,
)
# AUTOMATIC1111's parameters after the prompt, "Steps: 20, Sampler: …, Seed: 42, …": in an
# EXIF comment, which anyone may write, both numbers are asked for, not a word like "Seed"
A1111_PARAMETERS = re.compile(r"\bSteps: \d+,.*\bSeed: \d+", re.DOTALL)
# a setting that only image generation has, as AUTOMATIC1111 ("Steps: 30"), Fooocus and
# SwarmUI (JSON, "seed": 42) write them in a "parameters" text
_GENERATION_SETTING = re.compile(r"\b(steps|sampler|seed)\b", re.IGNORECASE)
_SOURCE_TYPE = re.compile(
    r"DigitalSourceType[\"'=>:\s]*(?:rdf:resource=[\"']?)?([a-z][^\"'<>\s]*)", re.IGNORECASE
)
_EXIF_TAGS = {0x010F: "make", 0x0110: "model", 0x0131: "software", 0x0132: "datetime"}
_EXIF_IFD = {0x9003: "datetime_original", 0xA434: "lens_model"}
_MIME = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "TIFF": "image/tiff",
    "GIF": "image/gif",
    "HEIF": "image/heic",
    "AVIF": "image/avif",
}


@dataclass(frozen=True)
class Clue:
    """One piece of provenance evidence; `declares_ai` marks the ones that say "generated"."""

    kind: str
    key: str
    value: str
    declares_ai: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _text(value: Any, limit: int | None = 500) -> str:
    """A metadata value as text, cut to `limit` characters (None: whole)."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    text = str(value).strip().replace("\x00", "")
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


def exif_clues(decoded: DecodedImage) -> list[Clue]:
    exif = decoded.exif
    if not exif:
        return []
    clues = []
    for tag, key in _EXIF_TAGS.items():
        if exif.get(tag):
            value = _text(exif[tag])
            ai = key == "software" and bool(GENERATOR_SOFTWARE.search(value))
            clues.append(Clue("exif", key, value, declares_ai=ai))
    try:
        sub_ifd = exif.get_ifd(0x8769)
    except Exception:  # a damaged sub-IFD must not cost the other clues
        sub_ifd = {}
    for tag, key in _EXIF_IFD.items():
        if sub_ifd.get(tag):
            clues.append(Clue("exif", key, _text(sub_ifd[tag])))
    description = exif.get(0x010E)
    if description and GENERATOR_SOFTWARE.search(_text(description, limit=None)):
        clues.append(Clue("exif", "image_description", _text(description), declares_ai=True))
    comment = _user_comment(sub_ifd.get(0x9286))
    if comment:  # AUTOMATIC1111 and its forks write their parameters here in JPEG and WebP
        ai = bool(A1111_PARAMETERS.search(comment) or GENERATOR_SOFTWARE.search(comment))
        clues.append(Clue("exif", "user_comment", _text(comment), declares_ai=ai))
    return clues


def _user_comment(raw: Any) -> str:
    """EXIF UserComment as text: an 8-byte character code, then the comment. UNICODE is
    UTF-16 of either byte order (writers differ), so the reading with more ASCII wins."""
    if not isinstance(raw, bytes):
        return _text(raw or "", limit=None)
    code, body = raw[:8], raw[8:]
    if code.startswith(b"UNICODE"):
        readings = [body.decode(order, errors="replace") for order in ("utf-16-be", "utf-16-le")]
        text = max(readings, key=lambda reading: sum(c.isascii() for c in reading))
    else:  # ASCII, or an undefined code whose text is usually UTF-8
        text = body.decode("utf-8", errors="replace")
    return _text(text, limit=None)


def text_chunk_clues(decoded: DecodedImage) -> list[Clue]:
    """PNG tEXt/iTXt/zTXt chunks and JPEG/GIF comments written by image generators; the kind
    names the container, so a JPEG comment is not reported as a PNG chunk."""
    container = (decoded.format or "file").lower()
    kind = "png_text" if container == "png" else f"{container}_comment"
    clues = []
    for key, value in decoded.info.items():
        if not isinstance(key, str) or key in ("exif", "icc_profile", "xmp", "XML:com.adobe.xmp"):
            continue
        if not isinstance(value, str | bytes) or key in ("dpi", "transparency"):
            continue
        # judged on the whole text, shown cut short: AUTOMATIC1111 writes "Steps:" after the
        # prompt and a ComfyUI graph is JSON only whole, both usually past the 500 shown
        whole, text = _text(value, limit=None), _text(value)
        lowered = key.lower()
        if lowered == "parameters" and _GENERATION_SETTING.search(whole):
            clues.append(Clue(kind, "parameters", text, declares_ai=True))
        elif lowered in ("prompt", "workflow") and _looks_like_comfy(whole):
            clues.append(Clue(kind, lowered, text, declares_ai=True))
        elif lowered in ("software", "comment", "description", "source", "generator"):
            ai = bool(GENERATOR_SOFTWARE.search(whole))
            clues.append(Clue(kind, lowered, text, declares_ai=ai))
        elif lowered in ("dream", "sd-metadata", "invokeai_metadata", "negative_prompt"):
            clues.append(Clue(kind, lowered, text, declares_ai=True))
    return clues


def _looks_like_comfy(text: str) -> bool:
    try:
        parsed = json.loads(text)
    except ValueError:
        return False
    return isinstance(parsed, dict) and (
        "nodes" in parsed or any(isinstance(v, dict) and "class_type" in v for v in parsed.values())
    )


def source_type_clues(kind: str, text: str) -> list[Clue]:
    """Each distinct IPTC DigitalSourceType named in `text`, by its term (the URL's last part)."""
    terms = dict.fromkeys(
        match.group(1).rsplit("/", 1)[-1] for match in _SOURCE_TYPE.finditer(text)
    )
    return [Clue(kind, "digital_source_type", t, declares_ai=t in AI_SOURCE_TYPES) for t in terms]


def xmp_clues(decoded: DecodedImage) -> list[Clue]:
    """IPTC DigitalSourceType and creator tool from XMP packets."""
    packet = decoded.info.get("xmp") or decoded.info.get("XML:com.adobe.xmp")
    if not packet:
        return []
    text = _text(packet, limit=1_000_000)
    clues = source_type_clues("xmp", text)
    tool = re.search(r"CreatorTool[\"'=>\s]*[\"']?([^\"'<]+)", text)
    if tool:
        value = tool.group(1).strip()
        clues.append(Clue("xmp", "creator_tool", value, bool(GENERATOR_SOFTWARE.search(value))))
    return clues


def _claim_generator(manifest: dict[str, Any]) -> str:
    return _text(
        manifest.get("claim_generator")
        or ", ".join(str(info.get("name", "")) for info in manifest.get("claim_generator_info", []))
    )


def _ingredient_clues(
    manifests: dict[str, Any], manifest: dict[str, Any], seen: frozenset[str] = frozenset()
) -> list[Clue]:
    """What the earlier versions an image was made from say of themselves: a generated image
    opened and re-saved in an editor carries the editor's manifest, and the generator's only as
    an ingredient's (Content Credentials' history). Each is named by its title."""
    clues = []
    for ingredient in manifest.get("ingredients", []):
        label = ingredient.get("active_manifest", "")
        earlier = manifests.get(label)
        if not earlier or label in seen:
            continue
        title = _text(ingredient.get("title") or "untitled", limit=100)
        generator = _claim_generator(earlier)
        clues.append(Clue("c2pa", "ingredient_claim_generator", f"{generator} ({title})"))
        for clue in source_type_clues("c2pa", json.dumps(earlier.get("assertions", []))):
            key, value = "ingredient_digital_source_type", f"{clue.value} ({title})"
            clues.append(Clue("c2pa", key, value, clue.declares_ai))
        clues += _ingredient_clues(manifests, earlier, seen | {label})
    return clues


def c2pa_clues(decoded: DecodedImage) -> list[Clue]:
    """Content Credentials: the claim generator and any AI-generation assertion."""
    if decoded.data is None or decoded.format not in _MIME:
        return []
    try:
        from c2pa import Reader
    except ImportError:
        return []
    try:
        reader = Reader(_MIME[decoded.format], io.BytesIO(decoded.data))
        store = json.loads(reader.json())
    except Exception:  # no manifest, or one the SDK rejects: not a clue either way
        return []
    manifests = store.get("manifests", {})
    manifest = manifests.get(store.get("active_manifest", ""), {})
    if not manifest:
        return []
    clues = [Clue("c2pa", "claim_generator", _claim_generator(manifest))]
    clues += source_type_clues("c2pa", json.dumps(manifest.get("assertions", [])))
    clues += _ingredient_clues(manifests, manifest)
    validation = store.get("validation_status") or []
    if validation:
        codes = ", ".join(sorted({str(v.get("code")) for v in validation}))
        clues.append(Clue("c2pa", "validation", codes))
    return clues


def metadata_clues(decoded: DecodedImage) -> dict[str, Any]:
    """Every clue in the file, and whether any of them declares the image AI-generated."""
    clues = [
        *exif_clues(decoded),
        *text_chunk_clues(decoded),
        *xmp_clues(decoded),
        *c2pa_clues(decoded),
    ]
    return {
        "declared_ai": any(c.declares_ai for c in clues),
        "clues": [c.to_dict() for c in clues],
        "format": decoded.format,
        "width": decoded.size[0],
        "height": decoded.size[1],
        "jpeg_quality": decoded.jpeg_quality,
        "frames": decoded.n_frames,  # an animation is judged by its first frame
    }

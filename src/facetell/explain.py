"""Explanations: where the model looked, drawn back onto the photo. Never proof.

For convolutional models this is Grad-CAM (the `grad-cam` package) on each face crop toward
the "ai" logit; for the spectrum model, which has no spatial layer, it is the crop's
log-magnitude spectrum, the thing that model actually reads. Heat maps are pasted back into
each face's box on the full image, with the box and verdict drawn over it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import matplotlib
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from pytorch_grad_cam import GradCAM
from torch import nn

from facetell.faces import crop_square
from facetell.inference import Detector, Result, stated_percent
from facetell.io import ImageSource, NamedImage
from facetell.models.spectrum import SpectrumDetector

# the longest that fits the overlay's width: a 128-px face had read "where the model looke"
CAPTIONS = ("where the model looked (an aid to judgement, not proof)", "where the model looked")
# An overlay is a photo: as JPEG 90 without chroma subsampling (boxes and captions keep their
# colour) a 1024-px one encodes in 4 ms to 238 KB; as PNG it took 291 ms and 1.1 MB (session 52).
OVERLAY_JPEG = {"quality": 90, "subsampling": 0}
CAM_BATCH = 4
# Grad-CAM hooks the model's layers, and each hook sees every pass through them: two
# explanations at once on one model read each other's activations (the server's two slots
# crashed on mismatched shapes, session 52), so one runs at a time per process.
_CAM_LOCK = threading.Lock()
_VERDICT_COLOURS = {"ai": (220, 40, 40), "real": (30, 160, 70), "uncertain": (230, 160, 0)}


@dataclass(frozen=True)
class Explanation:
    result: Result
    overlay: Image.Image | None  # the image (at most `max_side` px) with maps, boxes, verdicts
    heatmaps: tuple[np.ndarray, ...]  # per face, (size, size) in [0, 1], crop coordinates
    method: str
    image: Image.Image | None = None  # the upright photo as judged (None: unreadable)


class GroupedGradCAM(GradCAM):
    """Grad-CAM over layers that come in groups (ensemble members reading different crops):
    each group's map is the mean of its layers' maps, as `GradCAM` takes the mean of all its
    layers, so one pass answers every group. Returns (groups, B, H, W)."""

    def __init__(self, model: nn.Module, groups: list[list[nn.Module]]) -> None:
        super().__init__(model=model, target_layers=[layer for group in groups for layer in group])
        self.group_sizes = [len(group) for group in groups]

    def forward(self, *args: Any, **kwargs: Any) -> np.ndarray:
        """`GradCAM.forward`, then the graph its backward pass retained (held by `outputs`) is
        let go, instead of living on through the next chunk's pass."""
        try:
            return super().forward(*args, **kwargs)
        finally:
            self.outputs = None

    def aggregate_multi_layers(self, cam_per_target_layer: list[np.ndarray]) -> np.ndarray:
        aggregate, ends = super().aggregate_multi_layers, np.cumsum(self.group_sizes)
        spans = zip(ends - self.group_sizes, ends, strict=True)
        return np.stack([aggregate(cam_per_target_layer[start:end]) for start, end in spans])


def cam_layers(model: nn.Module) -> list[nn.Module]:
    """The spatial layers Grad-CAM reads: each model's last one before global pooling.

    An ensemble contributes one per member with spatial features, so its map shows the evidence
    for the ensemble's own output; a spectrum model has none.
    """
    members = getattr(model, "members", None)
    if isinstance(members, nn.ModuleList):
        return [layer for member in members for layer in cam_layers(member)]
    for name in ("features", "backbone", "stage2"):
        layer = getattr(model, name, None)
        if isinstance(layer, nn.Sequential):
            return [layer[-1]]
        if isinstance(layer, nn.Module):
            return [layer]
    return []


def cam_layers_by_input(model: nn.Module, inputs: int) -> list[list[nn.Module]]:
    """`cam_layers` split by the crop each layer sees: an ensemble whose members read different
    crops gives one group per crop, since their maps live in different squares of the photo."""
    member_inputs = getattr(model, "inputs", None)
    if member_inputs is None:
        return [cam_layers(model)]
    groups: list[list[nn.Module]] = [[] for _ in range(inputs)]
    for member, index in zip(model.members, member_inputs, strict=True):
        groups[index].extend(cam_layers(member))
    return groups


@contextmanager
def gradients_only_from(model: nn.Module, layers: list[nn.Module]) -> Iterator[None]:
    """Let only `layers` (and what follows them) build the backward graph, for as long as the
    context lasts; each needs parameters of its own, or its output would need no gradient.

    Grad-CAM needs the gradient at its layers' outputs, nothing below them. With every
    parameter wanting a gradient, the backward pass ran down to the first convolution and
    forward kept every activation for it.
    """
    wanted = [parameter.requires_grad for parameter in model.parameters()]
    model.requires_grad_(False)
    for layer in layers:
        layer.requires_grad_(True)
    try:
        yield
    finally:
        model.zero_grad(set_to_none=True)
        for parameter, flag in zip(model.parameters(), wanted, strict=True):
            parameter.requires_grad_(flag)


def grad_cam(
    model: nn.Module, batch: torch.Tensor, groups: list[list[nn.Module]]
) -> list[np.ndarray | None]:
    """Per group of layers (`cam_layers_by_input`), (B, H, W) maps in [0, 1] of the evidence
    for "ai"; None for a group with no spatial layer.

    Every group comes from one forward and backward pass (`GroupedGradCAM`); one pass per group
    cost the shipped two-crop ensemble twice the time for the same maps. Faces go through
    `CAM_BATCH` at a time, and backpropagation reaches only the layers Grad-CAM reads
    (`gradients_only_from`): a photo of 64 faces peaks at 1.83 GB, 0.58 GB of it predict's own
    (docs/benchmarks.md, "Photos of many faces").
    """
    spatial = [layers for layers in groups if layers]
    assert spatial, f"{type(model).__name__} has no spatial layer for Grad-CAM"
    layers = [layer for group in spatial for layer in group]
    parts = []
    with (
        _CAM_LOCK,
        gradients_only_from(model, layers),
        torch.enable_grad(),
        GroupedGradCAM(model, spatial) as cam,
    ):
        for part in torch.split(batch, CAM_BATCH):
            parts.append(cam(input_tensor=part, targets=[lambda output: output] * len(part)))
    maps = iter(np.concatenate(parts, axis=1).astype(np.float32))
    return [next(maps) if layers else None for layers in groups]


def spectrum_view(batch: torch.Tensor) -> np.ndarray:
    """Centred log-magnitude spectra scaled to [0, 1]: what the spectrum model reads."""
    gray = batch.mean(dim=1)
    spectrum = torch.fft.fftshift(torch.fft.fft2(gray, norm="ortho"), dim=(-2, -1))
    log_magnitude = torch.log1p(spectrum.abs()).numpy()
    low = log_magnitude.min(axis=(1, 2), keepdims=True)
    high = log_magnitude.max(axis=(1, 2), keepdims=True)
    return (log_magnitude - low) / np.maximum(high - low, 1e-6)


def _colourise(heatmap: np.ndarray) -> np.ndarray:
    return (matplotlib.colormaps["jet"](heatmap)[..., :3] * 255).astype(np.uint8)


def _blend(photo: Image.Image, total: np.ndarray, count: np.ndarray) -> Image.Image:
    """The photo with the mean map blended in where any face's crop covers it. Only the
    rectangle around those crops is coloured and blended: on a 1024-px photo, 32 ms for the
    whole photo became 3 ms for a 300-px face's crop and 10 ms for a 600-px one."""
    covered = count > 0.5
    rows, columns = np.flatnonzero(covered.any(axis=1)), np.flatnonzero(covered.any(axis=0))
    if rows.size == 0:
        return photo.copy()
    box = np.s_[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]
    pixels = np.array(photo)
    part = pixels[box].astype(np.float32)
    heat = _colourise(np.clip(total[box] / np.maximum(count[box], 1e-6), 0, 1))
    mixed = np.round(0.55 * part + 0.45 * heat.astype(np.float32))
    pixels[box] = np.where(covered[box][..., None], mixed, part).astype(np.uint8)
    return Image.fromarray(pixels)


def _paste_mean(
    total: np.ndarray, count: np.ndarray, heat: np.ndarray, left: int, top: int, weight: np.ndarray
) -> None:
    """Add a map into photo-sized sums, clipped to the photo (mirrored crops reach past)."""
    height, width = total.shape
    rows, columns = heat.shape
    x0, y0 = max(left, 0), max(top, 0)
    x1, y1 = min(left + columns, width), min(top + rows, height)
    if x0 < x1 and y0 < y1:
        inside = (slice(y0 - top, y1 - top), slice(x0 - left, x1 - left))
        total[y0:y1, x0:x1] += heat[inside] * weight[inside]
        count[y0:y1, x0:x1] += weight[inside]


def _heat_on_photo(
    heatmap: np.ndarray, left: int, top: int, side: int, angle: float
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """A crop's map turned back by the angle its crop was levelled with: map, weight (1 inside
    the crop's square, 0 outside) and the top-left corner where they go on the photo."""
    heat = Image.fromarray(heatmap).resize((max(1, side),) * 2, Image.Resampling.BILINEAR)
    weight = Image.fromarray(np.ones((heat.height, heat.width), np.float32))
    if angle:
        heat = heat.rotate(-angle, Image.Resampling.BILINEAR, expand=True)
        weight = weight.rotate(-angle, Image.Resampling.BILINEAR, expand=True)
    left -= (heat.width - side) // 2
    top -= (heat.height - side) // 2
    return np.asarray(heat, np.float32), np.asarray(weight, np.float32), left, top


def explain(
    detector: Detector,
    item: ImageSource | NamedImage,
    *,
    name: str | None = None,
    max_side: int = 2048,
    caption: bool = True,
) -> Explanation:
    """Predict, then draw each face's heat map into its crop's square on the upright image.

    Maps from crops of different recipes (an ensemble's members) are averaged where they overlap;
    `heatmaps` holds each face's map in crop coordinates of the first recipe that has maps. The
    overlay is drawn on a copy at most `max_side` px long, with text sized to it: a 24 MP photo
    drawn at full size took 16 s, 4.6 MB of PNG and captions too small to read. Without
    `caption` the overlay bears no "where the model looked" line (a page that says it once).
    """
    prepared = detector.prepare(item, name)
    started = time.perf_counter()
    logits, embeddings = detector.run_model(prepared.crops)
    result = detector.finish(prepared, logits, (time.perf_counter() - started) * 1000, embeddings)
    if prepared.decoded is None:
        return Explanation(result, None, (), "none")
    image = prepared.decoded.image
    overlay = image.copy()
    overlay.thumbnail((max_side, max_side))
    scale = overlay.width / image.width
    if result.status != "ok":
        return Explanation(result, overlay, (), "none", image)
    batch = detector.bundle.normalise(
        torch.from_numpy(np.stack(prepared.crops)).permute(0, 3, 1, 2)
    )
    recipes = detector.recipes
    if isinstance(detector.model, SpectrumDetector):
        maps, method = [spectrum_view(batch)], "spectrum"
    else:
        model = detector.model
        maps = grad_cam(model, batch, cam_layers_by_input(model, len(recipes)))
        method = "grad-cam"
    width, height = overlay.size
    total = np.zeros((height, width), np.float32)
    count = np.zeros((height, width), np.float32)
    for recipe, recipe_maps in zip(recipes, maps, strict=True):
        if recipe_maps is None:
            continue
        for face, heatmap in zip(prepared.faces, recipe_maps, strict=True):
            left, top, side, angle = crop_square(face, recipe, *image.size)
            placed = _heat_on_photo(
                heatmap, round(left * scale), round(top * scale), round(side * scale), angle
            )
            heat, weight, left, top = placed
            _paste_mean(total, count, heat, left, top, weight)
    overlay = _blend(overlay, total, count)
    draw = ImageDraw.Draw(overlay)
    line = max(2, round(min(width, height) / 200))
    text_size = max(11, round(min(width, height) / 45))
    font = ImageFont.load_default(size=text_size)
    outlined = {"font": font, "stroke_width": max(1, text_size // 12), "stroke_fill": (0, 0, 0)}
    for face_result in result.faces:
        x, y, w, h = (v * scale for v in face_result.box)
        colour = _VERDICT_COLOURS[face_result.label]
        draw.rectangle((x, y, x + w, y + h), outline=colour, width=line)
        verdict = f"{face_result.label} {stated_percent(face_result.p_ai)}"
        draw.text((x, max(0, y - text_size - line)), verdict, fill=colour, **outlined)
    fitting = (c for c in CAPTIONS if draw.textlength(c, font=font) <= width - 8)
    if caption and (words := next(fitting, None)):
        draw.text((4, height - text_size - 4), words, fill=(255, 255, 255), **outlined)
    first = next(m for m in maps if m is not None)
    return Explanation(result, overlay, tuple(first), method, image)

"""`Detector`: the public inference API that the CLI, the REST API and the web page all call.

decode → faces → canonical crops → model → calibrated probability → verdict, each stage timed.
An image-level verdict is that of its most AI-like face; an image without a face is reported
as `no_face`, never guessed; a bad input is a result with `status="error"`, never an exception
that would cost the rest of a batch.
"""

from __future__ import annotations

import copy
import numbers
import os
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidGraph, InvalidProtobuf
from PIL import Image

from facetell import __version__
from facetell.bundle import (
    SHIPPED_NAME,
    Bundle,
    bundle_path,
    damaged,
    has_embedding,
    load_bundle,
    shipped_bundle_path,
)
from facetell.calibrate import Calibration
from facetell.errors import BadImage, FacetellError
from facetell.faces import (
    CropRecipe,
    Face,
    FaceDetector,
    RetinaFaceDetector,
    canonical_crop,
    reencode_around,
)
from facetell.forensics import metadata_clues
from facetell.io import (
    DEFAULT_LIMITS,
    DecodedImage,
    DecodeLimits,
    ImageSource,
    NamedImage,
    decode,
    expand_sources,
    printable_name,
    source_name,
)
from facetell.runtime import onnx_session

if TYPE_CHECKING:
    from torch import nn

Status = Literal["ok", "no_face", "error"]
# Faces judged per image: a class photo or a contact sheet of generated faces fits; the rest
# (the least face-like) are counted in `faces_found`, so a cut is never silent.
MAX_FACES = 64
# Crops per model call. ONNX Runtime keeps memory for its largest batch: 64 crops at once
# cost 1 GB more than 16 at once, at the same speed (benchmarks/crowded.py).
MODEL_BATCH = 16


def checked_threshold(threshold: object) -> float | None:
    """A P(ai) cut from 0 to 1, or None for the calibrated one: refused at once rather than
    answering every image "real" (above 1) or "ai" (below 0)."""
    if threshold is None:
        return None
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
        raise TypeError(f"threshold must be a number from 0 to 1 or None (got {threshold!r})")
    if not 0 <= threshold <= 1:  # NaN fails this too
        raise ValueError(f"threshold must be from 0 to 1, or None (got {threshold!r})")
    return float(threshold)


def checked_count(name: str, value: object) -> int:
    """A whole number of at least 1: max_faces=0 judged no face of any image."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a whole number (got {value!r})")
    if value < 1:
        raise ValueError(f"{name} must be at least 1 (got {value!r})")
    return int(value)


def default_bundle_path() -> Path:
    """$FACETELL_MODEL if set, else the bundle shipped in the repository's models/default, or
    its copy inside the installed package."""
    override = os.environ.get("FACETELL_MODEL")
    return bundle_path(override) if override else shipped_bundle_path()


RECORDED_PRECISION = 1e-4  # records state P(ai), thresholds and bands to 4 decimals


def stated_percent(p_ai: float) -> str:
    """P(ai) as every door shows it: one decimal, but never a certainty the model did not
    state, so 0.99996 is "> 99.9%" where it had read "100.0%". Read as the records state it
    (4 decimals), so that 0.57549 in memory and the 0.5755 a JSON line holds both read 57.6%."""
    p_ai = round(p_ai, 4)
    if p_ai > 0.999:
        return "> 99.9%"
    return "< 0.1%" if p_ai < 0.001 else f"{p_ai:.1%}"


@dataclass(frozen=True)
class FaceResult:
    """One face's verdict. `box` is (x, y, w, h) in the upright image's pixels."""

    box: tuple[int, int, int, int]
    det_score: float | None
    logit: float
    p_ai: float
    label: str
    landmarks: tuple[tuple[float, float], ...] = ()
    novelty: float | None = None
    familiar: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "box": list(self.box),
            "det_score": None if self.det_score is None else round(self.det_score, 4),
            "p_ai": round(self.p_ai, 4),
            "label": self.label,
            "logit": round(self.logit, 4),
            "landmarks": [[round(x, 1), round(y, 1)] for x, y in self.landmarks],
            "novelty": None if self.novelty is None else round(self.novelty, 4),
            "familiar": self.familiar,
        }

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> FaceResult:
        """The face `to_dict` wrote (rounded as it was written)."""
        x, y, w, h = record["box"]
        return cls(
            box=(x, y, w, h),
            det_score=record["det_score"],
            logit=record["logit"],
            p_ai=record["p_ai"],
            label=record["label"],
            landmarks=tuple((lx, ly) for lx, ly in record["landmarks"]),
            novelty=record["novelty"],
            familiar=record["familiar"],
        )


@dataclass(frozen=True)
class Result:
    """One input's answer; `to_dict` is the JSON record every door prints or returns.
    `familiar` is that of the face whose verdict is the image's (None: not measured)."""

    path: str
    status: Status
    label: str | None = None
    p_ai: float | None = None
    familiar: bool | None = None
    faces: tuple[FaceResult, ...] = ()
    faces_found: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    error_kind: str | None = None
    model: str = ""
    calibrated: bool = False
    threshold: float | None = None  # the cut `label` was given at, and the band around it
    uncertain_band: tuple[float, float] | None = None
    ms: float = 0.0
    speed: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "status": self.status,
            "label": self.label,
            "p_ai": None if self.p_ai is None else round(self.p_ai, 4),
            "familiar": self.familiar,
            "faces": [f.to_dict() for f in self.faces],
            "faces_found": self.faces_found,
            "metadata": self.metadata,
            "error": self.error,
            "error_kind": self.error_kind,
            "model": self.model,
            "calibrated": self.calibrated,
            "threshold": None if self.threshold is None else round(self.threshold, 4),
            "uncertain_band": None
            if self.uncertain_band is None
            else [round(edge, 4) for edge in self.uncertain_band],
            "ms": round(self.ms, 1),
            "speed": {k: round(v, 1) for k, v in self.speed.items()},
        }

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Result:
        """The result `to_dict` wrote, e.g. a JSON line of an earlier run that `predict
        --resume` continues (rounded as it was written)."""
        fields = {key: record[key] for key in cls.__dataclass_fields__ if key in record}
        if fields.get("uncertain_band") is not None:
            fields["uncertain_band"] = tuple(fields["uncertain_band"])
        return cls(**{**fields, "faces": tuple(FaceResult.from_dict(f) for f in record["faces"])})


@dataclass
class Prepared:
    """What the CPU-side stages produced for one input, before the model runs."""

    name: str
    decoded: DecodedImage | None = None
    faces: list[Face | None] = field(default_factory=list)
    faces_found: int = 0
    crops: list[np.ndarray] = field(default_factory=list)
    error: BadImage | None = None
    speed: dict[str, float] = field(default_factory=dict)


class Detector:
    """Load once, then `predict` one input, `predict_batch` many, or `stream` a huge folder."""

    def __init__(
        self,
        bundle: Bundle,
        *,
        face_detector: FaceDetector | None = None,
        detect_faces: bool = True,
        threshold: float | None = None,
        limits: DecodeLimits = DEFAULT_LIMITS,
        max_faces: int = MAX_FACES,
        batch_size: int = 16,
        small_face_jpeg: tuple[float, int] | None = None,
    ) -> None:
        """`small_face_jpeg` (width px, quality): in a photo that was not a JPEG, faces
        narrower than that width are cropped from it re-encoded as JPEG at that quality.
        Default: what the calibration's size correction was fitted with, if anything."""
        if not isinstance(detect_faces, bool | np.bool_):  # "no" would turn detection on
            raise TypeError(f"detect_faces must be True or False (got {detect_faces!r})")
        detect_faces = bool(detect_faces)
        threshold = checked_threshold(threshold)
        max_faces = checked_count("max_faces", max_faces)
        batch_size = checked_count("batch_size", batch_size)
        self.bundle = bundle
        self.calibration = Calibration.from_dict(bundle.calibration)
        correction = self.calibration.size_correction
        if small_face_jpeg is None and correction and correction.jpeg_quality is not None:
            small_face_jpeg = (correction.reference_width, correction.jpeg_quality)
        self.small_face_jpeg = small_face_jpeg
        self.detect_faces = detect_faces
        self.face_detector = face_detector or (RetinaFaceDetector() if detect_faces else None)
        self.threshold = threshold
        self.limits = limits
        self.max_faces = max_faces
        self.batch_size = batch_size
        self.recipes = tuple(
            CropRecipe(kind="face", size=recipe.size, resize=recipe.resize)
            if detect_faces and recipe.kind != "face"
            else recipe
            for recipe in bundle.recipes
        )
        try:
            self.session = onnx_session(bundle.onnx) if bundle.onnx is not None else None
        except (Fail, InvalidGraph, InvalidProtobuf) as error:  # ONNX Runtime's load errors
            raise damaged(bundle.path, "model.onnx", error) from None
        if self.session is None:
            _ = bundle.model  # built now, so damaged weights fail the load, not the first image
        # Made here, not on first use: two stream workers cutting their first crops at once
        # would each make one.
        self._crop_pool = ThreadPoolExecutor(
            max_workers=max(1, len(self.recipes) - 1), thread_name_prefix="crop"
        )

    def with_threshold(self, threshold: float | None) -> Detector:
        """The same loaded model and face detector answering with another threshold."""
        clone = copy.copy(self)
        clone.threshold = checked_threshold(threshold)
        return clone

    @property
    def cut(self) -> float:
        """The P(ai) at or above which a face is called AI: the threshold given, else the
        calibrated one."""
        return self.calibration.cut(self.threshold)

    def judges_at(self, recorded: float) -> bool:
        """Whether a cut a record states (to 4 decimals) is this detector's."""
        return abs(recorded - self.cut) <= RECORDED_PRECISION

    @property
    def band(self) -> tuple[float, float]:
        """The uncertain band in force at that cut (`Calibration.band`)."""
        return self.calibration.band(self.threshold)

    @property
    def gives_embedding(self) -> bool:
        """Whether the model also outputs the embedding the familiarity check compares."""
        if self.session is not None:
            return len(self.session.get_outputs()) > 1
        return has_embedding(self.model)

    @property
    def runtime(self) -> str:
        """What runs the classifier: ONNX Runtime (no torch import) or the torch module."""
        return "onnxruntime" if self.session is not None else "torch"

    @property
    def model(self) -> nn.Module:
        """The bundle's torch module (Grad-CAM needs it; built on first use)."""
        return self.bundle.model

    @classmethod
    def load(cls, path: str | Path | None = None, **options: Any) -> Detector:
        """Load a bundle folder or .zip; None loads $FACETELL_MODEL, else the shipped model.
        `options` are the constructor's: threshold (your cut on P(ai); None: calibrated),
        max_faces, detect_faces (False: each image is one pre-cropped face), batch_size."""
        found = bundle_path(path) if path is not None else default_bundle_path()
        # a stale FACETELL_MODEL in a shell profile is the cause a user would never guess
        from_environment = path is None and bool(os.environ.get("FACETELL_MODEL"))
        named_by = " (FACETELL_MODEL names it; unset it to use the shipped model)"
        if not found.exists():
            if from_environment:
                raise FacetellError(f"{found}: model bundle not found{named_by}")
            if path is not None:  # a path given by the caller: nothing else to try
                raise FacetellError(
                    f"{found}: model bundle not found (check the path; "
                    f"{SHIPPED_NAME!r} names the shipped model)"
                )
            raise FacetellError(
                f"{found}: model bundle not found (pass a bundle folder or .zip, set "
                "FACETELL_MODEL, or run `make model` to build the default one)"
            )
        try:
            bundle = load_bundle(found)
        except FacetellError as error:
            if from_environment:
                raise type(error)(f"{error}{named_by}") from None
            raise
        return cls(bundle, **options)

    @property
    def model_name(self) -> str:
        return self.bundle.identity

    def describe(self) -> dict[str, Any]:
        """What this detector is and how it was fitted: `GET /api/v1/model` and `facetell
        info` state the same facts."""
        bundle, remembered = self.bundle, self.bundle.training_images
        return {
            "name": bundle.name,
            "version": bundle.version,
            "identity": bundle.identity,
            "architecture": bundle.architecture,
            "runtime": self.runtime,
            "crop": bundle.crop.model_dump(),
            "extra_crops": [recipe.model_dump() for recipe in bundle.extra_crops],
            "calibrated": self.calibration.fitted,
            "calibration": self.calibration.to_dict(),
            "metrics": bundle.metrics,
            "face_detector": getattr(self.face_detector, "name", None),
            "facetell_version": __version__,
            "trained_on": None
            if remembered is None
            else {"train": len(remembered.train), "val": len(remembered.val)},
        }

    def __repr__(self) -> str:
        """What a notebook shows for a detector: which model, at which cut, finding faces how."""
        given = self.threshold is not None
        return (
            f"Detector({self.model_name!r}, threshold={self.cut:.4g} "
            f"({'given' if given else 'calibrated'}), detect_faces={self.detect_faces}, "
            f"max_faces={self.max_faces}, runtime={self.runtime!r})"
        )

    # -- stages ---------------------------------------------------------------------------------
    def prepare(self, item: ImageSource | NamedImage, name: str | None = None) -> Prepared:
        """CPU stages before the model: decode, find faces, cut crops (safe in threads)."""
        started = time.perf_counter()
        if isinstance(item, NamedImage):
            item, name = item
        label = printable_name(name) if name else source_name(item) or "<image>"
        prepared = Prepared(name=label)
        try:
            prepared.decoded = decode(item, limits=self.limits, name=label)
        except BadImage as error:
            prepared.error = error
            return prepared
        decoded_at = time.perf_counter()
        image = prepared.decoded.image
        if self.detect_faces:
            assert self.face_detector is not None
            found = self.face_detector.detect(image)  # most face-like first
            prepared.faces, prepared.faces_found = list(found[: self.max_faces]), len(found)
        else:
            prepared.faces, prepared.faces_found = [None], 1
        faces_at = time.perf_counter()
        prepared.crops = self.face_crops(prepared.decoded, prepared.faces)
        cropped_at = time.perf_counter()
        prepared.speed = {
            "decode": (decoded_at - started) * 1000,
            "faces": (faces_at - decoded_at) * 1000,
            "crop": (cropped_at - faces_at) * 1000,
        }
        return prepared

    def face_crops(self, decoded: DecodedImage, faces: list[Face | None]) -> list[np.ndarray]:
        """Every face's crops; small faces of a photo that was not a JPEG are cut from its
        JPEG re-encoding (see `small_face_jpeg`)."""
        image = reencoded = decoded.image
        small: list[Face] = []
        if self.small_face_jpeg is not None and not decoded.jpeg_compressed:
            width, quality = self.small_face_jpeg
            small = [face for face in faces if face is not None and face.box[2] < width]
            if small:
                reencoded = reencode_around(image, small, quality)
        return [self.crop(reencoded if face in small else image, face) for face in faces]

    def crop(self, image: Image.Image, face: Face | None) -> np.ndarray:
        """The model's input for one face: its crop by each recipe, stacked (H, W, 3·R).

        An ensemble's recipes are cut in parallel threads (Pillow's resampling releases the
        GIL): on a 1024² photo the two crops take 19 ms together instead of 24-27 ms in turn.
        """
        first, *others = self.recipes
        if not others:
            return np.asarray(canonical_crop(image, first, face))
        pending = [self._crop_pool.submit(canonical_crop, image, r, face) for r in others]
        crops = [canonical_crop(image, first, face), *(p.result() for p in pending)]
        return np.concatenate([np.asarray(crop) for crop in crops], axis=2)

    def logits(self, crops: list[np.ndarray]) -> np.ndarray:
        """Raw model logits for canonical uint8 crops (H, W, 3·R), as `crop` cuts them."""
        return self.run_model(crops)[0]

    def run_model(self, crops: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        """Raw logits and, when the model has one, each crop's unit embedding (for the
        familiarity check; None otherwise), `MODEL_BATCH` crops per call."""
        if not crops:
            return np.zeros(0, dtype=np.float32), None
        parts = [
            self._run_model_batch(crops[start : start + MODEL_BATCH])
            for start in range(0, len(crops), MODEL_BATCH)
        ]
        logits, embeddings = zip(*parts, strict=True)
        return np.concatenate(logits), None if embeddings[0] is None else np.concatenate(embeddings)

    def _run_model_batch(self, crops: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        batch = self.bundle.normalise_array(np.stack(crops).transpose(0, 3, 1, 2))
        if self.session is not None:
            outputs = self.session.run(None, {"image": batch})
            return outputs[0], outputs[1] if len(outputs) > 1 else None
        import torch

        with torch.no_grad():
            inputs = torch.from_numpy(batch)
            if not has_embedding(self.model):
                return self.model(inputs).numpy(), None
            logits, embeddings = self.model.logit_and_embedding(inputs)
            return logits.numpy(), embeddings.numpy()

    def novelty(self, embeddings: np.ndarray | None) -> np.ndarray | None:
        """Each face's novelty against the bundle's training-face reference (None without one)."""
        if embeddings is None or self.bundle.reference is None:
            return None
        return self.bundle.reference.novelty(embeddings)

    def finish(
        self,
        prepared: Prepared,
        logits: np.ndarray,
        model_ms: float,
        embeddings: np.ndarray | None = None,
    ) -> Result:
        """Calibrate each face's logit, check its familiarity, and assemble the result record."""
        common = {"path": prepared.name, "model": self.model_name,
                  "calibrated": self.calibration.fitted,
                  "threshold": self.cut, "uncertain_band": self.band}  # fmt: skip
        if prepared.error is not None:
            return Result(
                status="error",
                error=str(prepared.error),
                error_kind=prepared.error.kind,
                ms=sum(prepared.speed.values()),
                **common,
            )
        assert prepared.decoded is not None
        metadata = metadata_clues(prepared.decoded)
        speed = {**prepared.speed, "model": model_ms}
        if not prepared.faces:
            return Result(status="no_face", metadata=metadata, ms=sum(speed.values()),
                          speed=speed, **common)  # fmt: skip
        if not np.isfinite(logits).all():  # a broken bundle: NaN compared as "real" before
            return Result(
                status="error",
                error=f"{prepared.name}: the model gave NaN or infinity for a face, not a score "
                "(its bundle is broken: re-create it, or use the shipped model)",
                error_kind="model_output",
                metadata=metadata,
                ms=sum(speed.values()),
                speed=speed,
                **common,
            )
        width, height = prepared.decoded.size
        novelties = self.novelty(embeddings)
        familiarity = self.calibration.familiarity
        faces = []
        for index, (face, logit) in enumerate(zip(prepared.faces, logits, strict=True)):
            width_px = face.box[2] if face is not None else None
            novelty = None if novelties is None else float(novelties[index])
            p_ai = self.calibration.probability(float(logit), width_px, novelty)
            familiar = (
                None
                if novelty is None or familiarity is None
                else familiarity.familiar(novelty, width_px)
            )
            if face is None:
                box, det_score, landmarks = (0, 0, width, height), None, ()
            else:
                box = tuple(round(v) for v in face.box)
                det_score, landmarks = face.score, face.landmarks
            faces.append(
                FaceResult(
                    box=box,  # type: ignore[arg-type]
                    det_score=det_score,
                    logit=float(logit),
                    p_ai=p_ai,
                    label=self.calibration.verdict(p_ai, self.threshold),
                    landmarks=landmarks,
                    novelty=novelty,
                    familiar=familiar,
                )
            )
        top = max(faces, key=lambda f: f.p_ai)
        return Result(
            status="ok",
            label=top.label,
            p_ai=top.p_ai,
            familiar=top.familiar,
            faces=tuple(faces),
            faces_found=prepared.faces_found,
            metadata=metadata,
            ms=sum(speed.values()),
            speed=speed,
            **common,
        )

    # -- doors ----------------------------------------------------------------------------------
    def predict(self, item: ImageSource, *, name: str | None = None) -> Result:
        """Judge one path, URL, bytes, file object, PIL image, numpy array or torch tensor."""
        return self.predict_with_image(item, name=name)[0]

    def predict_with_image(
        self, item: ImageSource, *, name: str | None = None
    ) -> tuple[Result, Image.Image | None]:
        """`predict`, with the upright image it judged (None: unreadable)."""
        prepared = self.prepare(item, name)
        started = time.perf_counter()
        logits, embeddings = self.run_model(prepared.crops)
        result = self.finish(prepared, logits, (time.perf_counter() - started) * 1000, embeddings)
        return result, None if prepared.decoded is None else prepared.decoded.image

    def predict_batch(
        self, items: ImageSource | NamedImage | Iterable[ImageSource | NamedImage]
    ) -> list[Result]:
        """`stream`'s results as a list, in input order: one per image, never raising for a
        bad one (its `status` is "error")."""
        return list(self.stream(items))

    def stream(
        self,
        items: ImageSource | NamedImage | Iterable[ImageSource | NamedImage],
        *,
        workers: int = 2,
    ) -> Iterator[Result]:
        """Yield results in input order; decoding and face detection run ahead in threads
        while the model judges the previous chunk, whose faces go through it `MODEL_BATCH` at
        a time. A path to a folder (walked for image files) or a glob stands for its files."""
        for result, _ in self.stream_with_images(items, workers=workers):
            yield result

    def stream_with_images(
        self,
        items: ImageSource | NamedImage | Iterable[ImageSource | NamedImage],
        *,
        workers: int = 2,
    ) -> Iterator[tuple[Result, Image.Image | None]]:
        """`stream`, each result with the upright image it was judged on (None: unreadable),
        for doors that show the photo without decoding it twice."""
        iterator = expand_sources(items)
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            pending = [pool.submit(self.prepare, item) for item in _take(iterator, self.batch_size)]
            while pending:
                chunk = [future.result() for future in pending]
                pending = [
                    pool.submit(self.prepare, item) for item in _take(iterator, self.batch_size)
                ]
                crops = [crop for prepared in chunk for crop in prepared.crops]
                started = time.perf_counter()
                logits, embeddings = self.run_model(crops)
                per_face_ms = (time.perf_counter() - started) * 1000 / max(1, len(crops))
                offset = 0
                for prepared in chunk:
                    count = len(prepared.crops)
                    part = slice(offset, offset + count)
                    result = self.finish(
                        prepared,
                        logits[part],
                        per_face_ms * count,
                        None if embeddings is None else embeddings[part],
                    )
                    yield result, None if prepared.decoded is None else prepared.decoded.image
                    offset += count


def _take(iterator: Iterator, n: int) -> list:
    chunk = []
    for item in iterator:
        chunk.append(item)
        if len(chunk) == n:
            break
    return chunk

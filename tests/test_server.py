"""The real server on a free port: every endpoint, every bad input, the web page in Chromium."""

from __future__ import annotations

import base64
import codecs
import concurrent.futures
import contextlib
import csv
import io
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jsonschema
import numpy as np
import pytest
from PIL import Image

from conftest import (
    astronaut,
    cat,
    computed_rgb,
    contact_sheet,
    drop_from_desktop,
    gan_faces,
    heic,
    launch_chromium,
    run_cli,
)
from facetell.cli import CSV_COLUMNS

SCHEMA = json.loads((Path(__file__).parents[1] / "docs" / "predict.schema.json").read_text())
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
EXAMPLE = Path(__file__).parents[1] / "src/facetell/server/static/examples/astronaut.jpg"


def start_server(bundle: Path, tmp: Path, **env: str) -> Iterator[str]:
    """`facetell serve --port 0`: the system picks a free port and serve prints it."""
    tmp.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "facetell", "serve", "--port", "0", "--model", str(bundle)],
        env={**os.environ, "TMPDIR": str(tmp), **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    said = process.stderr.readline()  # after loading the model and binding the port
    if not said.startswith("facetell is serving on http://127.0.0.1:"):
        process.kill()
        raise RuntimeError(said + process.stderr.read())
    base = said.split()[-1]
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    else:
        process.kill()
        raise RuntimeError("server did not become ready")
    try:
        yield base
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.fixture(scope="module")
def server_tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("server-tmp")


@pytest.fixture(scope="module")
def server(untrained_bundle, server_tmp) -> Iterator[str]:
    yield from start_server(untrained_bundle, server_tmp, FACETELL_MAX_FACES="8")


@pytest.fixture(scope="module")
def guarded(untrained_bundle, tmp_path_factory) -> Iterator[str]:
    """A second server with a token, a 1 MB upload cap and one slot that hardly waits."""
    yield from start_server(
        untrained_bundle,
        tmp_path_factory.mktemp("guarded-tmp"),
        FACETELL_API_TOKEN="s3cret",
        FACETELL_MAX_UPLOAD_MB="1",
        FACETELL_MAX_CONCURRENCY="1",
        FACETELL_QUEUE_SECONDS="0.05",
    )


def jpeg(image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def assert_problem(response: httpx.Response, status: int, fragment: str) -> None:
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and fragment in body["detail"]
    assert "Traceback" not in response.text


def test_health_readiness_and_model(server, untrained_bundle):
    assert httpx.get(f"{server}/healthz").json() == {"status": "ok", "model": None}
    ready = httpx.get(f"{server}/readyz").json()
    assert ready["status"] == "ready" and ready["model"] == "test-untrained@0.1.0"
    answer = httpx.get(f"{server}/api/v1/model")
    # no browser runs an answer as another type or tells other sites which server it came from
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["referrer-policy"] == "no-referrer"
    model = answer.json()
    assert model["architecture"] == "mobilenet_v2" and model["calibrated"] is False
    assert model["trained_on"] is None  # made in memory: it trained on no files
    assert model["runtime"] == "onnxruntime"
    assert model["crop"]["kind"] == "face" and model["face_detector"] == "retinaface-mnet025"
    # the command line states the same facts of the same bundle
    assert json.loads(run_cli("info", str(untrained_bundle), "-f", "json").stdout) == model
    assert httpx.get(f"{server}/docs").status_code == 200
    paths = httpx.get(f"{server}/openapi.json").json()["paths"]
    assert "/api/v1/predict" in paths
    predict = paths["/api/v1/predict"]["post"]["parameters"]
    assert [p["name"] for p in predict] == ["explain", "threshold", "X-Filename"]
    operations = [op["operationId"] for methods in paths.values() for op in methods.values()]
    assert len(operations) == len(set(operations))  # OpenAPI asks each to be unique
    for path in ("/", "/healthz", "/readyz"):  # what uptime monitors and link checkers send
        head = httpx.head(f"{server}{path}")
        assert (head.status_code, head.content) == (200, b""), path
        assert int(head.headers["content-length"]) > 0


def test_opening_the_web_page_builds_the_heat_map_model_and_the_api_alone_never_does(
    untrained_bundle,
):
    """The page asks for a heat map with every upload: the torch model Grad-CAM runs on is
    built while its visitor picks a photo (0.49-0.67 s to the first heat map without,
    0.21-0.27 s with). A server used only through the API keeps to the ONNX model."""
    from fastapi.testclient import TestClient

    from facetell.inference import Detector
    from facetell.server.app import create_app

    for visit in (False, True):
        detector = Detector.load(untrained_bundle)
        assert detector.bundle.module is None  # predictions run on the ONNX export
        with TestClient(create_app(detector=detector)) as client:
            answer = client.post("/api/v1/predict", files={"files": ("a.jpg", jpeg(astronaut()))})
            assert answer.status_code == 200
            if visit:
                assert client.get("/").status_code == 200
                deadline = time.monotonic() + 30
                while detector.bundle.module is None and time.monotonic() < deadline:
                    time.sleep(0.05)
            assert (detector.bundle.module is not None) is visit


def test_api_docs_render_in_a_browser_with_no_request_leaving_the_server(server):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page()
        hosts = []
        page.on("request", lambda request: hosts.append(request.url.split("/")[2]))
        page.goto(f"{server}/docs")
        expect(page.locator(".opblock-summary-path", has_text="/api/v1/predict")).to_be_visible(
            timeout=30_000
        )
        assert set(hosts) == {server.split("/")[2]}
        browser.close()


def test_multipart_upload_of_several_images_gives_one_record_each(server):
    files = [
        ("files", ("astronaut.jpg", jpeg(astronaut()), "image/jpeg")),
        ("files", ("cat.jpg", jpeg(cat()), "image/jpeg")),
        ("files", ("notes.jpg", b"not a picture at all" * 10, "image/jpeg")),
        ("files", ("half.jpg", jpeg(astronaut())[:2000], "image/jpeg")),
        ("files", ("empty.png", b"", "image/png")),
    ]
    response = httpx.post(f"{server}/api/v1/predict", files=files, timeout=60)
    assert response.status_code == 200
    records = response.json()["results"]
    for record in records:
        jsonschema.validate(record, SCHEMA)
    assert [r["path"] for r in records] == [
        "astronaut.jpg",
        "cat.jpg",
        "notes.jpg",
        "half.jpg",
        "empty.png",
    ]
    assert [r["status"] for r in records] == ["ok", "no_face", "error", "error", "error"]
    assert [r["error_kind"] for r in records[2:]] == ["not_an_image", "truncated", "empty_file"]
    assert records[0]["faces"][0]["det_score"] > 0.9


def test_raw_body_and_threshold(server):
    body = jpeg(astronaut())
    headers = {"content-type": "image/jpeg", "x-filename": "raw.jpg"}
    low = httpx.post(
        f"{server}/api/v1/predict?threshold=0", content=body, headers=headers, timeout=60
    )
    high = httpx.post(
        f"{server}/api/v1/predict?threshold=1", content=body, headers=headers, timeout=60
    )
    [low_record], [high_record] = low.json()["results"], high.json()["results"]
    assert low_record["path"] == "raw.jpg"
    assert low_record["p_ai"] == high_record["p_ai"]
    # a cut of 1 calls nothing AI, and a face the band doubts stays in doubt
    assert (low_record["label"], high_record["label"]) == ("ai", "uncertain")
    assert (low_record["threshold"], high_record["threshold"]) == (0, 1)  # the cut each used
    assert_problem(
        httpx.post(f"{server}/api/v1/predict?threshold=2", content=body, headers=headers),
        422,
        "threshold",
    )


def test_explain_returns_a_heat_map_overlay(server):
    response = httpx.post(
        f"{server}/api/v1/predict?explain=true",
        files=[("files", ("a.jpg", jpeg(astronaut()), "image/jpeg"))],
        timeout=60,
    )
    [record] = response.json()["results"]
    assert record["explanation"].startswith("data:image/jpeg;base64,")
    encoded = record["explanation"].removeprefix("data:image/jpeg;base64,")
    overlay = Image.open(io.BytesIO(base64.b64decode(encoded)))
    assert (overlay.format, overlay.size) == ("JPEG", astronaut().size)
    photo = np.asarray(astronaut(), np.int16)
    changed = np.abs(np.asarray(overlay, np.int16) - photo).sum(axis=2) > 30
    assert changed.mean() > 0.05  # a map blended in, not the photo sent back


def test_explanations_asked_at_once_each_get_their_own_heat_maps(server):
    """Grad-CAM hooks the one model; two at once read each other's activations (crashed)."""
    photos = {"one": astronaut(), "eight": contact_sheet(8), "tilted": contact_sheet(5).rotate(9)}

    def overlay(name: str) -> np.ndarray:
        response = httpx.post(
            f"{server}/api/v1/predict?explain=true",
            files=[("files", (f"{name}.jpg", jpeg(photos[name]), "image/jpeg"))],
            timeout=120,
        )
        assert response.status_code == 200, response.text
        [record] = response.json()["results"]
        encoded = record["explanation"].removeprefix("data:image/jpeg;base64,")
        return np.asarray(Image.open(io.BytesIO(base64.b64decode(encoded))), np.int16)

    alone = {name: overlay(name) for name in photos}
    names = list(photos) * 8
    # as many at once as the server has slots (2): a third waited for one, and on a loaded
    # machine past the 2 s the server waits before it answers 503 busy
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        together = list(pool.map(overlay, names))
    for name, picture in zip(names, together, strict=True):
        assert picture.shape == alone[name].shape
        assert np.abs(picture - alone[name]).max() <= 2


def test_the_readmes_curl_commands_do_what_it_says(server, guarded, tmp_path):
    """The README's shell examples, run as written by curl against real servers (the guarded
    one, with its token, for the line that sends one): a reader's first contact with the API."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    [block] = [b for b in re.findall(r"```bash\n(.*?)```", readme, re.DOTALL) if "curl -F" in b]
    lines = block.replace("\\\n", " ").splitlines()
    commands = [re.sub(r"\s+#.*", "", line) for line in lines]
    astronaut().save(tmp_path / "photo.jpg", quality=90)
    cat().save(tmp_path / "cat.png")

    def run(command: str, token: str = "s3cret") -> str:
        base = guarded if "Authorization" in command else server
        command = command.replace("http://127.0.0.1:8000", base)
        env = {**os.environ, "FACETELL_API_TOKEN": token}
        done = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env,
                              capture_output=True, text=True, check=True)  # fmt: skip
        return done.stdout

    both, raw, report, with_token = commands
    results = json.loads(run(both))["results"]
    assert [(r["path"], r["status"]) for r in results] == [
        ("photo.jpg", "ok"),
        ("cat.png", "no_face"),
    ]
    [record] = json.loads(run(raw))["results"]
    assert record["path"] == "photo.jpg"
    assert record["explanation"].startswith("data:image/jpeg;base64,")
    assert record["threshold"] == 0.9 and record["faces"]
    assert run(report) == ""
    assert (tmp_path / "review.html").read_text().count("<article") == 2
    assert json.loads(run(with_token))["results"][0]["status"] == "ok"
    assert json.loads(run(with_token, token="wrong"))["status"] == 401


def test_request_level_problems_are_problem_json(server):
    predict = f"{server}/api/v1/predict"
    assert_problem(
        httpx.post(predict, content=b"", headers={"content-type": "image/png"}),
        400,
        "empty request body",
    )
    assert_problem(
        httpx.post(predict, content=b"hello", headers={"content-type": "text/plain"}),
        415,
        "unsupported content type 'text/plain'; send image/* or application/octet-stream "
        "bytes, or multipart/form-data 'files'",
    )
    # what `curl --data-binary @photo.jpg` sends without a type of its own
    form = {"content-type": "application/x-www-form-urlencoded"}
    assert_problem(
        httpx.post(predict, content=EXAMPLE.read_bytes(), headers=form),
        415,
        "unsupported content type 'application/x-www-form-urlencoded'; curl sends that for "
        "--data-binary: add -H 'Content-Type: image/jpeg', or send the file as "
        "-F files=@photo.jpg",
    )
    text_only = httpx.post(predict, files={"note": (None, "no file here")})
    assert_problem(text_only, 400, "no file in the upload")
    assert_problem(
        httpx.get(f"{server}/api/v1/nothing"),
        404,
        "nothing at /api/v1/nothing; the API's routes are listed at /docs",
    )
    wrong_method = httpx.get(predict)
    assert_problem(wrong_method, 405, "GET is not allowed on /api/v1/predict; use POST")
    assert wrong_method.headers["allow"] == "POST"


def test_report_is_the_review_page_of_the_same_verdicts(server):
    files = [
        ("files", ("astronaut.jpg", jpeg(astronaut()), "image/jpeg")),
        ("files", ("cat.jpg", jpeg(cat()), "image/jpeg")),
        ("files", ("notes.jpg", b"meeting notes", "image/jpeg")),
    ]
    records = httpx.post(f"{server}/api/v1/predict", files=files, timeout=120).json()["results"]
    response = httpx.post(f"{server}/api/v1/report?explain=true", files=files, timeout=120)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "attachment" in response.headers["content-disposition"]
    page = response.text
    assert "<script" not in page and page.count("<article") == 3
    cards = page.split("<article")[1:]
    for card, record in zip(cards, records, strict=True):
        assert record["path"] in card
    face = records[0]["faces"][0]
    assert f"{face['p_ai']:.1%}" in cards[0] and "heat map" in cards[0]  # explain=true
    assert "No face found" in cards[1] and records[2]["error"] in cards[2]
    assert_problem(httpx.post(f"{server}/api/v1/report", timeout=30), 400, "empty request body")


def test_review_of_records_is_the_report_of_the_same_images_without_judging_again(server):
    """/review builds the page /report builds, from /predict's records and half-size copies
    of the images: the cards read the same (sizes in the judged image's pixels)."""
    files = [
        ("files", ("astronaut.jpg", jpeg(astronaut()), "image/jpeg")),
        ("files", ("cat.jpg", jpeg(cat()), "image/jpeg")),
        ("files", ("notes.jpg", b"meeting notes", "image/jpeg")),
    ]
    predict = httpx.post(f"{server}/api/v1/predict?explain=true", files=files, timeout=120)
    records, parts = predict.json()["results"], []
    for index, record in enumerate(records):
        if record["status"] != "error":
            image = Image.open(io.BytesIO(files[index][1][1]))
            half = image.resize((image.width // 2, image.height // 2))
            parts.append(("picture", (str(index), jpeg(half), "image/jpeg")))
        if record["explanation"]:
            heat_map = base64.b64decode(record.pop("explanation").split(",", 1)[1])
            parts.append(("heat_map", (str(index), heat_map, "image/jpeg")))
    review = httpx.post(f"{server}/api/v1/review", data={"records": json.dumps(records)},
                        files=parts, timeout=120)  # fmt: skip
    report = httpx.post(f"{server}/api/v1/report?explain=true", files=files, timeout=120)
    assert review.status_code == report.status_code == 200
    assert "attachment" in review.headers["content-disposition"]

    def cards(page: str) -> list[str]:  # pictures aside, whose copies differ
        return re.sub(r"<img [^>]*>", "", page).split("<article")[1:]

    assert len(cards(review.text)) == 3 and cards(review.text) == cards(report.text)
    assert "512 &times; 512 px" in cards(review.text)[0]  # the judged size, not the copy's
    url, text = f"{server}/api/v1/review", {"content-type": "text/plain"}
    refusals = [
        (httpx.post(url, files={"records": (None, "[{}]")}), 400, "records: not a JSON list"),
        (httpx.post(url, data={"records": json.dumps(records)},
                    files=[("picture", ("7", jpeg(cat()), "image/jpeg"))]), 400,
         "picture '7': name each file by its record's index"),
        (httpx.post(url, content=b"x", headers=text), 415, "send multipart/form-data"),
        (httpx.post(url, files={"records": (None, json.dumps(records * 70))}), 400,
         "210 records; a report holds at most 200"),
        (httpx.post(url, files={"records": (None, json.dumps([{**records[0], "label": None}]))}),
         400, "records[0]: not a record /predict wrote (a verdict, P(ai) and faces go with"),
        (httpx.post(url, files={"records": (None, json.dumps(
            [{**records[0], "metadata": {"clues": [{"kind": 1}]}}]))}),
         400, "records[0]: not a record /predict wrote (TypeError"),
    ]  # fmt: skip
    for response, status, fragment in refusals:
        assert_problem(response, status, fragment)
    # records judged at a cut of their own are explained at it (the page had said the server's
    # calibrated one), and a page is not made of verdicts given at two cuts
    strict = httpx.post(f"{server}/api/v1/predict?threshold=0.99", files=files[:1], timeout=120)
    judged = strict.json()["results"]
    page = httpx.post(url, files={"records": (None, json.dumps(judged))}, timeout=120)
    assert "(the threshold is 99.0%)" in page.text and "(the threshold is 99.0%)" not in report.text
    mixed = httpx.post(url, files={"records": (None, json.dumps([records[0], *judged]))})
    assert_problem(mixed, 400, "records judged at 2 thresholds (0.5, 0.99); send one cut's per")


def test_a_report_takes_a_folders_worth_of_images_where_predict_takes_16(server):
    """The web page's "Report (HTML)" sends every image it judged in one upload: a dropped
    folder of 20 faces was refused ("Maximum number of files is 16")."""
    files = [("files", (f"face{i:02}.jpg", jpeg(face), "image/jpeg"))
             for i, face in enumerate(gan_faces(20, seed=4))]  # fmt: skip
    assert_problem(httpx.post(f"{server}/api/v1/predict", files=files, timeout=120), 400,
                   "Maximum number of files is 16")  # fmt: skip
    response = httpx.post(f"{server}/api/v1/report", files=files, timeout=300)
    assert response.status_code == 200
    assert response.text.count("<article") == 20


def test_uploads_never_touch_the_disk(server, server_tmp):
    big = io.BytesIO()
    astronaut().resize((2048, 2048)).save(big, "PNG")  # several MB, above starlette's 1 MB spool
    assert big.tell() > 2 * 2**20
    response = httpx.post(
        f"{server}/api/v1/predict",
        files=[("files", ("big.png", big.getvalue(), "image/png"))],
        timeout=120,
    )
    assert response.status_code == 200
    # onnxruntime keeps a 51-byte session-id file (.ses) in TMPDIR; no upload may land there
    spilled = [p for p in server_tmp.rglob("*") if p.is_file() and p.stat().st_size > 1024]
    assert spilled == []


def test_token_size_limit_and_saturation(guarded):
    predict = f"{guarded}/api/v1/predict"
    body = jpeg(astronaut())
    assert_problem(
        httpx.post(predict, content=body, headers={"content-type": "image/jpeg"}),
        401,
        "bearer token",
    )
    wrong = {"content-type": "image/jpeg", "authorization": "Bearer nope"}
    assert_problem(httpx.post(predict, content=body, headers=wrong), 401, "bearer token")
    assert httpx.get(f"{guarded}/healthz").status_code == 200  # health stays open
    auth = {"authorization": "Bearer s3cret"}
    ok = httpx.post(
        predict, content=body, headers={**auth, "content-type": "image/jpeg"}, timeout=60
    )
    assert ok.status_code == 200
    too_big = os.urandom(1_200_000)
    assert_problem(
        httpx.post(predict, content=too_big, headers={**auth, "content-type": "image/jpeg"}),
        413,
        "the limit is 1 MB (send a smaller or more compressed image, or serve with a larger",
    )
    assert '<span id="limit">1</span> MB each' in httpx.get(guarded).text  # the page says so

    def slow_request(_: int) -> httpx.Response:
        return httpx.post(
            f"{predict}?explain=true",
            content=body,
            timeout=120,
            headers={**auth, "content-type": "image/jpeg"},
        )

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(slow_request, range(8)))
    codes = sorted(r.status_code for r in responses)
    assert 200 in codes and 503 in codes
    busy = next(r for r in responses if r.status_code == 503)
    assert busy.headers["retry-after"] == "1"
    assert_problem(busy, 503, "busy")


def test_the_web_page_waits_its_turn_on_a_busy_server_instead_of_refusing_the_file(
    guarded, tmp_path
):
    """Another user's 64-megapixel upload holds the guarded server's one slot for about 2 s;
    the page's file is answered 503 + Retry-After, waits, and is judged."""
    from playwright.sync_api import expect, sync_playwright

    flat = io.BytesIO()
    Image.new("RGB", (7900, 7900), (120, 130, 140)).save(flat, "JPEG", quality=50)
    auth = {"authorization": "Bearer s3cret", "content-type": "image/jpeg"}

    def other_user() -> list[int]:
        return [
            httpx.post(f"{guarded}/api/v1/predict", content=flat.getvalue(), headers=auth,
                       timeout=60).status_code
            for _ in range(2)
        ]  # fmt: skip

    photo = tmp_path / "astronaut.jpg"
    astronaut().save(photo, quality=90)
    with sync_playwright() as playwright, concurrent.futures.ThreadPoolExecutor(1) as pool:
        browser = launch_chromium(playwright)
        page = browser.new_page()
        page.goto(guarded)
        page.fill("#token", "s3cret")
        page.click("#token-save")
        expect(page.locator("#model-info")).to_contain_text("test-untrained@0.1.0")
        answers: list[int] = []
        page.on("response", lambda r: "/api/v1/predict" in r.url and answers.append(r.status))
        busy = pool.submit(other_user)
        time.sleep(0.3)  # its upload is in and judged
        page.set_input_files("#file-input", str(photo))
        expect(page.locator(".card .box")).to_have_count(1, timeout=60_000)
        # the other user's first upload was judged; its second may meet the page's retry in
        # the slot and be refused in turn, as the server refuses anyone past its one slot
        first, second = busy.result()
        assert first == 200 and second in (200, 503)
        assert answers[0] == 503 and answers[-1] == 200
        browser.close()


def test_a_port_in_use_is_one_line_not_a_server_that_says_it_is_serving(untrained_bundle):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        refused = subprocess.run(
            [sys.executable, "-m", "facetell", "serve", "--port", str(port), "--model",
             str(untrained_bundle)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        f"error: cannot listen on 127.0.0.1:{port} (address already in use); choose another "
        "--port or stop what uses it"
    )


def test_the_server_answers_before_torch_and_grad_cam_are_imported():
    """Their import took 3.5 of the 4.4 s `facetell serve` needed before /readyz answered;
    they now load beside the running server, ready for the web page's first heat map."""
    code = (
        "import sys, facetell.cli, facetell.server.app; "
        "print(sorted({'torch', 'pytorch_grad_cam', 'facetell.explain'} & set(sys.modules)))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]"


def test_serve_names_the_address_it_listens_on_and_warns_when_open_to_the_network(
    untrained_bundle,
):
    """`--host ::` (IPv6, every address) failed with "unknown error -9"; `--port 0` said :0."""
    serve = [sys.executable, "-m", "facetell", "serve", "--model", str(untrained_bundle)]
    process = subprocess.Popen([*serve, "--host", "::", "--port", "0"], stderr=subprocess.PIPE,
                               text=True)  # fmt: skip
    try:
        said = [process.stderr.readline().strip() for _ in range(3)]
        port = int(said[0].split()[4].rsplit(":", 1)[1])
        assert said == [
            f"facetell is serving on http://127.0.0.1:{port} and on every other address of this "
            "machine",
            "note: other machines can reach it with no token; set FACETELL_API_TOKEN to ask one",
            "warning: this model is not calibrated: probabilities are raw sigmoid scores (run "
            "`facetell calibrate`)",  # as predict says it: this bundle has no calibration.json
        ]
        for base in (f"http://127.0.0.1:{port}", f"http://[::1]:{port}"):  # IPv4 and IPv6
            for _ in range(300):
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                        break
                time.sleep(0.2)
            else:
                pytest.fail(f"{base} never answered")
    finally:
        process.terminate()
        process.wait(timeout=20)
    unknown = subprocess.run([*serve, "--host", "nosuchhost.invalid"], capture_output=True,
                             text=True, timeout=120)  # fmt: skip
    assert (unknown.returncode, unknown.stderr.strip()) == (
        2,
        "error: cannot listen on nosuchhost.invalid:8000 (name or service not known); give "
        "--host an address of this machine (0.0.0.0: all of them)",
    )


def test_an_access_log_is_written_only_when_asked(untrained_bundle):
    """An operator behind a proxy had no line per request to find a client's failing calls."""
    serve = [sys.executable, "-m", "facetell", "serve", "--model", str(untrained_bundle),
             "--port", "0"]  # fmt: skip
    for extra, env, logged in (
        ([], {}, False),
        (["--access-log"], {}, True),
        ([], {"FACETELL_ACCESS_LOG": "true"}, True),
    ):
        process = subprocess.Popen([*serve, *extra], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True,
                                   env={**os.environ, **env})  # fmt: skip
        try:
            port = int(process.stderr.readline().split()[4].rsplit(":", 1)[1])
            process.stderr.readline()  # the uncalibrated bundle's warning
            base = f"http://127.0.0.1:{port}"
            for _ in range(300):
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                        break
                time.sleep(0.2)
            assert httpx.get(f"{base}/api/v1/nowhere", timeout=10).status_code == 404
        finally:
            process.terminate()
            out, rest = process.communicate(timeout=20)
        assert ('"GET /api/v1/nowhere HTTP/1.1" 404' in out) is logged, out  # as uvicorn logs
        assert "Uvicorn running" not in out + rest  # the address is said once, by facetell


def test_a_bad_setting_is_one_line_naming_its_flag_or_variable(untrained_bundle):
    """A mistyped FACETELL_ variable or flag printed pydantic's traceback."""
    serve = [sys.executable, "-m", "facetell", "serve", "--model", str(untrained_bundle)]
    cases = [
        ({"FACETELL_PORT": "abc"}, [],
         "error: FACETELL_PORT: input should be a valid integer, unable to parse string as an "
         "integer (got 'abc')"),
        ({"FACETELL_CORS_ORIGINS": "https://example.org"}, [],
         "error: FACETELL_CORS_ORIGINS: not JSON, as a list is written: "
         "'[\"https://example.org\"]'"),
        ({}, ["--max-upload-mb", "0"],
         "error: --max-upload-mb: input should be greater than 0 (got 0.0)"),
        ({}, ["--port", "80800"],  # a digit too many: socket's OverflowError, as a traceback
         "error: --port: input should be less than or equal to 65535 (got 80800)"),
        ({}, ["--max-upload-mb", "inf"],
         "error: --max-upload-mb: input should be a finite number (got inf)"),
        ({"FACETELL_PORT": "-1"}, [],
         "error: FACETELL_PORT: input should be greater than or equal to 0 (got '-1')"),
    ]  # fmt: skip
    for env, flags, said in cases:
        run = subprocess.run([*serve, *flags], env={**os.environ, **env}, capture_output=True,
                             text=True, timeout=120)  # fmt: skip
        assert (run.returncode, run.stderr.strip()) == (2, said)


def test_schemathesis_finds_no_server_error(server):
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "st"),
            "run",
            f"{server}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "25",
            "--workers",
            "1",
            "--phases",
            "examples,coverage,fuzzing",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:]


@contextlib.contextmanager
def reverse_proxy(upstream: str, prefix: str, tmp: Path) -> Iterator[str]:
    """Debian's nginx serving `upstream` under `prefix`, which it strips, as a deployment's
    proxy does (with nginx's own 1 MB cap on uploads); yields the page's address there."""
    with socket.socket() as probe:  # a free port for nginx
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    temp = " ".join(f"{kind}_temp_path {tmp}/{kind};" for kind in ("proxy", "fastcgi", "uwsgi",
                                                                      "scgi"))  # fmt: skip
    (tmp / "nginx.conf").write_text(
        f"user root; daemon off; pid {tmp}/nginx.pid; error_log {tmp}/error.log;\n"
        "events {}\n"
        f"http {{ access_log off; client_body_temp_path {tmp}/body; {temp}\n"
        f"  server {{ listen 127.0.0.1:{port};\n"
        f"    location {prefix}/ {{ proxy_pass {upstream}/; }} }} }}\n"
    )
    nginx = subprocess.Popen(["/usr/sbin/nginx", "-c", str(tmp / "nginx.conf"), "-p", str(tmp)])
    address = f"http://127.0.0.1:{port}{prefix}/"
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{address}readyz", timeout=2).status_code == 200:
                    break
            time.sleep(0.2)
        yield address
    finally:
        nginx.terminate()
        nginx.wait(timeout=20)


def test_the_page_and_the_api_docs_work_behind_a_proxy_under_a_path(untrained_bundle, tmp_path):
    """A trust-and-safety team puts facetell behind its proxy at /facetell/: the page had
    asked for /api/v1/model and /static/app.js at the site's root, which the proxy does not
    pass on, and the API docs for /openapi.json."""
    from playwright.sync_api import expect, sync_playwright

    upstream = start_server(untrained_bundle, tmp_path / "server", FACETELL_ROOT_PATH="/facetell")
    with (
        contextlib.closing(upstream),
        reverse_proxy(next(upstream), "/facetell", tmp_path) as page_address,
    ):
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            page = browser.new_page()
            asked: list[str] = []
            page.on("request", lambda request: asked.append(request.url))
            page.goto(page_address)
            expect(page.locator("#model-info")).to_contain_text("Model test-untrained@0.1.0")
            page.locator(".example", has_text="Real photo").click()
            expect(page.locator("#status")).to_contain_text("astronaut.jpg: ", timeout=60_000)
            expect(page.locator(".card .box")).to_have_count(1)
            noise = np.random.default_rng(0).integers(0, 256, (800, 800, 3), dtype=np.uint8)
            Image.fromarray(noise).save(tmp_path / "large.png")  # 1.9 MB: past nginx's cap
            page.set_input_files("#file-input", str(tmp_path / "large.png"))
            expect(page.locator(".card .verdict.error")).to_have_text(  # had read "could not
                "Too large for the server (a proxy in front of it may cap uploads)."  # be reached"
            )
            page.goto(f"{page_address}docs")
            expect(page.locator(".opblock-summary-path", has_text="/api/v1/predict")).to_be_visible(
                timeout=30_000
            )
            browser.close()
        fetched = [url for url in asked if url.startswith("http")]  # blob: URLs are the page's
        outside = [url for url in fetched if not url.startswith(page_address)]
        assert not outside, outside  # every request went through the proxy's path
        schema = httpx.get(f"{page_address}openapi.json").json()
        assert schema["servers"] == [{"url": "/facetell"}]  # "Try it out" goes through it too
        mistyped = httpx.get(f"{page_address}api/v1/predcit")  # the docs it names are the proxy's
        assert mistyped.status_code == 404
        assert mistyped.json()["detail"].endswith("the API's routes are listed at /facetell/docs")


def test_web_page_upload_verdict_and_heat_map(server):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.add_init_script(  # what the page's Content-Security-Policy would block
            "window.blocked = []; document.addEventListener('securitypolicyviolation', "
            "(event) => window.blocked.push(`${event.violatedDirective} ${event.blockedURI}`))"
        )
        answer = page.goto(server)
        assert "script-src 'self'" in answer.headers["content-security-policy"]
        expect(page.locator("#model-info")).to_contain_text("test-untrained@0.1.0")
        icon_type = page.evaluate(  # the tab's icon, not the browser's /favicon.ico 404
            "fetch(document.querySelector('link[rel=icon]').href)"
            ".then((answer) => answer.ok && answer.headers.get('content-type'))"
        )
        assert icon_type.startswith("image/svg+xml")
        page.set_input_files("#file-input", str(EXAMPLE))
        verdict = page.locator(".card .verdict").first
        expect(verdict).not_to_have_text("Judging…", timeout=60_000)
        expect(page.locator(".card .box")).to_have_count(1)
        expect(page.locator(".card .bar")).to_have_count(1)
        toggle = page.locator(".heat-toggle").first
        toggle.click()
        expect(toggle).to_have_attribute("aria-pressed", "true")
        assert page.locator(".card .photo").first.get_attribute("src").startswith("data:image/jpeg")
        page.locator("button.example", has_text="No face").click()
        expect(page.locator(".card .verdict").first).to_have_text("No face found", timeout=60_000)
        page.set_input_files(
            "#file-input", files=[{"name": "empty.jpg", "mimeType": "image/jpeg", "buffer": b""}]
        )
        unreadable = page.locator(".card").first
        expect(unreadable.locator(".verdict")).to_have_text("Could not read this file")
        expect(unreadable).to_contain_text("file is empty (0 bytes)")
        expect(unreadable.locator(".figure")).to_be_hidden()  # no broken-image icon
        expect(page.locator("#status")).to_have_text("empty.jpg: Could not read this file")
        expect(page.locator("#drop-zone")).to_contain_text("up to 20 MB each")
        oversized = {"name": "huge.jpg", "mimeType": "image/jpeg", "buffer": os.urandom(21 << 20)}
        page.set_input_files("#file-input", files=[oversized])
        expect(page.locator(".card .verdict").first).to_contain_text("the limit is 20 MB")
        with page.expect_download() as download:
            page.locator("#download").click()
        lines = Path(download.value.path()).read_text().splitlines()
        records = [json.loads(line) for line in lines]
        for record in records:
            jsonschema.validate(record, SCHEMA)
        # one line per file, in the order judged, as `facetell predict -f jsonl` writes them
        assert [r["path"] for r in records] == [EXAMPLE.name, "cat.jpg", "empty.jpg", "huge.jpg"]
        assert [r["status"] for r in records] == ["ok", "no_face", "error", "error"]
        assert [r["error_kind"] for r in records[2:]] == ["empty_file", "too_large"]
        assert records[0]["p_ai"] is not None and "explanation" not in records[0]
        # the face's bar shades the uncertain band its record was judged with
        shade = page.locator(".card .bar .band").get_attribute("style")
        left, width = (float(n) for n in re.findall(r"[\d.]+(?=%)", shade))
        low, high = records[0]["uncertain_band"]
        assert left == pytest.approx(100 * low) and width == pytest.approx(100 * (high - low))
        # the same records as CSV, in the columns of `facetell predict -f csv`
        with page.expect_download() as download:
            page.locator("#download-csv").click()
        saved = Path(download.value.path())
        assert saved.read_bytes().startswith(codecs.BOM_UTF8)  # as predict -o FILE.csv writes
        with saved.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
        assert tuple(rows[0]) == CSV_COLUMNS
        table = [dict(zip(CSV_COLUMNS, row, strict=True)) for row in rows[1:]]
        assert [(r["path"], r["status"], r["error"]) for r in table] == [
            (r["path"], r["status"], r["error"] or "") for r in records
        ]
        assert float(table[0]["p_ai"]) == records[0]["p_ai"] and table[0]["n_faces"] == "1"
        cut = [float(table[0][c]) for c in ("threshold", "uncertain_low", "uncertain_high")]
        assert cut == [records[0]["threshold"], *records[0]["uncertain_band"]]  # what "ai" meant
        assert table[3]["error"].count(",") >= 1  # a detail with commas survives quoting
        # the review page of every file the server judged; the refused one is named as left out
        with page.expect_download() as download:
            page.locator("#download-report").click()
        review = Path(download.value.path()).read_text()
        assert review.count("<article") == 3 and "huge.jpg" not in review
        assert all(f"{r['path']}</span>" in review for r in records[:3])
        expect(page.locator("#status")).to_have_text(
            "Report of 3 image(s) saved; it leaves out the 1 file(s) the server refused"
        )
        # an uploaded file's name never runs as a spreadsheet formula
        line = page.evaluate(
            "csvLine({ path: '=1+2.jpg', status: 'error', faces: [], metadata: {} })"
        )
        assert line.startswith("'=1+2.jpg,error,")
        expect(page.locator(".card .figure:visible")).to_have_count(2)
        assert page.evaluate("window.blocked") == []  # the policy costs the page nothing
        page.screenshot(path=str(ARTIFACTS / "web.png"), full_page=True)
        phone = browser.new_page(viewport={"width": 390, "height": 844})
        phone.goto(server)
        assert phone.evaluate("document.documentElement.scrollWidth") <= 390
        phone.keyboard.press("Tab")
        assert phone.evaluate("document.activeElement.id") == "drop-zone"
        browser.close()


def test_the_web_page_and_its_review_page_pass_an_accessibility_audit(server, tmp_path):
    """axe-core's WCAG rules on the page as a user leaves it (verdicts, an unreadable file, a
    file that declares AI, a heat map shown, the token box) and on the review page it
    downloads. The batch's tally counts the file that declares AI, as predict's does."""
    from axe_playwright_python.sync_playwright import Axe
    from playwright.sync_api import expect, sync_playwright

    def violations(page) -> str:
        audit = Axe().run(page)
        return "" if audit.violations_count == 0 else audit.generate_report()

    firefly = Image.Exif()
    firefly[0x0131] = "Adobe Firefly"  # Software
    astronaut().save(tmp_path / "astronaut.jpg", quality=90, exif=firefly)
    cat().save(tmp_path / "cat.png")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page()
        page.goto(server)
        page.set_input_files(
            "#file-input", [tmp_path / name for name in ("astronaut.jpg", "cat.png", "empty.jpg")]
        )
        expect(page.locator("#status")).to_contain_text(
            re.compile(r"^3 images: .*; 1 declares AI in its metadata$"), timeout=60_000
        )
        page.locator(".heat-toggle").first.click()
        page.evaluate("document.getElementById('token-box').hidden = false")
        assert violations(page) == ""
        # the system's dark theme: a dark page whose verdicts and tags are as readable
        page.emulate_media(color_scheme="dark")
        assert max(computed_rgb(page)) < 60
        assert violations(page) == ""
        # printed from the dark theme: dark ink on the white paper, without the upload controls
        page.emulate_media(media="print", color_scheme="dark")
        assert max(computed_rgb(page, "h1", "color")) < 60
        assert page.locator("#drop-zone").is_hidden()
        page.emulate_media(media="screen", color_scheme="light")
        with page.expect_download() as download:
            page.locator("#download-report").click()
        download.value.save_as(tmp_path / "review.html")
        page.goto((tmp_path / "review.html").as_uri())
        expect(page.locator("article")).to_have_count(3)  # the unreadable file too
        expect(page.locator(".counts .declares")).to_have_text("1 declares AI in its metadata")
        assert violations(page) == ""
        page.emulate_media(color_scheme="dark")  # the review page follows the theme too
        assert max(computed_rgb(page)) < 60
        assert max(computed_rgb(page, "article")) < 60
        assert violations(page) == ""
        page.emulate_media(media="print", color_scheme="dark")
        assert min(computed_rgb(page, "article")) > 200
        assert max(computed_rgb(page, "h1", "color")) < 60
        browser.close()


def test_the_pages_report_of_photos_that_together_pass_the_upload_cap_still_comes(
    guarded, tmp_path
):
    """The guarded server takes 1 MB per upload. Three 1600-px photos (each under it, all three
    over it) were refused as a report when the page sent the originals again; it now sends the
    records and 1024-px copies, and gets every card."""
    from playwright.sync_api import expect, sync_playwright

    noise = np.random.default_rng(0).normal(0, 5, (1600, 1600, 3))
    photos = []
    for index in range(3):
        pixels = np.asarray(astronaut().rotate(index * 4).resize((1600, 1600))) + noise
        photos.append(tmp_path / f"photo{index}.jpg")
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(photos[-1], quality=85)
    sizes = [photo.stat().st_size for photo in photos]
    assert max(sizes) < 2**20 < sum(sizes)
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page()
        page.goto(guarded)
        page.fill("#token", "s3cret")
        page.click("#token-save")
        page.set_input_files("#file-input", photos)
        expect(page.locator("#status")).to_contain_text("3 images: ", timeout=120_000)
        with page.expect_download(timeout=60_000) as download:
            page.locator("#download-report").click()
        download.value.save_as(tmp_path / "review.html")
        expect(page.locator("#status")).to_have_text("Report of 3 image(s) saved")
        page.goto((tmp_path / "review.html").as_uri())
        expect(page.locator("article")).to_have_count(3)
        expect(page.locator("article figcaption").first).to_have_text("1600 \u00d7 1600 px")
        assert page.locator("article td img").count() == 3  # each photo's face crop
        browser.close()


def test_a_box_tag_at_the_photos_edge_stays_on_the_photo(server, tmp_path):
    """A face in the top-right corner: its tag stuck out past the photo's right edge over the
    file name (and, at the very top, above the photo); after a window resize too."""
    from playwright.sync_api import expect, sync_playwright

    corner = Image.new("RGB", (800, 500), (200, 200, 200))
    corner.paste(astronaut().crop((160, 75, 290, 190)).resize((260, 230)), (540, 0))
    corner.save(tmp_path / "corner.jpg", quality=92)
    outside = """() => {
        const frame = document.querySelector(".frame").getBoundingClientRect();
        const tag = document.querySelector(".box span").getBoundingClientRect();
        return [frame.right - tag.right, tag.top - frame.top, tag.left - frame.left];
    }"""
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.goto(server)
        page.set_input_files("#file-input", str(tmp_path / "corner.jpg"))
        expect(page.locator(".card .box")).to_have_count(1, timeout=60_000)
        page.wait_for_timeout(300)  # the photo lays out, the tag is measured
        wide = page.evaluate(outside)
        assert re.fullmatch(r"1: \w+ \d+\.\d%", page.inner_text(".box span"))  # alone: in full
        page.set_viewport_size({"width": 700, "height": 900})
        page.wait_for_timeout(300)
        narrow = page.evaluate(outside)
        browser.close()
    assert min(wide) >= -0.5 and min(narrow) >= -0.5, (wide, narrow)


def test_a_crowded_photo_is_judged_up_to_the_servers_face_limit_and_says_so(server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    sheet = tmp_path / "sheet.jpg"
    contact_sheet(10, columns=5).save(sheet, quality=92)
    response = httpx.post(f"{server}/api/v1/predict", files={"files": sheet.open("rb")}, timeout=60)
    record = response.json()["results"][0]
    jsonschema.validate(record, SCHEMA)
    assert (len(record["faces"]), record["faces_found"]) == (8, 10)  # FACETELL_MAX_FACES=8
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page()
        page.goto(server)
        page.set_input_files("#file-input", str(sheet))
        expect(page.locator(".card .box")).to_have_count(8, timeout=60_000)
        page.wait_for_timeout(300)  # the photo lays out, the tags are measured
        tags = page.eval_on_selector_all(
            ".card .box span",
            "tags => tags.map(t => { const r = t.getBoundingClientRect(); "
            "return [t.textContent, r.left, r.top, r.right, r.bottom]; })",
        )  # full tags ("3: uncertain 52.1%") ran into each other: each is its face's number
        assert sorted(int(text) for text, *_ in tags) == list(range(1, 9))
        for i, (_, *a) in enumerate(tags):
            for _, *b in tags[i + 1 :]:
                assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]), tags
        expect(page.locator(".card .crowded")).to_have_text(
            "10 faces found; the 8 most face-like were judged (the server's FACETELL_MAX_FACES)."
        )
        # six faces are listed; two fold away (their order: the shipped-model test below)
        expect(page.locator(".card .face-label:visible")).to_have_count(6)
        page.locator(".more-faces summary").click()
        expect(page.locator(".card .face-label:visible")).to_have_count(8)
        browser.close()


def test_a_chosen_folder_is_judged_image_by_image_and_its_other_files_named(server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    folder = tmp_path / "shoot"
    (folder / "sub").mkdir(parents=True)
    astronaut().save(folder / "sub" / "portrait.jpg", quality=90)
    cat().save(folder / "a-cat.png")
    (folder / "notes.txt").write_text("not an image")
    (folder / "DSC_0001.NEF").write_bytes(b"MM\x00*" + bytes(64))  # a camera's RAW copy
    (folder / ".DS_Store").write_bytes(b"\0\0")
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page()
        page.goto(server)
        page.set_input_files("#folder-input", str(folder))
        expect(page.locator("#status")).to_contain_text(
            "; skipped 1 camera RAW file(s) (export them as JPEG): DSC_0001.NEF; skipped 1 file(s) "
            "that are not images: notes.txt",
            timeout=60_000,
        )
        expect(page.locator("#status")).to_contain_text(re.compile(r"^2 images: .*1 no face"))
        assert page.locator(".card .name").all_inner_texts() == [
            "shoot/a-cat.png",
            "shoot/sub/portrait.jpg",
        ]
        expect(page.locator(".card .box")).to_have_count(1)  # the portrait's face
        # Dragged from the desktop: Chromium's own drop of real files on disk (DevTools'
        # Input.dispatchDragEvent), so the page reads the folder through its FileSystemEntry
        # objects, in the batches of 100 Chromium's directory reader answers. A drop anywhere on
        # the page counts; the browser would otherwise open the photo in a new tab.
        loose = tmp_path / "dropped.jpg"
        astronaut().save(loose, quality=90)
        drop_from_desktop(page, "header", [loose])  # beside the zone: judged, not opened
        expect(page.locator("#status")).to_contain_text("dropped.jpg: ", timeout=60_000)
        expect(page.locator(".card .name").first).to_have_text("dropped.jpg")
        assert [tab.url for tab in page.context.pages] == [page.url]
        for n in range(120):
            (folder / "sub" / f"note{n:03}.txt").write_text("not an image")
        drop_from_desktop(page, "#drop-zone", [folder, loose])
        expect(page.locator("#status")).to_contain_text(
            "skipped 121 file(s) that are not images: notes.txt, note000.txt, note001.txt, …",
            timeout=60_000,
        )
        expect(page.locator("#status")).to_contain_text(re.compile(r"^3 images: "))
        assert page.locator(".card .name").all_inner_texts()[:3] == [  # newest first
            "dropped.jpg",
            "shoot/a-cat.png",
            "shoot/sub/portrait.jpg",
        ]
        browser.close()


def test_a_picture_dragged_from_a_web_page_is_fetched_by_the_browser_if_its_site_allows(
    server, guarded
):
    """A picture dragged from another page arrives as its address: fetched and judged when its
    site lets other pages read it; otherwise the page says so, and no tab opens on it."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page()
        page.goto(server)
        drop_from_desktop(page, "main", [], address=f"{server}/static/examples/astronaut.jpg")
        expect(page.locator("#status")).to_contain_text("astronaut.jpg: ", timeout=60_000)
        expect(page.locator(".card .box")).to_have_count(1)
        elsewhere = f"{guarded}/static/examples/astronaut.jpg"  # another origin, no CORS
        drop_from_desktop(page, "main", [], address=elsewhere)
        expect(page.locator("#status")).to_have_text(
            f"Could not fetch {elsewhere}: its site does not let other pages read it, or it is "
            "no image. Save the picture, then drop the file."
        )
        assert [tab.url for tab in page.context.pages] == [page.url]
        browser.close()


def test_a_picture_pasted_from_the_clipboard_is_judged(server):
    """Copied in another program, pasted with Ctrl+V: Chromium's own clipboard and paste."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        context = browser.new_context()
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server)
        page = context.new_page()
        page.goto(server)
        page.evaluate(
            """async () => {
                const photo = await createImageBitmap(
                    await (await fetch("/static/examples/astronaut.jpg")).blob());
                const canvas = new OffscreenCanvas(photo.width, photo.height);
                canvas.getContext("2d").drawImage(photo, 0, 0);
                const png = await canvas.convertToBlob({ type: "image/png" });
                await navigator.clipboard.write([new ClipboardItem({ "image/png": png })]);
            }"""
        )
        page.locator("header").click()
        page.keyboard.press("Control+V")
        expect(page.locator("#status")).to_contain_text("image.png: ", timeout=60_000)
        expect(page.locator(".card .box")).to_have_count(1)
        browser.close()


def test_web_page_shows_the_servers_rendering_of_a_heic_chromium_cannot_show(server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    photo = tmp_path / "astronaut.heic"
    photo.write_bytes(heic(astronaut(), tmp_path))
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.goto(server)
        page.set_input_files("#file-input", str(photo))
        expect(page.locator(".card .verdict", has_text="Judging")).to_have_count(0, timeout=60_000)
        expect(page.locator(".card .faces li")).to_have_count(1)
        shown = page.locator(".card .photo").first
        expect(shown).to_have_attribute("src", re.compile(r"^data:image/jpeg"))
        assert shown.evaluate("img => img.naturalWidth") > 0  # an image, not a broken icon
        expect(page.locator(".heat-toggle").first).to_be_hidden()
        browser.close()


def test_web_page_holds_an_animation_on_the_first_frame_it_judged(server, tmp_path):
    """The browser would play it, and the face boxes would sit on cats half of the time."""
    from playwright.sync_api import expect, sync_playwright

    cats = [cat().resize((512, 512)), cat().resize((512, 512)).rotate(90)]
    astronaut().save(tmp_path / "profile.gif", save_all=True, append_images=cats, duration=60)
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.goto(server)
        page.set_input_files("#file-input", str(tmp_path / "profile.gif"))
        expect(page.locator(".card .frames")).to_have_text(
            "Animated or multi-page: 3 frames, of which the first was judged.", timeout=60_000
        )
        shown = page.locator(".card .photo").first
        # a still PNG drawn from the file in place of the GIF, which a browser plays
        shown_type = """async () => {
          const img = document.querySelector(".card .photo");
          return (await (await fetch(img.src)).blob()).type;
        }"""
        for _ in range(50):
            if page.evaluate(shown_type) == "image/png":
                break
            page.wait_for_timeout(200)
        assert page.evaluate(shown_type) == "image/png"
        pixel = shown.evaluate(
            """(img) => {
              const canvas = document.createElement("canvas");
              canvas.width = canvas.height = 512;
              const context = canvas.getContext("2d");
              context.drawImage(img, 0, 0, 512, 512);
              return Array.from(context.getImageData(256, 150, 1, 1).data.slice(0, 3));
            }"""
        )
        browser.close()
    first = np.asarray(astronaut())[150, 256]  # the astronaut's frame, not a cat's
    assert np.abs(np.array(pixel) - first).max() <= 12


def test_web_page_flags_small_and_unfamiliar_faces_with_the_shipped_model(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    from facetell.bundle import load_bundle
    from facetell.inference import default_bundle_path

    thumbnail = tmp_path / "astronaut-thumbnail.jpg"
    astronaut().resize((96, 96)).save(thumbnail, quality=85)  # a face about 16 px wide
    greyscale = tmp_path / "astronaut-greyscale.jpg"
    astronaut().convert("L").save(greyscale, quality=90)  # every training photo is in colour
    generated = EXAMPLE.with_name("dcgan-face.jpg")
    sheet = tmp_path / "sheet.jpg"  # real and generated portraits, 8 faces
    contact_sheet(8, portraits=[astronaut().crop((140, 20, 320, 220)), *gan_faces(3, seed=4)]).save(
        sheet, quality=92
    )
    uploads = [EXAMPLE, thumbnail, greyscale, generated, sheet]
    serving = contextlib.contextmanager(start_server)(default_bundle_path(), tmp_path)
    with sync_playwright() as playwright, serving as url:
        files = [("files", (path.name, path.read_bytes(), "image/jpeg")) for path in uploads]
        records = httpx.post(f"{url}/api/v1/predict", files=files, timeout=60).json()["results"]
        remembered = load_bundle(default_bundle_path()).training_images
        assert httpx.get(f"{url}/api/v1/model").json()["trained_on"] == {
            "train": len(remembered.train), "val": len(remembered.val)
        }  # fmt: skip
        faces = [face for record in records for face in record["faces"]]
        unfamiliar = sum(face["familiar"] is False for face in faces)
        # a DCGAN face is of a training source; a black-and-white or tiny photo is unlike them
        assert 0 < unfamiliar < len(faces) and records[3]["familiar"] is True
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.goto(url)
        expect(page.locator("#model-info")).to_contain_text("calibrated.")
        page.set_input_files("#file-input", [str(path) for path in uploads])
        expect(page.locator(".card .verdict", has_text="Judging")).to_have_count(0, timeout=60_000)
        # a batch is shown in the order it was chosen in
        assert page.locator(".card .name").all_inner_texts() == [path.name for path in uploads]
        # as every door states it: the generated face's P(ai) 1.0 had read "100.0%"
        assert records[3]["p_ai"] > 0.999
        expect(page.locator(".card").nth(3).locator(".verdict")).to_contain_text("(> 99.9%)")
        expect(page.locator(".card").nth(3).locator(".faces")).to_contain_text("P(AI) > 99.9%")
        with page.expect_download() as download:
            page.locator("#download").click()
        downloaded = [
            json.loads(line) for line in Path(download.value.path()).read_text().splitlines()
        ]
        assert [(r["path"], r["label"], r["p_ai"]) for r in downloaded] == [
            (r["path"], r["label"], r["p_ai"]) for r in records
        ]
        # and ends with its tally, in the page's fixed order of outcomes
        outcomes = [r["label"] if r["status"] == "ok" else r["status"] for r in records]
        words = {"ai": "AI-generated", "uncertain": "uncertain", "real": "real"}
        tally = ", ".join(
            f"{outcomes.count(key)} {word}" for key, word in words.items() if key in outcomes
        )
        expect(page.locator("#status")).to_have_text(f"{len(uploads)} images: {tally}")
        # a crowded photo lists its faces most AI-like first, each under its box's number
        crowd = records[4]["faces"]
        assert len(crowd) == 8
        labels = page.locator(".card").nth(4).locator(".face-label").all_text_contents()
        numbers = [int(text.split()[1].rstrip(":")) for text in labels]
        assert numbers == [
            1 + i for i in sorted(range(len(crowd)), key=lambda i: -crowd[i]["p_ai"])
        ]
        assert numbers != sorted(numbers)  # not the detector's order by chance
        expect(page.locator(".card").nth(4).locator(".face-label:visible")).to_have_count(6)
        notes = page.locator(".small-face")
        expect(notes).to_have_count(1)
        expect(notes.first).to_contain_text("px wide")
        expect(page.locator(".unfamiliar")).to_have_count(unfamiliar)
        # why, once per photo with such a face, not once per face: a crowd repeated it 8 times
        photos = sum(any(face["familiar"] is False for face in r["faces"]) for r in records)
        expect(page.locator(".unfamiliar-why")).to_have_count(photos)
        expect(page.locator(".unfamiliar-why").first).to_contain_text("not a sign")
        browser.close()

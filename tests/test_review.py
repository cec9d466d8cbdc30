"""`facetell predict --report`: the review page shows every image as its record says, offline."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from PIL import Image, ImageColor, PngImagePlugin

from conftest import astronaut, cat, contact_sheet, gan_faces, launch_chromium, run_cli
from facetell.inference import Detector
from facetell.review import FACE_SIDE, PHOTO_SIDE, VERDICT_COLOURS, ReviewPage, face_thumbnail

ODD_NAME = '<i>x&y"z.jpg'  # a file name is text on the page, never markup


@pytest.fixture(scope="module")
def judged_folder(tmp_path_factory) -> tuple[Path, list[dict]]:
    """A folder of every kind of outcome, judged by the shipped model with a review page and
    JSON-lines records from the same run."""
    folder = tmp_path_factory.mktemp("review")
    photos = folder / "photos"
    photos.mkdir()
    astronaut().save(photos / "astronaut.jpg", quality=90)
    astronaut().resize((2048, 2048)).save(photos / "big.jpg", quality=90)
    astronaut().save(photos / ODD_NAME, quality=90)
    cat().save(photos / "cat.png")
    gan_faces(1, seed=5, size=256)[0].save(photos / "dcgan.png")
    portraits = [astronaut().crop((140, 20, 320, 220)), *gan_faces(2, seed=3, size=160)]
    contact_sheet(6, portraits=portraits).save(photos / "sheet.jpg", quality=90)
    text = PngImagePlugin.PngInfo()
    text.add_text("parameters", "portrait photo\nSteps: 30, Sampler: Euler a, Seed: 7")
    astronaut().save(photos / "declared.png", pnginfo=text)
    (photos / "truncated.jpg").write_bytes((photos / "astronaut.jpg").read_bytes()[:900])
    page, records = folder / "out" / "review.html", folder / "records.jsonl"
    run = run_cli("predict", str(photos), "--report", str(page), "-f", "jsonl", "-o", str(records))
    assert run.returncode == 0, run.stderr.decode()
    assert run.stderr.decode().strip().endswith(f"; review page: {page}")
    return page, [json.loads(line) for line in records.read_text().splitlines()]


def test_the_page_lists_and_shows_every_image_as_its_record_says(judged_folder):
    from playwright.sync_api import sync_playwright

    page_path, records = judged_folder
    statuses = {Path(r["path"]).name: r["status"] for r in records}
    assert statuses["cat.png"] == "no_face" and statuses["truncated.jpg"] == "error"
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page()
        fetched: list[str] = []
        page.on("request", lambda request: fetched.append(request.url[:40]))
        page.goto(page_path.as_uri())
        # nothing but the file itself and its inlined pictures: it reads offline, anywhere
        assert all(url.startswith(("file:", "data:")) for url in fetched), fetched
        assert page.locator("script").count() == 0
        broken = page.evaluate(
            "[...document.images].filter(i => !i.complete || i.naturalWidth === 0).length"
        )
        assert broken == 0

        # the summary: most AI-like first, judged images before unjudged ones
        rows = page.locator("main table").first.locator("tr").all()[1:]
        listed = [row.locator("td").nth(1).inner_text() for row in rows]
        by_path = {r["path"]: r for r in records}
        assert sorted(listed) == sorted(by_path)
        p_ai = [by_path[path]["p_ai"] for path in listed]
        scored = [p for p in p_ai if p is not None]
        assert p_ai == sorted(scored, reverse=True) + [None] * (len(p_ai) - len(scored))
        assert page.locator("i").count() == 0  # the odd name was listed as text, not markup

        # each card: its faces, most AI-like first, numbered as the record orders them
        for index, record in enumerate(records, start=1):
            card = page.locator(f"#image-{index}")
            assert record["path"] in card.locator("h3").inner_text()
            face_rows = card.locator(".facts tr").all()[1:]
            assert len(face_rows) == len(record["faces"])
            numbers = [int(row.locator("td").first.inner_text()) for row in face_rows]
            p_ai = [record["faces"][n - 1]["p_ai"] for n in numbers]
            assert p_ai == sorted(p_ai, reverse=True)
            for row, number in zip(face_rows, numbers, strict=True):
                face = record["faces"][number - 1]
                assert row.locator("td").nth(2).inner_text().lower() == face["label"]
            if record["status"] == "error":
                assert card.locator(".error").inner_text() == record["error"]
                assert card.locator("img").count() == 0
        declared = next(r for r in records if Path(r["path"]).name == "declared.png")
        card = page.locator(f"#image-{records.index(declared) + 1}")
        assert "Sampler: Euler a" in card.locator("li.declares").inner_text()
        assert "metadata declares it AI-generated" in card.locator("h3").inner_text()
        others = page.locator("article h3", has_text="metadata declares")
        assert others.count() == 1  # only the file that says so

        # on a phone, a narrow window and A4 paper (794 px less Chromium's margins) the page
        # never runs past the edge; on screen a table wider than that scrolls within itself
        for width, media in ((390, "screen"), (800, "screen"), (718, "print")):
            page.emulate_media(media=media)
            page.set_viewport_size({"width": width, "height": 900})
            past = f"ts => ts.filter(t => t.getBoundingClientRect().right > {width}).length"
            tables_past = page.eval_on_selector_all("table", past)
            assert media == "screen" or tables_past == 0
            assert page.evaluate("document.documentElement.scrollWidth") == width
            for article in page.locator("article").all():
                edge = article.bounding_box()
                right = edge["x"] + edge["width"]
                for picture in article.locator(".pictures img").all():
                    shown = picture.bounding_box()
                    assert shown["x"] + shown["width"] <= right
        browser.close()


def test_markup_that_slipped_into_a_page_would_not_run_or_load(judged_folder, tmp_path):
    """The page forbids scripts and outside requests itself, so an escaping mistake with a file
    name from whoever sent the files cannot run in a journalist's browser; its own pictures and
    styles still show."""
    from playwright.sync_api import sync_playwright

    page_path, _ = judged_folder
    slipped = (
        '<script>document.title = "ran"</script><img id="x" src="https://example.org/t.png" '
        "onerror=\"document.title = 'ran'\">"
    )
    tampered = tmp_path / "tampered.html"
    tampered.write_text(page_path.read_text().replace("<main>", f"<main>{slipped}", 1))
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page()
        page.add_init_script(
            "window.blocked = []; document.addEventListener('securitypolicyviolation', "
            "(event) => window.blocked.push(event.effectiveDirective))"
        )
        page.goto(tampered.as_uri())
        assert page.title() != "ran"
        assert {"script-src-elem", "img-src"} <= set(page.evaluate("window.blocked"))
        shown = page.evaluate(
            "[...document.images].filter(i => i.id !== 'x' && i.naturalWidth > 0).length"
        )
        assert shown == page.locator("img").count() - 1 > 0
        assert page.evaluate("getComputedStyle(document.body).margin") == "0px"  # its own style
        browser.close()


def test_a_long_run_goes_on_in_linked_files_each_whole(judged_folder, tmp_path):
    """Thousands of cards in one file load slowly or not at all; past --report-per-file they
    go on in numbered files, and the first file's summary links into them."""
    from playwright.sync_api import sync_playwright

    page_path, records = judged_folder
    first = tmp_path / "my review.html"  # a space: links must be quoted to resolve
    photos = page_path.parents[1] / "photos"
    run = run_cli("predict", str(photos), "--report", str(first), "--report-per-file", "3")
    assert run.returncode == 0, run.stderr.decode()
    assert (
        run.stderr.decode()
        .strip()
        .endswith(
            f"; review page: {first} (its cards go on in 2 more file(s), to my review-3.html)"
        )
    )
    names = ["my review.html", "my review-2.html", "my review-3.html"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)  # no .part left over
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page()
        page.goto(first.as_uri())
        links = page.locator("main table").first.locator("a")
        hrefs = links.evaluate_all("links => links.map(link => link.href)")
        assert len(hrefs) == len(records)
        for href in hrefs:  # every summary line opens the file that holds its card
            page.goto(href)
            index = int(urlsplit(href).fragment.removeprefix("image-"))
            assert records[index - 1]["path"] in page.locator(f"#image-{index} h3").inner_text()
            assert page.locator("article").count() == (3 if index <= 6 else 2)
            shown = [int(a.get_attribute("id")[6:]) for a in page.locator("article").all()]
            assert shown == list(
                range((index - 1) // 3 * 3 + 1, (index - 1) // 3 * 3 + 1 + len(shown))
            )
        for name in names:  # and every file's list of files reaches the others
            page.goto((tmp_path / name).as_uri())
            nav = page.locator("nav.parts").first
            targets = nav.locator("a").evaluate_all("links => links.map(link => link.href)")
            assert sorted(unquote(urlsplit(t).path) for t in targets) == sorted(
                str(tmp_path / other) for other in names if other != name
            )
            assert nav.locator("strong").count() == 1
        browser.close()
    summary = first.read_text()
    assert summary.count("<article") == 3 and "How to read this" in summary
    # run again in fewer files: the earlier run's later files go, a file of the user's own stays
    (tmp_path / "my review-4.html").write_text("<title>my notes</title>")
    again = run_cli("predict", str(photos), "--report", str(first), "--report-per-file", "4")
    assert again.returncode == 0, again.stderr.decode()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "my review-2.html",
        "my review-4.html",
        "my review.html",
    ]


def _inlined(html: str) -> list[Image.Image]:
    return [
        Image.open(io.BytesIO(base64.b64decode(data)))
        for data in re.findall(r'src="data:image/jpeg;base64,([^"]+)"', html)
    ]


def test_pictures_are_small_copies_with_each_face_boxed(judged_folder):
    page_path, records = judged_folder
    html = page_path.read_text()
    big = next(r for r in records if Path(r["path"]).name == "big.jpg")
    card = html.split('<article id="image-')[records.index(big) + 1]
    photo, face = _inlined(card)
    # a 2048 px photo is shown at most PHOTO_SIDE px long, its face at most FACE_SIDE
    assert photo.size == (PHOTO_SIDE, PHOTO_SIDE) and max(face.size) <= FACE_SIDE
    # its box is drawn where the record puts the face, in the verdict's colour
    x, y, w, _ = (round(v * PHOTO_SIDE / 2048) for v in big["faces"][0]["box"])
    pixels = photo.convert("RGB").load()
    edge = [pixels[x + w // 2, y + dy] for dy in (0, 1, 2)]
    wanted = ImageColor.getrgb(VERDICT_COLOURS[big["faces"][0]["label"]])
    assert any(sum(abs(a - b) for a, b in zip(p, wanted, strict=True)) < 60 for p in edge)
    # the page carries small JPEG copies, not the 2048 px original
    assert len(card) < Path(big["path"]).stat().st_size / 5


def test_a_page_saved_as_it_grows_is_whole_each_time(tmp_path):
    detector = Detector.load()
    path = tmp_path / "pages" / "review.html"  # a folder not made yet: FileNotFoundError (.part)
    outcomes = []
    with ReviewPage(detector) as page:
        judged = detector.stream_with_images([astronaut(), cat(), b"not an image"])
        for count, (result, image) in enumerate(judged, start=1):
            page.add(result, image)
            page.save(path)
            html = path.read_text()
            assert html.count("<article") == count and html.endswith("</main></body></html>\n")
            outcomes.append(result.label or result.status)
    assert [p.name for p in path.parent.iterdir()] == ["review.html"]  # no half-written copy
    low, high = detector.calibration.uncertain_band
    assert f"called uncertain from {low:.1%} to {high:.1%}, AI above that" in html
    assert outcomes[1:] == ["no_face", "error"]
    assert f"<span>1 {outcomes[0]}</span><span>1 no face</span><span>1 unreadable</span>" in html
    # faces counted where the picture was read: an unreadable file had shown "0"
    summary = html[html.index("<h2>Images, most AI-like first") : html.index("<h2>Each image")]
    faces = re.findall(r"<td class=num>([^<]*)</td><td>[^<]*</td></tr>", summary)
    assert faces[1:] == ["0", ""]


@pytest.mark.parametrize("box", [(0, 0, 0, 0), (99, 79, 0, 0), (120, 90, 10, 10), (-5, -5, 20, 20)])
def test_a_face_crop_of_any_box_is_a_picture(box):
    """Boxes at the edge, past it or 0 px wide (mirrored crops reach past the photo)."""
    crop = face_thumbnail(Image.new("RGB", (100, 80), "white"), box)
    assert min(crop.size) >= 1 and max(crop.size) <= FACE_SIDE

// facetell web page: sends images to /api/v1/predict and draws the answers. No build step.
"use strict";

const results = document.getElementById("results");
const statusLine = document.getElementById("status");
const template = document.getElementById("card-template");
const dropZone = document.getElementById("drop-zone");
const fileInput = document.getElementById("file-input");
const folderInput = document.getElementById("folder-input");
const tokenBox = document.getElementById("token-box");
const downloads = document.getElementById("downloads");
const LABELS = { ai: "AI-generated", real: "Real photograph", uncertain: "Uncertain" };
let smallFaceWidth = 0;  // faces narrower than this get a size-corrected P(AI)
let queue = Promise.resolve();
let model = { identity: "", calibrated: false };
const judged = [];  // every file's record in the order judged, for the download
const reportable = [];  // every file the server judged, with its record (heat map too), for the report
const FACES_SHOWN = 6;  // a crowded photo lists its most AI-like faces; the rest fold away
// what a folder's files must be called to be sent: the server's own list, filled into the page
const IMAGE_SUFFIXES = new Set(folderInput.dataset.suffixes.split(" "));
const RAW_SUFFIXES = new Set(folderInput.dataset.rawSuffixes.split(" "));
const suffixOf = (path) => path.slice(path.lastIndexOf(".")).toLowerCase();
const isImageName = (path) => IMAGE_SUFFIXES.has(suffixOf(path));

function authHeaders() {
  const token = sessionStorage.getItem("facetell-token");
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function loadModel() {
  const info = document.getElementById("model-info");
  const response = await fetch("api/v1/model", { headers: authHeaders() });
  if (response.status === 401) { tokenBox.hidden = false; info.textContent = "This server needs an API token."; return; }
  if (!response.ok) { info.textContent = "The model could not be loaded."; return; }
  model = await response.json();
  smallFaceWidth = model.calibration.size_correction?.reference_width ?? 0;
  info.textContent = `Model ${model.identity} (${model.architecture})` +
    (model.calibrated ? ", calibrated." : ", not calibrated: probabilities are raw scores.");
}

// one decimal, but never a certainty the model did not state (as every other door shows it)
function percent(p) {
  const stated = Math.round(p * 1e4) / 1e4;
  if (stated > 0.999) return "> 99.9%";
  return stated < 0.001 ? "< 0.1%" : `${(100 * stated).toFixed(1)}%`;
}

// the bar shades the uncertain band the record was judged with (a ?threshold= moves it)
function describeFace(face, index, band) {
  const item = document.createElement("li");
  const label = LABELS[face.label];
  item.innerHTML = `<div><strong class="face-label">Face ${index + 1}: ${label}</strong>
    <span class="muted">P(AI) ${escapeHtml(percent(face.p_ai))}</span></div>
    <div class="bar" role="meter" aria-valuemin="0" aria-valuemax="100"
      aria-valuenow="${Math.round(100 * face.p_ai)}" aria-label="Probability face ${index + 1} is AI-generated">
      <div class="band" style="left:${100 * band[0]}%;width:${100 * (band[1] - band[0])}%"></div>
      <div class="mark" style="left:${100 * face.p_ai}%"></div></div>
    <div class="scale" aria-hidden="true"><span>real</span><span>uncertain</span><span>AI</span></div>`;
  if (face.box[2] < smallFaceWidth) {
    const note = document.createElement("p");
    note.className = "muted small-face";
    note.textContent = `Small face (${face.box[2]} px wide): the model sees little detail, so its ` +
      "probability is corrected for size and the verdict is less reliable than for a large face.";
    item.append(note);
  }
  if (face.familiar === false) {  // one line per face; why, once per photo (render)
    const note = document.createElement("p");
    note.className = "muted unfamiliar";
    note.textContent = "Unfamiliar face: trust this probability less.";
    item.append(note);
  }
  return item;
}

// A tag is wider than a small box: at the photo's right or top edge it stuck out over the
// card's text. Only a tag that sticks out moves (left, or down into its box), measured again
// whenever the photo's size changes (it loads, the window resizes). In a group photo the tags
// ran into each other, unreadable: then each carries only its face's number, as in the list.
function keepTagsInside(frame) {
  const tags = [...frame.querySelectorAll(".box span")];
  for (const tag of tags) tag.textContent = tag.dataset.full;
  placeTags(frame, tags);
  if (overlapping(tags)) {
    for (const tag of tags) tag.textContent = tag.dataset.short;
    placeTags(frame, tags);
  }
}

function placeTags(frame, tags) {
  const bounds = frame.getBoundingClientRect();
  for (const tag of tags) {
    tag.style.left = tag.style.top = "";
    const placed = tag.getBoundingClientRect();
    if (placed.right > bounds.right) tag.style.left = `${-3 - (placed.right - bounds.right)}px`;
    if (placed.top < bounds.top) tag.style.top = "0";
  }
}

function overlapping(tags) {
  const areas = tags.map((tag) => tag.getBoundingClientRect());
  return areas.some((a, i) => areas.slice(i + 1).some((b) =>
    a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom));
}

function drawBoxes(card, record) {
  const layer = card.querySelector(".boxes");
  const { width, height } = record.metadata;
  layer.replaceChildren(...record.faces.map((face, i) => {
    const [x, y, w, h] = face.box;
    const box = document.createElement("div");
    box.className = `box ${face.label}`;
    Object.assign(box.style, { left: `${100 * x / width}%`, top: `${100 * y / height}%`,
      width: `${100 * w / width}%`, height: `${100 * h / height}%` });
    const tag = document.createElement("span");
    tag.dataset.full = `${i + 1}: ${face.label} ${percent(face.p_ai)}`;
    tag.dataset.short = `${i + 1}`;
    tag.textContent = tag.dataset.full;
    box.append(tag);
    return box;
  }));
  const frame = card.querySelector(".frame");
  new ResizeObserver(() => keepTagsInside(frame)).observe(frame);
}

function describeClues(card, metadata) {
  const clues = metadata.clues || [];
  const target = card.querySelector(".clues");
  const frames = metadata.frames > 1
    ? `<p class="frames">Animated or multi-page: ${metadata.frames} frames, of which the first was judged.</p>` : "";
  if (!clues.length) { target.innerHTML = `${frames}<p class="muted">No metadata clues in the file.</p>`; return; }
  const list = clues.map((c) => `<li><strong>${c.kind} ${c.key}</strong>: ${escapeHtml(c.value)}</li>`).join("");
  const declared = metadata.declared_ai
    ? `<p class="declared"><strong>The file itself declares it AI-generated.</strong> The model's score above is independent of this.</p>` : "";
  target.innerHTML = `${frames}${declared}<details ${metadata.declared_ai ? "open" : ""}><summary>Metadata clues (${clues.length})</summary><ul>${list}</ul></details>`;
}

function escapeHtml(text) {
  return text.replace(/[&<>"']/g, (ch) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[ch]);
}

// Run `then` once the browser has failed to show this image (at once if it already has).
function whenUnshowable(photo, then) {
  if (photo.complete && photo.naturalWidth === 0) then();
  else photo.addEventListener("error", then, { once: true });
}

// A file neither the server nor the browser can read gets no broken-image icon.
function dropPhotoIfUnshowable(card) {
  whenUnshowable(card.querySelector(".photo"), () => {
    card.querySelector(".figure").hidden = true;
    card.classList.add("no-photo");
  });
}

// An animation, held still on its first frame: the frame facetell judged. The URL of that
// still (or `url` itself when this browser cannot draw the file).
async function showFirstFrame(photo, url) {
  try {
    const bitmap = await createImageBitmap(await (await fetch(url)).blob());
    const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
    canvas.getContext("2d").drawImage(bitmap, 0, 0);
    const still = URL.createObjectURL(await canvas.convertToBlob({ type: "image/png" }));
    if (photo.src === url) photo.src = still;  // not while its heat map is shown
    return still;
  } catch (error) {
    return url;
  }
}

function render(card, record, photoUrl) {
  const verdict = card.querySelector(".verdict");
  verdict.className = `verdict ${record.label || record.status}`;
  if (record.status === "error") {
    verdict.textContent = "Could not read this file";
    card.querySelector(".clues").innerHTML = `<p>${escapeHtml(record.error || "")}</p>`;
    dropPhotoIfUnshowable(card);
    return;
  }
  if (record.metadata.frames > 1) {  // the browser plays it; its boxes are the first frame's
    showFirstFrame(card.querySelector(".photo"), photoUrl).then((still) => { photoUrl = still; });
  }
  if (record.status === "no_face") {
    verdict.textContent = "No face found";
    card.querySelector(".faces").innerHTML = `<li class="muted">facetell judges faces only; it does not guess about images without one.</li>`;
  } else {
    verdict.textContent = `${LABELS[record.label]} (${percent(record.p_ai)})`;
    // most AI-like first; each keeps the number its box on the photo carries
    const items = record.faces.map((face, index) => [face, index])
      .sort(([a], [b]) => b.p_ai - a.p_ai)
      .map(([face, index]) => describeFace(face, index, record.uncertain_band));
    const faces = card.querySelector(".faces");
    faces.replaceChildren(...items.slice(0, FACES_SHOWN));
    if (items.length > FACES_SHOWN) {
      const rest = document.createElement("li");
      rest.className = "more-faces";
      rest.innerHTML = `<details><summary>${items.length - FACES_SHOWN} more faces, less AI-like</summary><ul class="faces"></ul></details>`;
      rest.querySelector("ul").append(...items.slice(FACES_SHOWN));
      faces.append(rest);
    }
    if (record.faces.some((face) => face.familiar === false)) {
      const why = document.createElement("li");
      why.className = "muted unfamiliar-why";
      why.textContent = "An unfamiliar face is unlike the faces this model was trained on (a " +
        "camera, style or generator it has not seen), so its probability has been moved toward " +
        "50% and still deserves less trust. This is not a sign that the face is AI-generated.";
      faces.append(why);
    }
    if (record.faces_found > record.faces.length) {
      const note = document.createElement("li");
      note.className = "muted crowded";
      note.textContent = `${record.faces_found} faces found; the ${record.faces.length} most ` +
        "face-like were judged (the server's FACETELL_MAX_FACES).";
      faces.append(note);
    }
    drawBoxes(card, record);
  }
  describeClues(card, record.metadata);
  card.querySelector(".timing").textContent = `Processed in ${Math.round(record.ms)} ms` +
    (record.calibrated ? "" : " · model not calibrated");
  const toggle = card.querySelector(".heat-toggle");
  if (record.explanation) {
    toggle.hidden = false;
    const photo = card.querySelector(".photo");
    // A format this browser cannot show (HEIC outside Safari): show the server's rendering.
    const showServerRendering = () => {
      photo.src = record.explanation;
      card.querySelector(".boxes").hidden = true;
      toggle.hidden = true;
    };
    whenUnshowable(photo, showServerRendering);
    toggle.addEventListener("click", () => {
      const on = toggle.getAttribute("aria-pressed") !== "true";
      toggle.setAttribute("aria-pressed", String(on));
      toggle.textContent = on ? "Hide heat map" : "Show heat map";
      photo.src = on ? record.explanation : photoUrl;
      card.querySelector(".boxes").hidden = on;
      if (!on) keepTagsInside(card.querySelector(".frame"));  // hidden tags measure nothing
    });
  }
}

function newCard(photoUrl, name) {
  const card = template.content.firstElementChild.cloneNode(true);
  card.querySelector(".photo").src = photoUrl;
  card.querySelector(".photo").alt = `Uploaded image ${name}`;
  card.querySelector(".name").textContent = name;
  return card;
}

// Keeps a record for the download as `facetell predict -f jsonl` writes it (no heat map).
function keep(record) {
  const { explanation, ...kept } = record;
  judged.push(kept);
  downloads.hidden = false;
}

// A file the server refused as a whole (too large, no token, busy) still gets a record.
function refusedRecord(name, reason, kind) {
  return {
    path: name, status: "error", label: null, p_ai: null, familiar: null, faces: [], faces_found: 0, metadata: {},
    error: `${name}: ${reason}`, error_kind: kind, model: model.identity,
    calibrated: Boolean(model.calibrated), ms: 0, speed: {},
  };
}

// What a refused request says: facetell's problem+json detail, or, from a proxy in front of
// it that answers in HTML (nginx caps uploads at 1 MB unless told otherwise), its status.
async function problemOf(response) {
  if ((response.headers.get("content-type") || "").includes("json")) {
    const body = await response.json().catch(() => ({}));
    if (body.detail) return body.detail;
  }
  if (response.status === 413) return "Too large for the server (a proxy in front of it may cap uploads).";
  return `The server answered ${response.status} ${response.statusText}`.trim() + ".";
}

// A shared server that is busy answers 503 with Retry-After: the file waits its turn (for up
// to BUSY_WAIT_S) instead of being marked refused.
const BUSY_WAIT_S = 60;
async function predictWhenFree(form, verdict) {
  for (let waited = 0; ; ) {
    const response = await fetch("api/v1/predict?explain=true", { method: "POST", body: form, headers: authHeaders() });
    if (response.status !== 503 || waited >= BUSY_WAIT_S) return response;
    const pause = Number(response.headers.get("retry-after")) || 1;
    verdict.textContent = "Server busy, waiting for a turn…";
    await new Promise((resume) => setTimeout(resume, pause * 1000));
    verdict.textContent = "Judging…";
    waited += pause;
  }
}

// Judges one file into its card; answers what became of it (a label, "no_face" or "error").
async function judge(card, file, name, photoUrl) {
  const form = new FormData();
  form.append("files", file, name);
  const verdict = card.querySelector(".verdict");
  try {
    const response = await predictWhenFree(form, verdict);
    if (!response.ok) {
      if (response.status === 401) tokenBox.hidden = false;
      verdict.textContent = await problemOf(response);
      verdict.className = "verdict error";
      dropPhotoIfUnshowable(card);
      keep(refusedRecord(name, verdict.textContent, response.status === 413 ? "too_large" : null));
      return "error";
    }
    const record = (await response.json()).results[0];
    render(card, record, photoUrl);
    keep(record);
    reportable.push({ file, record });
    return record.status === "ok" ? record.label : record.status;
  } catch (error) {
    verdict.textContent = "The server could not be reached.";
    verdict.className = "verdict error";
    keep(refusedRecord(name, verdict.textContent, null));
    return "error";
  }
}

const OUTCOMES = { ai: "AI-generated", uncertain: "uncertain", real: "real", no_face: "no face", error: "could not be read" };

// "5 images: 1 AI-generated, 2 uncertain, 1 real, 1 could not be read", in that fixed order.
function batchSummary(outcomes) {
  const counts = Object.keys(OUTCOMES)
    .map((key) => [outcomes.filter((outcome) => outcome === key).length, OUTCOMES[key]])
    .filter(([count]) => count > 0)
    .map(([count, text]) => `${count} ${text}`);
  return `${outcomes.length} images: ${counts.join(", ")}`;
}

// The files whose metadata declares them AI-made, the strongest evidence there is, whatever
// the verdicts say; as `facetell predict`'s last line counts them.
function declaredTally(cards) {
  const declared = cards.filter((card) => card.querySelector(".declared")).length;
  if (!declared) return "";
  return declared === 1 ? "; 1 declares AI in its metadata"
    : `; ${declared} declare AI in their metadata`;
}

// Every file of a batch gets its card at once, in the order chosen, above earlier results;
// the server judges them one after another while the status line counts them, and a batch
// ends with its tally (one file ends with its verdict), then `note`.
function submit(files, names = files.map((file) => file.name || "pasted image"), note = "") {
  const cards = [];
  const outcomes = [];
  files.forEach((file, index) => {
    const name = names[index];
    const photoUrl = URL.createObjectURL(file);
    const card = newCard(photoUrl, name);
    cards.push(card);
    queue = queue.then(async () => {
      const position = files.length > 1 ? `${index + 1} of ${files.length}: ` : "";
      statusLine.textContent = `Judging ${position}${name}…`;
      outcomes.push(await judge(card, file, name, photoUrl));
      if (outcomes.length < files.length) return;
      statusLine.textContent = (files.length > 1
        ? batchSummary(outcomes)
        : `${name}: ${card.querySelector(".verdict").textContent}`) + declaredTally(cards) + note;
    });
  });
  results.prepend(...cards);
}

// The first few names of a list of skipped files, for the status line.
const firstNames = (files) => files.slice(0, 3).map(({ path }) => path.split("/").pop()).join(", ")
  + (files.length > 3 ? ", …" : "");

// A folder's images in path order, named by their path in it; its other files (not hidden
// ones) are named in the status line rather than sent to be refused one by one, camera RAW
// files (which the server would refuse too) apart.
function submitFolder(found) {
  found.sort((a, b) => a.path.localeCompare(b.path));
  const images = found.filter(({ path }) => isImageName(path));
  const others = found.filter(({ path }) => !isImageName(path) && !/(^|\/)\./.test(path));
  const raw = others.filter(({ path }) => RAW_SUFFIXES.has(suffixOf(path)));
  const rest = others.filter(({ path }) => !RAW_SUFFIXES.has(suffixOf(path)));
  const skipped = (raw.length
    ? `; skipped ${raw.length} camera RAW file(s) (export them as JPEG): ${firstNames(raw)}` : "")
    + (rest.length ? `; skipped ${rest.length} file(s) that are not images: ${firstNames(rest)}` : "");
  if (!images.length) { statusLine.textContent = `No images in the folder${skipped}`; return; }
  submit(images.map(({ file }) => file), images.map(({ path }) => path), skipped);
}

// Every file under dropped folders (and dropped files beside them), with its path.
async function filesOf(entries) {
  const found = [];
  for (const entry of entries) {
    if (entry.isFile) {
      const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
      found.push({ file, path: entry.fullPath.replace(/^\//, "") });
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      // readEntries answers in batches (100 in Chromium) until it answers none
      for (;;) {
        const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
        if (!batch.length) break;
        found.push(...await filesOf(batch));
      }
    }
  }
  return found;
}

function save(lines, type, name) {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob(lines, { type }));
  link.download = name;
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

// The columns of `facetell predict -f csv`, for spreadsheets.
const CSV_COLUMNS = ["path", "status", "label", "p_ai", "familiar", "n_faces", "faces_found",
  "declared_ai", "error", "model", "ms", "explanation", "threshold", "uncertain_low",
  "uncertain_high"];

function csvLine(record) {
  const [uncertainLow, uncertainHigh] = record.uncertain_band ?? [null, null];
  const values = { ...record, n_faces: record.faces.length, declared_ai: Boolean(record.metadata.declared_ai),
    uncertain_low: uncertainLow, uncertain_high: uncertainHigh };
  return CSV_COLUMNS.map((column) => {
    const value = values[column];
    if (value === null || value === undefined) return "";
    let text = typeof value === "boolean" ? (value ? "True" : "False") : String(value);
    if (/^[=+\-@\t\r]/.test(text)) text = `'${text}`;  // shown as text, never run as a formula
    return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
  }).join(",") + "\r\n";
}

document.getElementById("download").addEventListener("click", () => {
  save(judged.map((record) => `${JSON.stringify(record)}\n`), "application/x-ndjson", "facetell-results.jsonl");
});
document.getElementById("download-csv").addEventListener("click", () => {
  // a byte-order mark first, as `facetell predict -o FILE.csv` writes: Excel reads UTF-8 by it
  save([`\ufeff${CSV_COLUMNS.join(",")}\r\n`, ...judged.map(csvLine)], "text/csv",
    "facetell-results.csv");
});
// A JPEG copy at most `side` px long, as this browser draws it (upright); null for a picture it
// cannot draw (HEIC outside Safari).
async function smallCopy(picture, side) {
  try {
    const bitmap = await createImageBitmap(picture);
    const scale = Math.min(1, side / Math.max(bitmap.width, bitmap.height));
    const canvas = new OffscreenCanvas(Math.round(bitmap.width * scale), Math.round(bitmap.height * scale));
    canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    return await canvas.convertToBlob({ type: "image/jpeg", quality: 0.9 });
  } catch (error) {
    return null;
  }
}

// Pixels of the copies a report sends: twice the review page's 480-px photos, so face crops
// stay sharp; heat maps are shown at 480.
const REPORT_SIDE = 1024;
const HEAT_MAP_SIDE = 480;

// The review page `facetell predict --report` writes, of every file judged here: the server
// builds it from the records it gave and small copies of the pictures (no model runs again),
// so a hundred phone photos fit the upload cap that each of them alone nearly fills.
document.getElementById("download-report").addEventListener("click", async () => {
  const refused = judged.length - reportable.length;
  statusLine.textContent = `Building the report of ${reportable.length} image(s)…`;
  const form = new FormData();
  form.append("records", JSON.stringify(reportable.map(({ record }) => ({ ...record, explanation: null }))));
  for (const [index, { file, record }] of reportable.entries()) {
    if (record.status !== "error") form.append("picture", (await smallCopy(file, REPORT_SIDE)) || file, String(index));
    if (record.explanation) {
      const heatMap = await (await fetch(record.explanation)).blob();
      form.append("heat_map", (await smallCopy(heatMap, HEAT_MAP_SIDE)) || heatMap, String(index));
    }
  }
  try {
    const response = await fetch("api/v1/review", { method: "POST", body: form, headers: authHeaders() });
    if (!response.ok) {
      statusLine.textContent = `No report: ${(await problemOf(response)).replace(/\.$/, "")}. For more `
        + "images, run facetell predict --report on the folder.";
      return;
    }
    save([await response.blob()], "text/html", "facetell-review.html");
    statusLine.textContent = `Report of ${reportable.length} image(s) saved`
      + (refused ? `; it leaves out the ${refused} file(s) the server refused` : "");
  } catch (error) {
    statusLine.textContent = "The server could not be reached.";
  }
});

fileInput.addEventListener("change", () => { submit([...fileInput.files]); fileInput.value = ""; });
document.getElementById("folder-button").addEventListener("click", () => folderInput.click());
folderInput.addEventListener("change", () => {
  submitFolder([...folderInput.files].map((file) => ({ file, path: file.webkitRelativePath || file.name })));
  folderInput.value = "";
});
dropZone.addEventListener("keydown", (event) => {
  if (event.key === "Enter" || event.key === " ") { event.preventDefault(); fileInput.click(); }
});
// Files dropped anywhere on the page are judged: a drop beside the zone would otherwise make the
// browser open the photo in a tab of its own. So is a picture dragged from another web page,
// which arrives as its address. Dragged text (into the token field) is left alone.
const carriesPictures = (event) => ["Files", "text/uri-list"].some((type) => event.dataTransfer.types.includes(type));
let dragDepth = 0;  // enter and leave fire for every element crossed; zero means off the page
document.addEventListener("dragenter", (event) => {
  if (!carriesPictures(event)) return;
  dragDepth += 1;
  dropZone.classList.add("dragging");
});
document.addEventListener("dragleave", (event) => {
  if (carriesPictures(event) && --dragDepth <= 0) dropZone.classList.remove("dragging");
});
document.addEventListener("dragover", (event) => { if (carriesPictures(event)) event.preventDefault(); });
document.addEventListener("drop", async (event) => {
  if (!carriesPictures(event)) return;
  event.preventDefault();
  dragDepth = 0;
  dropZone.classList.remove("dragging");
  // entries must be taken before the first await: the drop's data is gone after it
  const entries = [...event.dataTransfer.items].map((item) => item.webkitGetAsEntry?.()).filter(Boolean);
  const address = event.dataTransfer.getData("text/uri-list").split(/\r?\n/).find((line) => line && !line.startsWith("#"));
  if (entries.some((entry) => entry.isDirectory)) submitFolder(await filesOf(entries));
  else if (event.dataTransfer.files.length) submit([...event.dataTransfer.files]);
  else if (address) submitAddress(address);
});

// A picture dragged from a web page: this browser fetches it (the server never fetches
// addresses), which the picture's site must allow.
async function submitAddress(address) {
  statusLine.textContent = `Fetching ${address}…`;
  try {
    const name = decodeURIComponent(new URL(address).pathname.split("/").pop()) || "dragged image";
    const response = await fetch(address);
    const blob = await response.blob();
    if (!response.ok || !blob.type.startsWith("image/")) throw new Error("not an image");
    submit([new File([blob], name, { type: blob.type })]);
  } catch (error) {
    statusLine.textContent = `Could not fetch ${address}: its site does not let other pages read it, `
      + "or it is no image. Save the picture, then drop the file.";
  }
}
document.addEventListener("paste", (event) => {
  const files = [...event.clipboardData.items].filter((i) => i.kind === "file").map((i) => i.getAsFile());
  if (files.length) submit(files);
});
for (const button of document.querySelectorAll(".example")) {
  button.addEventListener("click", async () => {
    const response = await fetch(button.dataset.src);
    const blob = await response.blob();
    submit([new File([blob], button.dataset.src.split("/").pop(), { type: blob.type })]);
  });
}
document.getElementById("token-save").addEventListener("click", () => {
  sessionStorage.setItem("facetell-token", document.getElementById("token").value);
  tokenBox.hidden = true;
  loadModel();
});
loadModel();

// restorekit page: upload -> /api/restore (debounced on every slider move) -> before/after split view.
// The file stays in the browser and is re-sent with each request; the server keeps nothing.
"use strict";

const $ = (id) => document.getElementById(id);
const DEBOUNCE_MS = 200;
const state = {
  file: null, models: [], maxUpload: 0, request: 0, controller: null, timer: null,
  beforeUrl: null, resultUrl: null, split: 50,
};

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

async function errorText(response) {
  try { return (await response.json()).error || response.statusText; } catch { return `${response.status} ${response.statusText}`; }
}

async function loadModels() {
  const response = await fetch("/api/models");
  const data = await response.json();
  state.models = data.models;
  state.maxUpload = data.max_upload_bytes;
  const task = $("task");
  task.replaceChildren(...data.tasks.map((t) => new Option(t === "any" ? "any (reference)" : t, t)));
  const firstZoo = state.models.find((m) => m.source === "zoo");
  if (firstZoo) task.value = firstZoo.task;
  fillModels();
}

function fillModels() {
  const task = $("task").value;
  const options = state.models.filter((m) => m.task === task).map((m) => new Option(m.label, m.id));
  $("model").replaceChildren(...options);
  modelChanged();
}

function currentModel() { return state.models.find((m) => m.id === $("model").value); }

function modelChanged() {
  const model = currentModel();
  const modulated = Boolean(model && model.modulated);
  $("strength-box").hidden = !modulated;
  const takesLevel = Boolean(model && model.takes_level && model.levels);
  $("level-box").hidden = !takesLevel;
  if (takesLevel) {
    const [low, high] = model.levels;
    Object.assign($("level"), { min: low, max: high, step: high - low > 10 ? 1 : 0.1 });
    $("level").value = Math.min(Math.max(Number($("level").value), low), high);
    $("level-value").textContent = $("level").value;
  }
  $("auto-box").hidden = !(model && model.auto_level);
  $("estimated").textContent = "";
  $("levels").textContent = model && model.levels
    ? `trained for levels ${model.levels[0]}\u2013${model.levels[1]} (0 = start level, 1 = end level)` : "";
  schedule(0);
}

function schedule(delay) {
  clearTimeout(state.timer);
  state.timer = setTimeout(restore, delay);
}

function stem(name) { return name.replace(/\.[^.]*$/, "") || "image"; }

async function restore() {
  const model = currentModel();
  if (!state.file || !model) return;
  if (state.file.size > state.maxUpload) {
    const mb = (n) => (n / 1048576).toFixed(1);
    setStatus(`${state.file.name} is ${mb(state.file.size)} MB, over the ${mb(state.maxUpload)} MB upload limit.`, true);
    return;
  }
  if (state.controller) state.controller.abort();
  const controller = new AbortController();
  state.controller = controller;
  const id = ++state.request;
  const params = new URLSearchParams({ model: model.id, filename: state.file.name, task: $("task").value });
  const auto = model.auto_level && $("auto-level").checked;
  if (auto) params.set("level", "auto");
  else if (model.modulated) params.set("strength", $("strength").value);
  if (!auto && model.takes_level && model.levels) params.set("level", $("level").value);
  $("viewer").dataset.state = "busy";
  setStatus(`Restoring with ${model.id}\u2026`);
  const started = performance.now();
  try {
    const response = await fetch(`/api/restore?${params}`, {
      method: "POST", body: state.file, signal: controller.signal,
      headers: { "Content-Type": "application/octet-stream" },
    });
    if (!response.ok) {
      const message = await errorText(response);
      if (id === state.request) fail(message);
      return;
    }
    const blob = await response.blob();
    if (id !== state.request) return;
    const strength = response.headers.get("X-Restorekit-Strength");
    const level = response.headers.get("X-Restorekit-Level");
    if (auto && level !== null) showEstimate(level, strength, response.headers.get("X-Restorekit-Level-Note"));
    showResult(blob, id, `${model.id}${strength ? `, \u03bb = ${Number(strength).toFixed(2)}` : ""}`, started);
  } catch (error) {
    if (error.name !== "AbortError" && id === state.request) fail(`request failed: ${error.message}`);
  }
}

function fail(message) {
  $("viewer").dataset.state = $("before").src ? "error" : "empty";
  setStatus(message, true);
}

function showResult(blob, id, what, started) {
  if (state.resultUrl) URL.revokeObjectURL(state.resultUrl);
  state.resultUrl = URL.createObjectURL(blob);
  const after = $("after");
  after.onload = () => {
    if (id !== state.request) return;
    $("viewer").dataset.state = "done";
    $("viewer").dataset.request = String(id);
    setStatus(`Restored (${what}) in ${Math.round(performance.now() - started)} ms. Drag the divider to compare.`);
  };
  after.src = state.resultUrl;
  const download = $("download");
  download.href = state.resultUrl;
  download.download = `${stem(state.file.name)}_restored.png`;
  download.classList.remove("disabled");
  download.setAttribute("aria-disabled", "false");
}

async function showBefore(file) {
  if (state.beforeUrl) URL.revokeObjectURL(state.beforeUrl);
  state.beforeUrl = URL.createObjectURL(file);
  const before = $("before");
  before.onerror = async () => {  // formats browsers cannot show (TIFF, ...): ask the server for a PNG
    before.onerror = null;
    const response = await fetch(`/api/preview?${new URLSearchParams({ filename: file.name })}`, {
      method: "POST", body: file, headers: { "Content-Type": "application/octet-stream" },
    });
    if (!response.ok) { fail(await errorText(response)); return; }
    URL.revokeObjectURL(state.beforeUrl);
    state.beforeUrl = URL.createObjectURL(await response.blob());
    before.src = state.beforeUrl;
  };
  before.src = state.beforeUrl;
}

function chooseFile(file) {
  if (!file) return;
  state.file = file;
  $("after").removeAttribute("src");
  $("viewer").dataset.state = "busy";
  showBefore(file);
  schedule(0);
}

function setSplit(percent) {
  state.split = Math.min(100, Math.max(0, percent));
  $("after-clip").style.clipPath = `inset(0 0 0 ${state.split}%)`;
  $("divider").style.left = `${state.split}%`;
  $("divider").setAttribute("aria-valuenow", String(Math.round(state.split)));
}

function wireSplitView() {
  const viewer = $("viewer");
  let dragging = false;
  const move = (event) => {
    const box = viewer.getBoundingClientRect();
    setSplit(((event.clientX - box.left) / box.width) * 100);
  };
  // Dragging across the split view must move the divider, never start a native drag of the image
  // (which, dropped back on the viewer, would replace the input with the result).
  viewer.addEventListener("dragstart", (event) => event.preventDefault());
  viewer.addEventListener("pointerdown", (event) => {
    if (viewer.dataset.state === "empty") return;
    event.preventDefault();
    dragging = true;
    viewer.setPointerCapture(event.pointerId);
    move(event);
  });
  viewer.addEventListener("pointermove", (event) => { if (dragging) move(event); });
  viewer.addEventListener("pointerup", () => { dragging = false; });
  viewer.addEventListener("pointercancel", () => { dragging = false; });
  $("divider").addEventListener("keydown", (event) => {
    const step = event.shiftKey ? 10 : 2;
    if (event.key === "ArrowLeft") setSplit(state.split - step);
    else if (event.key === "ArrowRight") setSplit(state.split + step);
    else return;
    event.preventDefault();
  });
  viewer.addEventListener("dragover", (event) => { event.preventDefault(); viewer.classList.add("dragover"); });
  viewer.addEventListener("dragleave", () => viewer.classList.remove("dragover"));
  viewer.addEventListener("drop", (event) => {
    event.preventDefault();
    viewer.classList.remove("dragover");
    chooseFile(event.dataTransfer.files[0]);
  });
}

function showEstimate(level, strength, note) {
  // the sliders follow what the server estimated, so unticking "auto" starts from it
  if (strength !== null) {
    $("strength").value = strength;
    $("strength-value").textContent = Number(strength).toFixed(2);
  }
  if (!$("level-box").hidden) {
    $("level").value = level;
    $("level-value").textContent = $("level").value;
  }
  $("estimated").textContent = note || `estimated level ${level}`;
}

function wireControls() {
  $("file").addEventListener("change", (event) => chooseFile(event.target.files[0]));
  $("task").addEventListener("change", fillModels);
  $("model").addEventListener("change", modelChanged);
  $("strength").addEventListener("input", () => {
    $("auto-level").checked = false;  // a hand-set strength replaces the estimate
    $("strength-value").textContent = Number($("strength").value).toFixed(2);
    schedule(DEBOUNCE_MS);
  });
  $("auto-level").addEventListener("change", () => schedule(0));
  $("level").addEventListener("input", () => {
    $("auto-level").checked = false;
    $("level-value").textContent = $("level").value;
    schedule(DEBOUNCE_MS);
  });
}

wireControls();
wireSplitView();
setSplit(50);
loadModels().catch((error) => setStatus(`could not load the model list: ${error.message}`, true));

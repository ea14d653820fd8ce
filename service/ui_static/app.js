// The gate explorer: plain JavaScript, no build step, no library; it talks to the API it is
// served by (relative URLs, so it works behind a path prefix too).
"use strict";

const REFRESH_MS = 5000;
const KEY_STORAGE = "mmoe-api-key";

const $ = (id) => document.getElementById(id);
const state = { metadata: null, named: false, utilisationTimer: null, connectedKey: null };

function headers(json) {
  const result = json ? { "Content-Type": "application/json" } : {};
  const key = $("api-key").value.trim();
  if (key) result.Authorization = `Bearer ${key}`;
  return result;
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: headers(Boolean(options.body)) });
  const text = await response.text();
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      message = JSON.parse(text).error.message;
    } catch (ignored) {
      // not the service's error shape: keep the status line
    }
    throw new Error(message);
  }
  return text;
}

function say(message, isError = false) {
  $("status").textContent = message;
  $("status").classList.toggle("error", isError);
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

async function loadModels() {
  const listing = JSON.parse(await api("models"));
  const select = $("model");
  select.replaceChildren();
  for (const model of listing.models) {
    const option = element("option", "", model.name);
    option.value = model.name;
    option.dataset.versions = JSON.stringify(model.versions);
    option.dataset.latest = model.latest_version;
    select.append(option);
  }
  select.value = listing.default_model.name;
  await fillVersions();
}

function fillVersions() {
  const option = $("model").selectedOptions[0];
  const select = $("version");
  select.replaceChildren();
  for (const version of JSON.parse(option.dataset.versions).reverse()) {
    const latest = String(version) === option.dataset.latest;
    const choice = element("option", "", latest ? `${version} (latest)` : String(version));
    choice.value = version;
    select.append(choice);
  }
  select.value = option.dataset.latest;
  return loadVersion();
}

async function loadVersion() {
  const name = $("model").value;
  const version = $("version").value;
  const metadata = JSON.parse(await api(`models/${encodeURIComponent(name)}/versions/${version}`));
  state.metadata = metadata;
  const card = metadata.card;
  const categorical = (card.categorical && card.categorical.features) || [];
  const numeric = card.input.feature_names ||
    Array.from({ length: metadata.input_dim }, (_, i) => `feature ${i}`);
  const kinds = categorical.length
    ? `${numeric.length} numeric and ${categorical.length} categorical features`
    : `${numeric.length} features`;
  $("model-facts").textContent =
    `${metadata.architecture}, ${metadata.tasks.length} tasks, ${card.experts.count} experts, ` +
    `${kinds}, on ${metadata.provider}`;
  const stats = {};
  for (const column of (card.data && card.data.numeric) || []) stats[column.name] = column;
  const container = $("features");
  container.replaceChildren(
    ...numeric.map((feature) => numberField(feature, card.input.accepts_missing, stats[feature])),
    ...categorical.map(categoryField),
  );
  state.named = Boolean(categorical.length);
  container.classList.toggle("wide", [...numeric, ...categorical.map((f) => f.name)].some(
    (feature) => feature.length > 5,
  ));
  $("result").replaceChildren();
  await refreshUtilisation();
}

function field(name) {
  const label = element("label", "feature");
  label.append(element("span", "", name));
  return label;
}

// A number; empty means missing where the model imputes it. `stats`: the training mean and
// standard deviation the card records, which Randomise draws from.
function numberField(name, acceptsMissing, stats) {
  const label = field(name);
  const input = element("input", "feature-value");
  input.type = "number";
  input.step = "any";
  input.required = !acceptsMissing;
  input.placeholder = acceptsMissing ? "missing" : "";
  input.value = "0";
  input.name = name;
  input.dataset.mean = stats ? stats.mean : 0;
  input.dataset.std = stats ? stats.std : 1;
  label.append(input);
  return label;
}

// One of the card's vocabulary, or missing.
function categoryField(feature) {
  const label = field(feature.name);
  const select = element("select", "feature-value");
  select.name = feature.name;
  const missing = element("option", "", "(missing)");
  missing.value = "";
  select.append(missing, ...feature.vocabulary.map((value) => {
    const option = element("option", "", value);
    option.value = value;
    return option;
  }));
  select.value = feature.vocabulary[0];
  label.append(select);
  return label;
}

function normal() {
  // Box-Muller: the synthetic models' features are standard normal
  const u = 1 - Math.random();
  const v = Math.random();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

function randomise() {
  for (const input of $("features").querySelectorAll("input")) {
    const value = Number(input.dataset.mean) + Number(input.dataset.std) * normal();
    input.value = value.toFixed(3);
  }
  for (const select of $("features").querySelectorAll("select")) {
    select.selectedIndex = 1 + Math.floor(Math.random() * (select.options.length - 1));
  }
}

function zeros() {
  for (const input of $("features").querySelectorAll("input")) input.value = "0";
  for (const select of $("features").querySelectorAll("select")) select.selectedIndex = 1;
}

// The row as /predict takes it: an array of numbers, or (a model with categorical features)
// an object of named values, null for a missing one.
function featureRow() {
  const values = Array.from($("features").querySelectorAll(".feature-value"), (control) => [
    control.name,
    control.value === "" ? null : control.tagName === "SELECT" ? control.value : Number(control.value),
  ]);
  return state.named ? Object.fromEntries(values) : values.map(([, value]) => value);
}

function gateBars(weights, task) {
  const bars = element("div", "bars");
  weights.forEach((weight, expert) => {
    const row = element("div", "bar-row");
    row.dataset.task = task;
    row.dataset.expert = expert;
    row.dataset.weight = String(weight);
    row.append(element("span", "bar-label", `expert ${expert}`));
    const track = element("div", "bar-track");
    const bar = element("div", "bar");
    bar.style.width = `${(weight * 100).toFixed(4)}%`;
    track.append(bar);
    row.append(track);
    row.append(element("span", "bar-value", weight.toFixed(4)));
    bars.append(row);
  });
  return bars;
}

function showPrediction(answer) {
  const result = $("result");
  result.replaceChildren();
  const heading = element(
    "p",
    "answered",
    `Answered by ${answer.model.name} version ${answer.model.version} (${answer.model.architecture})`,
  );
  result.append(heading);
  for (const [task, output] of Object.entries(answer.tasks)) {
    const block = element("div", "task");
    block.dataset.task = task;
    block.append(element("h3", "", task));
    const prediction = element("p", "prediction", `prediction ${output.predictions[0]}`);
    prediction.dataset.value = String(output.predictions[0]);
    block.append(prediction);
    if (output.gate_weights) {
      block.append(gateBars(output.gate_weights[0], task));
    } else {
      block.append(element("p", "facts", "no gate: a Shared-Bottom model has none"));
    }
    result.append(block);
  }
}

async function predict(event) {
  event.preventDefault();
  const body = {
    instances: [featureRow()],
    model: $("model").value,
    version: Number($("version").value),
  };
  say("asking the model...");
  try {
    const answer = JSON.parse(await api("predict", { method: "POST", body: JSON.stringify(body) }));
    showPrediction(answer);
    say("");
    await refreshUtilisation();
  } catch (error) {
    say(error.message, true);
  }
}

// One sample line of the Prometheus text format: name{label="value",...} number
const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\} (\S+)$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

function parseMetrics(text, wanted) {
  const samples = [];
  for (const line of text.split("\n")) {
    const match = SAMPLE.exec(line);
    if (!match || !wanted.has(match[1])) continue;
    const labels = {};
    for (const [, name, value] of match[2].matchAll(LABEL)) labels[name] = value;
    samples.push({ name: match[1], labels, value: Number(match[3]) });
  }
  return samples;
}

async function refreshUtilisation() {
  const target = $("utilisation-tasks");
  const metadata = state.metadata;
  if (!metadata) return;
  let samples;
  try {
    const wanted = new Set([
      "mmoe_gate_weight_mean", "mmoe_gate_rows_total", "mmoe_gate_normalised_entropy",
      "mmoe_gate_experts_below_threshold",
    ]);
    samples = parseMetrics(await api("metrics"), wanted).filter(
      (sample) => sample.labels.model === metadata.name &&
        sample.labels.version === String(metadata.version),
    );
  } catch (error) {
    target.replaceChildren(element("p", "facts", `metrics unavailable: ${error.message}`));
    return;
  }
  target.replaceChildren();
  if (!metadata.card.experts.gates) {
    target.append(element("p", "facts", "this model has no gates"));
    return;
  }
  for (const task of metadata.tasks) {
    const ofTask = samples.filter((sample) => sample.labels.task === task);
    const rows = ofTask.find((sample) => sample.name === "mmoe_gate_rows_total");
    const block = element("div", "task utilisation");
    block.dataset.task = task;
    block.append(element("h3", "", task));
    if (!rows || rows.value === 0) {
      block.append(element("p", "facts", "no rows answered yet"));
      target.append(block);
      continue;
    }
    const means = ofTask
      .filter((sample) => sample.name === "mmoe_gate_weight_mean")
      .sort((a, b) => Number(a.labels.expert) - Number(b.labels.expert))
      .map((sample) => sample.value);
    const entropy = ofTask.find((sample) => sample.name === "mmoe_gate_normalised_entropy");
    const below = ofTask.find((sample) => sample.name === "mmoe_gate_experts_below_threshold");
    block.append(element(
      "p",
      "facts",
      `${rows.value} ${rows.value === 1 ? "row" : "rows"}; normalised entropy ${entropy ? entropy.value.toFixed(3) : "?"}; ` +
        `${below ? below.value : "?"} experts below the collapse threshold`,
    ));
    block.append(gateBars(means, task));
    target.append(block);
  }
}

function connect() {
  const key = $("api-key").value.trim();
  if (document.body.dataset.ready === "true" && key === state.connectedKey) return;
  state.connectedKey = key;
  say("");
  document.body.dataset.ready = "false";
  loadModels()
    .then(() => {
      document.body.dataset.ready = "true";
    })
    .catch((error) => say(error.message, true));
}

function start() {
  $("api-key").value = sessionStorage.getItem(KEY_STORAGE) || "";
  $("api-key").addEventListener("change", () => {
    sessionStorage.setItem(KEY_STORAGE, $("api-key").value.trim());
    connect();
  });
  $("model").addEventListener("change", () => fillVersions().catch((e) => say(e.message, true)));
  $("version").addEventListener("change", () => loadVersion().catch((e) => say(e.message, true)));
  $("randomise").addEventListener("click", randomise);
  $("zeros").addEventListener("click", zeros);
  $("predict-form").addEventListener("submit", predict);
  $("refresh-seconds").textContent = String(REFRESH_MS / 1000);
  state.utilisationTimer = setInterval(() => refreshUtilisation(), REFRESH_MS);
  connect();
}

document.addEventListener("DOMContentLoaded", start);

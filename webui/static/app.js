"use strict";
// The search page: every request goes to this server's JSON API (relative URLs), nothing else is fetched.
// Results are built with textContent, never innerHTML, so captions and ids cannot inject markup.
// The address holds the query (?id=..&modality=..&k=..&target=.. or ?text=..&k=..&target=..), so a result
// page can be shared and reloaded; each search pushes its address, Back and Forward run theirs again.

const $ = (id) => document.getElementById(id);
let latest = 0;          // the newest search; answers to older ones are dropped
let previewUrl = null;   // the object URL of the uploaded image shown as the query
let hasImages = false;   // the index has image files: image results are thumbnails, else compact cards
let hasLabels = false;   // the index has labels: an id query's results are marked relevant or not, with P@k
const SHOWN = ["both", "image", "text"];   // the values of the Show menu (target= in the address)

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

async function api(path, options) {
  const response = await fetch(path, options);
  let body = null;
  try {
    body = await response.json();
  } catch (err) {
    body = null;   // not JSON (a proxy's error page): the status line says what happened
  }
  if (!response.ok) throw new Error((body && body.detail) || `${response.status} ${response.statusText}`);
  return body;
}

function targets() {
  const chosen = $("target").value;
  return chosen === "both" ? ["image", "text"] : [chosen];
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function labelChips(labels) {
  const chips = element("div", "labels");
  for (const name of labels || []) chips.append(element("span", "label", name));
  return chips;
}

function thumbnail(url, alt) {
  const box = element("div", "thumb");
  if (url) {
    const img = element("img");
    img.src = url;
    img.alt = alt;
    img.loading = "lazy";
    box.append(img);
  } else {
    box.textContent = "no image";
  }
  return box;
}

function resultCard(result, target) {
  const button = element("button", "result");
  button.type = "button";
  button.title = `search with item ${result.id}'s ${target} code`;
  button.dataset.id = result.id;
  if (target === "image" && hasImages) button.append(thumbnail(result.image_url, result.caption || `item ${result.id}`));
  const meta = element("div", "meta");
  meta.append(element("span", "rank", `#${result.rank}`), element("span", "distance", `distance ${result.distance}`),
              element("span", "id", `id ${result.id}`));
  if (result.relevant !== undefined) button.dataset.relevant = result.relevant;
  if (result.relevant) {
    button.classList.add("relevant");
    meta.prepend(element("span", "mark", "✓"));
  }
  button.append(meta, labelChips(result.labels));
  if (result.caption) button.append(element("p", "caption", result.caption));
  button.addEventListener("click", () => {
    $("item-id").value = result.id;
    $("item-modality").value = target;
    searchById(result.id, target);
  });
  const item = element("li");
  item.append(button);
  return item;
}

function showResults(answers) {
  for (const target of ["image", "text"]) {
    const section = $(`${target}-results`);
    const answer = answers.find((found) => found.target === target);
    section.hidden = !answer;
    const list = section.querySelector("ol");
    list.replaceChildren(...(answer ? answer.results.map((result) => resultCard(result, target)) : []));
  }
}

// An id query's P@k per searched modality; for a text or image query, why nothing is marked
function showRelevance(answers) {
  const line = $("relevance");
  line.hidden = !hasLabels;
  if (!hasLabels) return;   // an index without labels: no marks and no P@k, and nothing to say about them
  const scored = answers.filter((answer) => answer.precision_at_k !== null);
  if (!scored.length) {
    line.textContent = answers[0].relevance.charAt(0).toUpperCase() + answers[0].relevance.slice(1);
    return;
  }
  const scores = scored.map((answer) => {
    const k = answer.results.length;
    const hits = answer.results.filter((result) => result.relevant).length;
    return `${answer.target === "image" ? "Images" : "Texts"} P@${k} = ${answer.precision_at_k.toFixed(2)} (${hits} of ${k})`;
  });
  line.textContent = `${scores.join(" · ")} — ✓ ${scored[0].relevance}`;
}

// An address without a query (or with a bad one) shows no results; an answer still on its way is dropped
function clearResults() {
  latest += 1;
  document.body.removeAttribute("aria-busy");
  for (const id of ["query", "relevance", "image-results", "text-results"]) $(id).hidden = true;
}

function showQuery(query) {
  const box = $("query");
  box.replaceChildren();
  const words = element("div");
  if (query.id !== undefined) {
    if (query.modality === "image" && hasImages) box.append(thumbnail(query.image_url, `item ${query.id}`));
    words.append(element("strong", "", `Item ${query.id}, its ${query.modality} code`), labelChips(query.labels));
    if (query.caption) words.append(element("p", "caption", query.caption));
  } else if (query.text !== undefined) {
    words.append(element("strong", "", "Text: "), document.createTextNode(`“${query.text}”`));
  } else {
    box.append(thumbnail(previewUrl, query.image || "the uploaded image"));
    words.append(element("strong", "", `Image ${query.image || ""}`));
  }
  box.append(words);
  box.hidden = false;
}

// Runs one request per shown target (the API searches one modality at a time) and shows the answers.
async function run(request) {
  const ticket = ++latest;
  showError("");
  document.body.setAttribute("aria-busy", "true");
  try {
    const answers = await Promise.all(targets().map(request));
    if (ticket !== latest) return;
    showQuery(answers[0].query);
    showRelevance(answers);
    showResults(answers);
    $("query").scrollIntoView({ block: "nearest" });   // a click far down the list starts a new query
  } catch (err) {
    if (ticket === latest) showError(err.message);
  } finally {
    if (ticket === latest) document.body.removeAttribute("aria-busy");
  }
}

// how: "push" a new address (a new search), "replace" it (the page's first one), or "keep" it (Back, Forward)
function remember(query, how) {
  const address = `?${new URLSearchParams({ ...query, k: $("k").value, target: $("target").value })}`;
  if (how === "keep" || address === location.search) return;
  if (how === "replace") history.replaceState(null, "", address);
  else history.pushState(null, "", address);
}

function searchById(id, modality, how = "push") {
  remember({ id, modality }, how);
  run((target) => api(`api/search?${new URLSearchParams({ id, modality, target, k: $("k").value })}`));
}

function searchByText(text, how = "push") {
  remember({ text }, how);
  run((target) => api(`api/search?${new URLSearchParams({ text, target, k: $("k").value })}`));
}

function searchByImage(file) {
  remember({}, "push");   // an upload cannot travel in an address: it keeps only k and Show
  if (previewUrl) URL.revokeObjectURL(previewUrl);
  previewUrl = URL.createObjectURL(file);
  run((target) => {
    const form = new FormData();
    form.append("image", file);
    form.append("k", $("k").value);
    form.append("target", target);
    return api("api/search", { method: "POST", body: form });
  });
}

// Runs the query the address holds: on load and on Back and Forward (an address without one clears the page)
function searchFromAddress(how) {
  const asked = new URLSearchParams(location.search);
  for (const [key, allowed] of [["target", SHOWN], ["modality", ["image", "text"]]]) {
    if (asked.has(key) && !allowed.includes(asked.get(key))) {
      clearResults();
      showError(`${key}=${asked.get(key)} in the address: it must be one of ${allowed.join(", ")}`);
      return;
    }
  }
  if (asked.has("k")) $("k").value = asked.get("k");
  if (asked.has("target")) $("target").value = asked.get("target");
  if (asked.has("id")) {
    $("item-id").value = asked.get("id");
    $("item-modality").value = asked.get("modality") || "image";
    searchById(asked.get("id"), $("item-modality").value, how);
  } else if (asked.has("text")) {
    $("text").value = asked.get("text");
    searchByText(asked.get("text"), how);
  } else {
    clearResults();
    showError("");
  }
}

async function searchRandomItem() {
  try {
    const drawn = await api("api/random");
    $("item-id").value = drawn.id;
    searchById(drawn.id, $("item-modality").value);
  } catch (err) {
    showError(err.message);
  }
}

function describeIndex(info) {
  const parts = [`${info.index}: ${info.size.toLocaleString()} items`, `${info.bits}-bit ${info.protocol || ""} codes`,
                 `${info.search.image ? info.search.image.kind : "flat"} search`];
  if (info.dataset) parts.splice(1, 0, `${info.dataset}${info.split ? "/" + info.split : ""}`);
  if (!info.images) parts.push("no images: results show ids, labels and captions");
  $("facts").textContent = parts.join(" · ");
}

function disableQueries(reason) {
  for (const id of ["text", "image"]) {
    for (const control of $(`${id}-form`).elements) control.disabled = true;
  }
  $("notice").textContent = `Text and image queries are off: ${reason}. Queries by item id still work.`;
  $("notice").hidden = false;
}

async function start() {
  let info;
  try {
    info = await api("api/info");
  } catch (err) {
    $("facts").textContent = "";
    showError(`The server did not answer: ${err.message}`);
    return;
  }
  describeIndex(info);
  hasImages = info.images;
  hasLabels = info.label_names !== null;
  if (!hasImages) $("image-results").querySelector("ol").className = "list";
  $("k").max = info.k.max;
  $("k").value = info.k.default;
  if (info.first_id !== null) $("item-id").value = info.first_id;
  if (!info.text_queries) disableQueries(info.disabled_reason);

  $("text-form").addEventListener("submit", (event) => {
    event.preventDefault();
    searchByText($("text").value);
  });
  $("image-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const file = $("image").files[0];
    if (file) searchByImage(file);
    else showError("Choose an image file first.");
  });
  $("image").addEventListener("change", () => {
    if ($("image").files[0]) searchByImage($("image").files[0]);
  });
  $("id-form").addEventListener("submit", (event) => {
    event.preventDefault();
    searchById($("item-id").value.trim(), $("item-modality").value);
  });
  $("random").addEventListener("click", searchRandomItem);
  window.addEventListener("popstate", () => searchFromAddress("keep"));
  searchFromAddress("replace");
}

start();

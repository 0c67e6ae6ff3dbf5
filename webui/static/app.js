"use strict";
// The search page: every request goes to this server's JSON API (relative URLs), nothing else is fetched.
// Results are built with textContent, never innerHTML, so captions and ids cannot inject markup.

const $ = (id) => document.getElementById(id);
let latest = 0;          // the newest search; answers to older ones are dropped
let previewUrl = null;   // the object URL of the uploaded image shown as the query
let hasImages = false;   // the index has image files: image results are thumbnails, else compact cards

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
    showResults(answers);
    $("query").scrollIntoView({ block: "nearest" });   // a click far down the list starts a new query
  } catch (err) {
    if (ticket === latest) showError(err.message);
  } finally {
    if (ticket === latest) document.body.removeAttribute("aria-busy");
  }
}

function searchById(id, modality) {
  run((target) => api(`api/search?${new URLSearchParams({ id, modality, target, k: $("k").value })}`));
}

function searchByText(text) {
  run((target) => api(`api/search?${new URLSearchParams({ text, target, k: $("k").value })}`));
}

function searchByImage(file) {
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
}

start();

// What every page's script shares: calling the JSON API with the session cookie and the CSRF token, building DOM
// from text (never from HTML strings: names from the engine, guests and users stay text), and formatting.
"use strict";

export class ApiFailure extends Error {
  constructor(status, message, field) {
    super(message);
    this.status = status;
    this.field = field;
  }
}

export function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

export function loginAgain() {
  location.assign("/login?next=" + encodeURIComponent(location.pathname + location.search));
}

// fetch a JSON API route; a refusal throws ApiFailure with the API's own words and the field it names
export async function api(method, path, body) {
  const init = {method, credentials: "same-origin", headers: {"Accept": "application/json"}};
  if (method !== "GET" && method !== "HEAD") init.headers["X-CSRF-Token"] = csrfToken();
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.status === 401 && path !== "/api/login") {
    loginAgain();
    throw new ApiFailure(401, "logged out", "Authorization");
  }
  const type = response.headers.get("Content-Type") || "";
  const doc = type.startsWith("application/json") ? await response.json() : null;
  if (!response.ok) {
    throw new ApiFailure(response.status, (doc && doc.error) || `${response.status} ${response.statusText}`,
                         doc && doc.field);
  }
  return doc;
}

// el("a", {href: "/x", class: "y"}, "text", otherNode): attributes set one by one, strings become text nodes
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function rows(table, list, row, empty) {
  const body = table.tBodies[0];
  body.replaceChildren(...list.map(row));
  if (!list.length && empty) {
    body.append(el("tr", {class: "empty"}, el("td", {colspan: table.tHead.rows[0].cells.length}, empty)));
  }
}

export function say(id, text) {
  document.getElementById(id).textContent = text === undefined || text === null ? "" : String(text);
}

export function failure(e) {
  return e instanceof ApiFailure ? e.message : String(e);
}

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
export function bytes(n) {
  if (n === null || n === undefined) return "";
  let i = 0;
  let v = n;
  while (v >= 1024 && i < UNITS.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${i ? v.toFixed(1) : v} ${UNITS[i]}`;
}

export function when(seconds) {
  if (!seconds) return "";
  return new Date(seconds * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
}

export function jobLink(job) {
  return el("a", {href: "/jobs/" + encodeURIComponent(job.request_id)}, job.job);
}

// a dialog's Cancel button closes it; Escape does by itself
export function dialog(id) {
  const node = document.getElementById(id);
  for (const b of node.querySelectorAll("button.cancel")) b.addEventListener("click", () => node.close());
  return node;
}

export function jobRow(j) {
  const subject = j.job === "restore" ? (j.restore_point || "") : (j.vm || "");
  return el("tr", {}, el("td", {}, jobLink(j)), el("td", {}, subject), el("td", {class: "state-" + j.state}, j.state),
            el("td", {}, j.percent === null || j.percent === undefined ? "" : `${j.percent} %`),
            el("td", {}, j.message || ""));
}

const logout = document.getElementById("logout");
if (logout) {
  logout.addEventListener("click", async () => {
    try {
      await api("POST", "/api/logout");
    } finally {
      location.assign("/login");
    }
  });
}

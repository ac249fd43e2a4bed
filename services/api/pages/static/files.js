// A restore point's files: the disks at /, their volumes, then directories; a file downloads through the API.
import {api, bytes, el, failure, rows, say, when} from "/static/console.js";

const main = document.querySelector("main");
const point = main.dataset.point;
const path = main.dataset.path || "/";
const here = `/restore-points/${encodeURIComponent(point)}/files`;

function browse(p) {
  return `${here}?path=${encodeURIComponent(p)}`;
}

function crumbs() {
  const parts = path.split("/").filter(Boolean);
  const links = [el("a", {href: browse("/")}, "/")];
  parts.forEach((name, i) => {
    const p = "/" + parts.slice(0, i + 1).join("/");
    links.push(i === parts.length - 1 ? el("span", {class: "current"}, name) : el("a", {href: browse(p)}, name));
    if (i < parts.length - 1) links.push(" / ");
  });
  document.getElementById("crumbs").replaceChildren(...links);
}

function entryRow(e) {
  const opens = ["disk", "volume", "dir"].includes(e.type);
  const name = opens ? el("a", {href: browse(e.path), class: "open"}, e.name || e.path) :
    el("span", {}, e.name || e.path);
  let action = "";
  if (e.type === "file") {
    action = el("a", {class: "download", download: e.name || "file",
                      href: `/api/restore-points/${encodeURIComponent(point)}/download?path=${encodeURIComponent(e.path)}`},
                "Download");
  } else if (e.type === "symlink") {
    action = `→ ${e.target || ""}`;
  } else if (e.note) {
    action = e.note;
  }
  return el("tr", {"data-path": e.path, "data-type": e.type}, el("td", {class: "name"}, name), el("td", {}, e.type),
            el("td", {}, e.type === "dir" ? "" : bytes(e.size)), el("td", {}, e.mode || ""),
            el("td", {}, when(e.mtime)), el("td", {}, action));
}

async function load() {
  crumbs();
  const [entries, doc] = await Promise.all([
    api("GET", `/api/restore-points/${encodeURIComponent(point)}/files?path=${encodeURIComponent(path)}`),
    api("GET", `/api/restore-points/${encodeURIComponent(point)}`)]);
  say("point-vm", `${doc.vm_name}, ${when(doc.completed_at)}`);
  rows(document.getElementById("files"), entries, entryRow, "empty");
}

load().catch((e) => say("files-error", failure(e)));

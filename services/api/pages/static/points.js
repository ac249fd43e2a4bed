// Restore points, newest first, and the restore dialog: a new VM (named), or the original replaced; another
// cluster or storage domain; power on. The restore is asked through /api/restores and followed on its job page.
import {api, bytes, dialog, el, failure, rows, say, when} from "/static/console.js";

const main = document.querySelector("main");
const restoreDialog = dialog("restore-dialog");
const form = document.getElementById("restore-form");

function pointRow(p) {
  const restore = el("button", {type: "button", class: "restore", "data-point": p.backup_id}, "Restore…");
  restore.addEventListener("click", () => openRestore(p));
  const browse = el("a", {class: "browse", href: `/restore-points/${encodeURIComponent(p.backup_id)}/files`},
                    "Files");
  return el("tr", {"data-point": p.backup_id, "data-vm": p.vm_name},
    el("td", {}, p.vm_name), el("td", {}, when(p.completed_at)), el("td", {}, p.mode), el("td", {}, p.strategy),
    el("td", {}, p.consistency || ""), el("td", {}, p.disks.map((d) => d.name).join(", ")),
    el("td", {}, bytes(p.size)), el("td", {}, bytes(p.stored_bytes)), el("td", {}, restore, " ", browse));
}

function openRestore(p) {
  say("restore-error", "");
  say("restore-title", `${p.vm_name} from ${when(p.completed_at)}`);
  form.restore_point.value = p.backup_id;
  form.name.value = `${p.vm_name}-restored`;
  form.target.value = "new";
  restoreDialog.showModal();
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const ask = {restore_point: form.restore_point.value, power_on: form.power_on.checked};
  if (form.target.value === "replace") ask.replace = true;
  else if (form.name.value.trim()) ask.name = form.name.value.trim();
  if (form.cluster.value.trim()) ask.cluster = form.cluster.value.trim();
  if (form.storage_domain.value.trim()) ask.storage_domain = form.storage_domain.value.trim();
  try {
    const asked = await api("POST", "/api/restores", ask);
    location.assign("/jobs/" + encodeURIComponent(asked.request_id));
  } catch (e) {
    say("restore-error", (e.field ? `${e.field}: ` : "") + failure(e));
  }
});

async function load() {
  const vm = main.dataset.vm;
  const points = await api("GET", "/api/restore-points" + (vm ? "?vm=" + encodeURIComponent(vm) : ""));
  rows(document.getElementById("points"), points, pointRow, vm ? `no restore point of ${vm}` : "no restore point");
}

async function choices() {
  // the clusters and VM names the engine has, offered in the inputs (any other may be typed)
  const vms = await api("GET", "/api/vms");
  const clusters = [...new Set(vms.map((v) => v.cluster).filter(Boolean))].sort();
  document.getElementById("clusters").replaceChildren(...clusters.map((c) => el("option", {value: c})));
  document.getElementById("vm-names").replaceChildren(...vms.map((v) => el("option", {value: v.name})));
}

load().catch((e) => say("points-error", failure(e)));
choices().catch(() => {});

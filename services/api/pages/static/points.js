// Restore points, newest first, and the restore dialog: a new VM (named), or the original replaced; another
// cluster or storage domain; power on. The restore is asked through /api/restores and followed on its job page.
import {api, bytes, dialog, el, failure, rows, say, when} from "/static/console.js";

const main = document.querySelector("main");
const restoreDialog = dialog("restore-dialog");
const form = document.getElementById("restore-form");
const nameInput = document.getElementById("restore-name");
const replace = document.getElementById("restore-replace");
// a replaced VM keeps its name: the name is asked only for a new VM
for (const radio of form.querySelectorAll("input[name=as]")) {
  radio.addEventListener("change", () => { nameInput.disabled = replace.checked; });
}

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
  nameInput.value = `${p.vm_name}-restored`;
  nameInput.disabled = false;
  document.getElementById("restore-as-new").checked = true;
  restoreDialog.showModal();
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const ask = {restore_point: form.restore_point.value, power_on: form.power_on.checked};
  if (replace.checked) ask.replace = true;
  else if (nameInput.value.trim()) ask.name = nameInput.value.trim();
  if (form.cluster.value) ask.cluster = form.cluster.value;
  if (form.storage_domain.value) ask.storage_domain = form.storage_domain.value;
  try {
    const asked = await api("POST", "/api/restores", ask);
    location.assign("/jobs/" + encodeURIComponent(asked.request_id));
  } catch (e) {
    say("restore-error", failure(e));
  }
});

async function load() {
  const vm = main.dataset.vm;
  const points = await api("GET", "/api/restore-points" + (vm ? "?vm=" + encodeURIComponent(vm) : ""));
  rows(document.getElementById("points"), points, pointRow, vm ? `no restore point of ${vm}` : "no restore point");
}

async function targets() {
  // the engine's clusters and data storage domains, offered in the dialog after "the original's"
  const found = await api("GET", "/api/restore-targets");
  document.getElementById("restore-cluster").append(...found.clusters.map((c) => el("option", {value: c.name},
                                                                                      c.name)));
  document.getElementById("restore-storage-domain").append(...found.storage_domains.map((d) => el(
    "option", {value: d.name}, d.available === null ? d.name : `${d.name} (${bytes(d.available)} free)`)));
}

async function vmNames() {
  const vms = await api("GET", "/api/vms");
  document.getElementById("vm-names").replaceChildren(...vms.map((v) => el("option", {value: v.name})));
}

load().catch((e) => say("points-error", failure(e)));
targets().catch((e) => say("points-error", `no cluster or storage domain choices from the engine: ${failure(e)}`));
vmNames().catch(() => {});

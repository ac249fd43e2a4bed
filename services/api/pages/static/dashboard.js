// The dashboard: every VM with its protection state, the last 24 hours' failures, what the restore points stored,
// the jobs seen since the service started; a VM's backup is started from here.
import {api, bytes, dialog, el, failure, jobRow, rows, say, when} from "/static/console.js";

const DAY = "24h";

function vmRow(vm) {
  const point = vm.last_restore_point;
  const result = vm.last_result;
  const backup = el("button", {type: "button", class: "backup", "data-vm": vm.name}, "Back up…");
  backup.addEventListener("click", () => openBackup(vm));
  return el("tr", {"data-vm": vm.name},
    el("td", {class: "vm-name"}, vm.name),
    el("td", {}, vm.cluster || ""),
    el("td", {class: vm.protected ? "yes" : "no"}, vm.protected ? "yes" : "no"),
    el("td", {}, vm.policy || "–"),
    el("td", {}, point ? el("a", {href: "/restore-points?vm=" + encodeURIComponent(vm.name)},
                            `${when(point.completed_at)} (${point.mode})`) : "none"),
    el("td", {class: result ? "state-" + result.outcome : ""},
       result ? `${result.outcome} ${when(result.at)}${result.message ? ": " + result.message : ""}` : ""),
    el("td", {}, backup));
}

const backupDialog = dialog("backup-dialog");
const backupForm = document.getElementById("backup-form");

function openBackup(vm) {
  say("backup-error", "");
  say("backup-vm-name", vm.name);
  backupForm.vm.value = vm.name;
  backupDialog.showModal();
}

backupForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    const asked = await api("POST", "/api/backups", {
      vm: backupForm.vm.value, mode: backupForm.mode.value, strategy: backupForm.strategy.value,
      quiesce: backupForm.quiesce.checked});
    location.assign("/jobs/" + encodeURIComponent(asked.request_id));
  } catch (e) {
    say("backup-error", failure(e));
  }
});

// each part on its own: an engine that does not answer leaves the rest shown
const problems = [];

async function part(path, show) {
  try {
    show(await api("GET", path));
  } catch (e) {
    problems.push(failure(e));
    say("dashboard-error", problems.join("; "));
  }
}

part("/api/vms", (vms) => {
  say("protected-count", vms.filter((v) => v.protected).length);
  say("unprotected-count", vms.filter((v) => !v.protected).length);
  rows(document.getElementById("vms"), vms, vmRow, "the engine lists no VM");
});
part("/api/history?since=" + DAY, (history) => {
  const failures = history.filter((r) => r.outcome === "failed" && r.what.endsWith(" failed"));
  say("failure-count", failures.length);
  rows(document.getElementById("failures"), failures, (r) => el("tr", {},
    el("td", {}, when(r.at)), el("td", {}, r.what), el("td", {}, r.vm), el("td", {}, r.policy),
    el("td", {}, r.message)), "no failure");
});
part("/api/restore-points", (points) => {
  say("storage-used", bytes(points.reduce((sum, p) => sum + (p.stored_bytes || 0), 0)));
  say("point-count", points.length);
});
part("/api/jobs", (jobs) => rows(document.getElementById("jobs"), jobs, jobRow, "none yet"));

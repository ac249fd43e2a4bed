// One job's live progress: its events from the API's stream (/api/jobs/ID/events, server-sent events), replayed
// from the first and followed to the final one; a broken stream is resumed after the last event seen.
import {api, el, failure, loginAgain, say, when} from "/static/console.js";

const FINAL = new Set(["completed", "failed", "cancelled"]);
const rid = document.querySelector("main").dataset.request;
const bar = document.getElementById("job-progress");
const list = document.getElementById("job-events");
let lastId = -1;
let ended = false;

function show(event) {
  const percent = typeof event.percent === "number" ? event.percent : null;
  if (percent !== null) {
    bar.value = percent;
    say("job-percent", `${percent} %`);
  }
  say("job-state", event.kind);
  document.getElementById("job-state").className = "state-" + event.kind;
  list.append(el("li", {"data-kind": event.kind, "data-percent": percent === null ? null : percent},
                 `${when(event.at)} ${event.kind}${percent !== null ? ` ${percent} %` : ""}`,
                 event.message ? `: ${event.message}` : ""));
  if (FINAL.has(event.kind)) {
    ended = true;
    result(event);
  }
}

function result(event) {
  const out = document.getElementById("job-result");
  if (event.kind !== "completed") {
    out.replaceChildren(el("span", {class: "error"}, event.message || event.kind));
  } else if (event.job === "backup" && event.backup_id) {
    out.replaceChildren("Restore point ", el("a", {href: `/restore-points/${encodeURIComponent(event.backup_id)}/files`,
                                                   id: "job-point"}, event.backup_id), " stored.");
  } else if (event.job === "restore") {
    out.replaceChildren(`Restored${event.vm_id ? " as VM " + event.vm_id : ""}.`);
  }
}

// one SSE message: "id: N", "event: KIND", "data: JSON" lines
function message(block) {
  let data = "";
  for (const line of block.split("\n")) {
    if (line.startsWith("id: ")) lastId = Number(line.slice(4));
    else if (line.startsWith("data: ")) data += line.slice(6);
  }
  if (data) show(JSON.parse(data));
}

async function follow() {
  const headers = {"Accept": "text/event-stream"};
  if (lastId >= 0) headers["Last-Event-ID"] = String(lastId);
  const response = await fetch(`/api/jobs/${encodeURIComponent(rid)}/events`, {credentials: "same-origin", headers});
  if (response.status === 401) return loginAgain();
  if (!response.ok) {
    const doc = await response.json().catch(() => ({}));
    throw new Error(doc.error || `${response.status} ${response.statusText}`);
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const {value, done} = await reader.read();
    if (done) break;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      message(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
    }
  }
}

async function run() {
  const job = await api("GET", `/api/jobs/${encodeURIComponent(rid)}`);
  say("job-kind", job.job);
  say("job-subject", job.job === "restore" ? (job.restore_point || "") : (job.vm || ""));
  document.title = `${job.job} ${job.vm || job.restore_point || ""} · olvm-backup`;
  for (let tries = 0; !ended; tries += 1) {
    try {
      await follow();
    } catch (e) {
      say("job-error", `${failure(e)} (following again)`);
      if (tries > 20) throw e;
    }
    if (!ended) await new Promise((r) => setTimeout(r, 1000));
  }
  say("job-error", "");
}

run().catch((e) => say("job-error", failure(e)));

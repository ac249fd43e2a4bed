// Policies: what each selects and when it runs next; anyone may run one now, an admin edits, creates and deletes
// them (the document as JSON, as the API takes it). Operators get no editor (and the API would answer 403).
import {api, el, failure, say} from "/static/console.js";

const admin = document.body.dataset.role === "admin";
const holder = document.getElementById("policies");
const notes = new Map();  // policy name -> what its last save said, shown again once the list is reloaded

function editable(p) {
  const doc = {...p};
  delete doc.next_runs;
  return JSON.stringify(doc, null, 2);
}

function rules(selection) {
  const rule = (r) => (r.tag !== undefined ? `tag ${r.tag}` : `name ${r.name}`);
  const parts = [];
  if (selection.include.length) parts.push("include " + selection.include.map(rule).join(", "));
  if (selection.exclude.length) parts.push("exclude " + selection.exclude.map(rule).join(", "));
  if (selection.clusters.length) parts.push("clusters " + selection.clusters.join(", "));
  return parts.join("; ") || "no rule";
}

function card(p) {
  const error = el("p", {class: "status", role: "status"}, notes.get(p.name) || "");
  notes.delete(p.name);
  const facts = el("dl", {},
    el("dt", {}, "Kind"), el("dd", {}, p.kind || "backup"),
    el("dt", {}, "Description"), el("dd", {}, p.description || ""),
    el("dt", {}, "VMs"), el("dd", {class: "policy-vms"}, [...p.vms, ...p.assigned].join(", ") || "none named"),
    el("dt", {}, "Selection"), el("dd", {}, `${rules(p.selection)} (${p.assignment})`),
    el("dt", {}, "Schedules"), el("dd", {}, p.schedules.map((s) => `${s.name}: ${s.cron} ${s.timezone} ${s.mode}`)
                                    .join("; ") || "none"),
    el("dt", {}, "Next runs"), el("dd", {}, p.next_runs.map((r) => `${r.schedule} ${r.next}`).join("; ") || "none"),
    el("dt", {}, "Retention"), el("dd", {}, Object.entries(p.retention).map(([k, v]) => `${k} ${v}`).join(", ") ||
                                  "keep all"));
  const buttons = el("div", {class: "buttons"});
  if ((p.kind || "backup") === "backup") {
    const run = el("button", {type: "button", class: "run"}, "Run now");
    run.addEventListener("click", async () => {
      try {
        const ran = await api("POST", `/api/policies/${encodeURIComponent(p.name)}/run`, {});
        const links = ran.requested.map((r) => el("a", {href: "/jobs/" + encodeURIComponent(r.request_id)}, r.vm));
        error.replaceChildren("Backups asked: ", ...links.flatMap((a, i) => (i ? [", ", a] : [a])));
      } catch (e) {
        error.textContent = failure(e);
      }
    });
    buttons.append(run);
  }
  const node = el("section", {class: "card policy", "data-policy": p.name}, el("h2", {}, p.name), facts, buttons);
  if (admin) node.append(editor(p, error));
  node.append(error);
  return node;
}

function editor(p, error) {
  const text = el("textarea", {rows: 16, spellcheck: "false", class: "policy-document"}, editable(p));
  const save = el("button", {type: "button", class: "save"}, "Save");
  const remove = el("button", {type: "button", class: "delete"}, "Delete");
  save.addEventListener("click", async () => {
    let doc;
    try {
      doc = JSON.parse(text.value);
    } catch (e) {
      error.textContent = `not JSON: ${e.message}`;
      return;
    }
    try {
      const saved = await api("PUT", `/api/policies/${encodeURIComponent(p.name)}`, doc);
      notes.set(p.name, saved.changed.length ? `saved: ${saved.changed.join(", ")} changed` : "saved: no change");
      await load();
    } catch (e) {
      error.textContent = failure(e);
    }
  });
  remove.addEventListener("click", async () => {
    if (!confirm(`Delete policy ${p.name}? Its restore points stay.`)) return;
    try {
      await api("DELETE", `/api/policies/${encodeURIComponent(p.name)}`);
      load();
    } catch (e) {
      error.textContent = failure(e);
    }
  });
  return el("details", {class: "edit"}, el("summary", {}, "Edit"), text, el("div", {class: "buttons"}, save, remove));
}

async function load() {
  const doc = await api("GET", "/api/policies");
  holder.replaceChildren(...(doc.policies.length ? doc.policies.map(card) : [el("p", {}, "No policy yet.")]));
  document.getElementById("problems").replaceChildren(...doc.problems.map((p) => el("li", {}, p)));
}

const create = document.getElementById("new-policy-form");
if (create) {
  create.addEventListener("submit", async (event) => {
    event.preventDefault();
    say("new-policy-error", "");
    let doc;
    try {
      doc = JSON.parse(create.document.value);
    } catch (e) {
      say("new-policy-error", `not JSON: ${e.message}`);
      return;
    }
    try {
      await api("POST", "/api/policies", doc);
      document.getElementById("new-policy").open = false;
      load();
    } catch (e) {
      say("new-policy-error", failure(e));
    }
  });
}

load().catch((e) => say("policies-error", failure(e)));

// Backups and restores the service has seen since it started, newest first.
import {api, failure, jobRow, rows, say} from "/static/console.js";

api("GET", "/api/jobs").then((jobs) => rows(document.getElementById("jobs"), jobs, jobRow, "none yet"))
  .catch((e) => say("jobs-error", failure(e)));

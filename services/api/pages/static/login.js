// The login form posts JSON to /api/login, which sets the session cookie; then on to the page asked for.
import {api, failure, say} from "/static/console.js";

const form = document.getElementById("login-form");
form.addEventListener("submit", async (event) => {
  event.preventDefault();
  say("login-error", "");
  const data = new FormData(form);
  try {
    await api("POST", "/api/login", {username: data.get("username"), password: data.get("password")});
    location.assign(document.querySelector("main").dataset.next || "/");
  } catch (e) {
    say("login-error", failure(e));
    form.password.value = "";
  }
});

// The dashboard's entry point: login with an API key, then a hash router over the pages.
//   #/jobs[?status=S]   #/jobs/<id>   #/compare?ids=a,b[&metric=m]   #/components[/<kind>]

import { checkKey, session } from "./api.js";
import { renderCompare } from "./compare.js";
import { renderComponents } from "./components.js";
import { renderJob } from "./job.js";
import { renderJobs } from "./jobs.js";
import { errorBox, isJobId } from "./dom.js";

const view = document.getElementById("view");
const login = document.getElementById("login");
const form = document.getElementById("login-form");
const keyInput = document.getElementById("api-key");
const loginError = document.getElementById("login-error");
const nav = document.getElementById("nav");
const logout = document.getElementById("logout");

let cleanup = () => {};

function parseHash() {
  const raw = window.location.hash.replace(/^#\/?/, "");
  const [path, query = ""] = raw.split("?");
  return { parts: path.split("/").filter(Boolean).map(decodeURIComponent), params: new URLSearchParams(query) };
}

function route() {
  cleanup();
  cleanup = () => {};
  const loggedIn = Boolean(session.key);
  login.hidden = loggedIn;
  nav.hidden = !loggedIn;
  logout.hidden = !loggedIn;
  if (!loggedIn) {
    view.replaceChildren();
    keyInput.focus();
    return;
  }
  const { parts, params } = parseHash();
  const [page = "jobs", id] = parts;
  for (const link of nav.querySelectorAll("a")) link.classList.toggle("active", link.dataset.nav === page);
  if (page === "jobs" && id && !isJobId(id)) view.replaceChildren(errorBox(`not a job id: ${id}`));
  else if (page === "jobs" && id) cleanup = renderJob(view, id);
  else if (page === "compare") cleanup = renderCompare(view, params);
  else if (page === "components") cleanup = renderComponents(view, id);
  else cleanup = renderJobs(view, params);
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const key = keyInput.value.trim();
  loginError.textContent = "";
  try {
    await checkKey(key);
  } catch (error) {
    loginError.textContent = error.status === 401 ? "That key was not accepted." : error.message;
    return;
  }
  session.save(key);
  keyInput.value = "";
  route();
});

logout.addEventListener("click", () => {
  session.clear();
  route();
});

// A key revoked mid-session: back to the login form.
window.addEventListener("regimen:unauthorized", () => {
  if (session.key) {
    session.clear();
    route();
    loginError.textContent = "The API key was rejected; log in again.";
  }
});

window.addEventListener("hashchange", route);
route();

// The JSON API with the session's key: `Authorization: Bearer <key>`, as api/deps.py expects.

const KEY = "regimen.apiKey";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export const session = {
  get key() {
    return sessionStorage.getItem(KEY);
  },
  save(key) {
    sessionStorage.setItem(KEY, key);
  },
  clear() {
    sessionStorage.removeItem(KEY);
  },
};

function url(path, params = {}) {
  const u = new URL(path, window.location.origin);
  for (const [name, value] of Object.entries(params)) {
    for (const v of Array.isArray(value) ? value : [value]) {
      if (v !== undefined && v !== null && v !== "") u.searchParams.append(name, String(v));
    }
  }
  return u;
}

async function request(method, path, params, key = session.key) {
  const response = await fetch(url(path, params), {
    method,
    headers: { Authorization: `Bearer ${key ?? ""}`, Accept: "application/json" },
  });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      if (typeof body.detail === "string") message = body.detail;
    } catch {
      // not JSON: keep the status line
    }
    if (response.status === 401) window.dispatchEvent(new CustomEvent("regimen:unauthorized"));
    throw new ApiError(response.status, message);
  }
  return response;
}

export async function get(path, params) {
  return (await request("GET", path, params)).json();
}

export async function post(path) {
  return (await request("POST", path)).json();
}

/** Checks a key before it is saved: any authenticated read will do. */
export async function checkKey(key) {
  await request("GET", "/v1/jobs", { limit: 1 }, key);
}

/** Artifacts need the key too, so a plain link cannot fetch them: download through a blob. */
export async function download(path, filename) {
  const blob = await (await request("GET", path)).blob();
  const href = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = href;
  a.download = filename;
  a.click();
  setTimeout(() => URL.revokeObjectURL(href), 1000);
}

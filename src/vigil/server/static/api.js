// Calls to the vigil API: the session's CSRF token on every write, RFC 9457 problems as ApiError.

export const session = { csrf: null, role: null, name: null, mustChange: false };

/** An API failure carrying the problem+json fields (title, detail, hint). */
export class ApiError extends Error {
  constructor(status, problem) {
    const detail = problem.detail || problem.title || `HTTP ${status}`;
    super(detail);
    this.status = status;
    this.title = problem.title || "error";
    this.detail = detail;
    this.hint = problem.hint || null;
    this.problem = problem;
  }
}

const listeners = { unauthorized: [] };

/** Call ``fn(error)`` when a request answers 401 (the session expired or was closed). */
export function onUnauthorized(fn) {
  listeners.unauthorized.push(fn);
}

async function problemOf(res) {
  const type = res.headers.get("content-type") || "";
  try {
    if (type.includes("json")) return await res.json();
    const text = await res.text();
    return { title: res.statusText || "error", detail: text.slice(0, 300) || `HTTP ${res.status}` };
  } catch {
    return { title: res.statusText || "error", detail: `HTTP ${res.status}` };
  }
}

/**
 * One API call. ``opts``: json (a body sent as JSON), form (a FormData), query (an object; arrays
 * repeat the key). Resolves with the decoded JSON, rejects with ApiError.
 */
export async function api(method, path, opts = {}) {
  const headers = { accept: "application/json" };
  let body;
  if (opts.json !== undefined) {
    headers["content-type"] = "application/json";
    body = JSON.stringify(opts.json);
  } else if (opts.form) {
    body = opts.form;
  }
  if (method !== "GET" && session.csrf) headers["x-csrf-token"] = session.csrf;
  let url = path;
  if (opts.query) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(opts.query)) {
      if (v === undefined || v === null || v === "") continue;
      for (const one of Array.isArray(v) ? v : [v]) q.append(k, one);
    }
    const s = q.toString();
    if (s) url += `?${s}`;
  }
  let res;
  try {
    res = await fetch(url, { method, headers, body, credentials: "same-origin" });
  } catch (err) {
    throw new ApiError(0, {
      title: "network error",
      detail: `the server did not answer (${err.message})`,
      hint: "check that vigil serve is running and the network is up",
    });
  }
  if (!res.ok) {
    const err = new ApiError(res.status, await problemOf(res));
    if (res.status === 401 && !opts.noAuthRedirect) for (const fn of listeners.unauthorized) fn(err);
    throw err;
  }
  if (res.status === 204) return null;
  return res.json();
}

export const get = (path, query) => api("GET", path, { query });
export const post = (path, json, query) => api("POST", path, { json, query });
export const patch = (path, json) => api("PATCH", path, { json });
export const del = (path) => api("DELETE", path);
export const upload = (path, form, query) => api("POST", path, { form, query });

/** The URL of a stored image (enrolment photo, alarm crop, frame thumbnail). */
export const media = (sha) => `/api/media/${encodeURIComponent(sha)}`;

export const ROLE_PAGES = {
  admin: [
    "dashboard",
    "alarms",
    "galleries",
    "cameras",
    "search",
    "investigations",
    "clusters",
    "compare",
    "attendance",
    "redact",
    "audit",
    "transparency",
    "admin",
    "webhooks",
  ],
  supervisor: [
    "dashboard",
    "alarms",
    "galleries",
    "cameras",
    "search",
    "investigations",
    "clusters",
    "compare",
    "attendance",
    "redact",
    "transparency",
  ],
  operator: ["dashboard", "alarms", "cameras", "search", "investigations", "clusters"],
  auditor: ["audit", "transparency", "alarms"],
};

export const can = {
  manage: () => session.role === "admin" || session.role === "supervisor",
  live: () => ["admin", "supervisor", "operator"].includes(session.role),
  admin: () => session.role === "admin",
  audit: () => session.role === "admin" || session.role === "auditor",
};

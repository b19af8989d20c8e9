// The JSON API, called like any client. The session is an HttpOnly cookie the page
// cannot read; every request carries the console's header, without which the gateway
// ignores that cookie (a page on another origin cannot send it: no CORS is granted).

const CONSOLE_HEADER = { "X-Ragway-Console": "1" };

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

let onSessionLost = () => {};

/** Called with the detail when a request answers 401 (the session ended). */
export function whenSessionLost(handler) {
  onSessionLost = handler;
}

async function detailOf(response) {
  try {
    const body = await response.json();
    if (typeof body.detail === "string") return body.detail;
    if (body.detail !== undefined) return JSON.stringify(body.detail);
  } catch {
    // not JSON: the status text says enough
  }
  return response.statusText || `HTTP ${response.status}`;
}

/**
 * `method path` with an optional JSON (or FormData) body. Resolves to the parsed JSON,
 * or with `{raw: true}` to the Response itself (for streams and downloads).
 */
export async function api(method, path, body, { signal, raw = false } = {}) {
  const init = { method, headers: { ...CONSOLE_HEADER }, signal, credentials: "same-origin" };
  if (body instanceof FormData) {
    init.body = body;
  } else if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (!response.ok) {
    const detail = await detailOf(response);
    if (response.status === 401 && !path.startsWith("/console/")) onSessionLost(detail);
    throw new ApiError(response.status, detail);
  }
  if (raw) return response;
  const type = response.headers.get("Content-Type") || "";
  return type.includes("json") ? response.json() : response.text();
}

/** The `data:` payloads of a server-sent event stream, as strings, as they arrive. */
export async function* events(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, "");
        const data = block
          .split(/\r?\n/)
          .filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(5).replace(/^ /, ""))
          .join("\n");
        if (data) yield data;
      }
    }
  } finally {
    reader.releaseLock();
  }
}

const probes = new Map();

/**
 * Whether the gateway has a route, asked once per page load with a GET: 404 means
 * absent; 200 (a GET route) or 405 (a route for another method) mean present.
 */
export function hasRoute(path) {
  if (!probes.has(path)) {
    probes.set(
      path,
      fetch(path, { headers: CONSOLE_HEADER, credentials: "same-origin" })
        .then((response) => response.status !== 404)
        .catch(() => false),
    );
  }
  return probes.get(path);
}

/** A list from a reply that is either a bare list or `{items}` / `{data}` / `{users}`. */
export function listOf(reply, key = "items") {
  if (Array.isArray(reply)) return reply;
  if (reply && Array.isArray(reply[key])) return reply[key];
  for (const name of ["items", "data", "users", "keys"]) {
    if (reply && Array.isArray(reply[name])) return reply[name];
  }
  return [];
}

/** How many files a collection holds: list items carry `file_count` (Open WebUI 0.12.4's
 * list shape), a whole collection its `files`. */
export function fileCount(collection) {
  if (typeof collection.file_count === "number") return collection.file_count;
  return (collection.files || []).length;
}

/** Live status of a file: calls `update(status)` for each change until it settles. */
export async function watchFile(fileId, update, signal) {
  const path = `/api/v1/files/${encodeURIComponent(fileId)}/process/status?stream=true`;
  const response = await api("GET", path, undefined, { signal, raw: true });
  for await (const data of events(response)) {
    const status = JSON.parse(data);
    update(status);
    if (status.status === "completed" || status.status === "failed") return status;
  }
  return null;
}

export async function uploadFile(file) {
  const form = new FormData();
  form.append("file", file, file.name);
  return api("POST", "/api/v1/files/", form);
}

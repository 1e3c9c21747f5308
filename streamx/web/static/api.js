// JSON calls to this server's /api routes; the session cookie goes along (same origin).

export class ApiError extends Error {
  constructor(status, message, code) {
    super(`${status}: ${message}`);
    this.status = status;
    this.code = code;
  }
}

export async function api(method, path, body, signal) {
  const init = { method, signal, credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch("/api" + path, init);
  let data;
  try {
    data = await response.json();
  } catch {
    data = { error: `${response.statusText || "error"} (the answer is not JSON)` };
  }
  if (!response.ok) throw new ApiError(response.status, data.error ?? response.statusText, data.code);
  return data;
}

export const query = (fields) => "?" + new URLSearchParams(fields).toString();

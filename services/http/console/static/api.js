// The admin API, as the console uses it. The admin key lives in this module's closure only:
// it is sent in a header (never in a URL) and kept nowhere else (no cookie, no storage).

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const KEY_HEADER = "X-Devreg-Admin-Key";

export function connect(appId, adminKey) {
  const base = `/admin/${encodeURIComponent(appId)}`;
  const headers = { [KEY_HEADER]: adminKey, Accept: "application/json" };

  async function get(path, query = {}) {
    const params = new URLSearchParams();
    for (const [name, value] of Object.entries(query)) {
      if (value !== null && value !== undefined && value !== "") params.set(name, String(value));
    }
    const url = base + path + (params.size ? `?${params}` : "");
    let response;
    try {
      response = await fetch(url, { headers, cache: "no-store" });
    } catch {
      throw new ApiError(0, 0, "devreg did not answer. Is it still running at this address?");
    }
    const body = await response.json().catch(() => null);
    if (!response.ok) {
      const code = body?.code ?? 0;
      throw new ApiError(response.status, code, body?.message ?? `HTTP ${response.status}`);
    }
    return body;
  }

  const enc = encodeURIComponent;
  return {
    appId,
    channels: () => get("/messaging/channels"),
    devices: (channel, query) => get(`/messaging/channels/${enc(channel)}/devices`, query),
    series: (channel, query) => get(`/messaging/channels/${enc(channel)}/subscriptions`, query),
    registration: (device) => get(`/messaging/registrations/${enc(device)}`),
    history: (device, after) => get(`/messaging/registrations/${enc(device)}/history`, { after }),
    asOf: (device, ms) => get(`/messaging/registrations/${enc(device)}/as-of/${ms}`),
    live: (filters, handlers, signal) => follow(`${base}/live`, filters, headers, handlers, signal),
  };
}

// Server-sent events read with fetch(): EventSource cannot send the key's header.
async function follow(url, filters, headers, handlers, signal) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(filters)) if (value) params.set(name, value);
  const target = url + (params.size ? `?${params}` : "");
  let response;
  try {
    response = await fetch(target, { headers, signal, cache: "no-store" });
  } catch (error) {
    if (signal.aborted) return;
    throw new ApiError(0, 0, "devreg did not answer. Is it still running at this address?");
  }
  if (!response.ok) {
    const body = await response.json().catch(() => null);
    throw new ApiError(response.status, body?.code ?? 0, body?.message ?? `HTTP ${response.status}`);
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        dispatch(buffer.slice(0, end), handlers);
        buffer = buffer.slice(end + 2);
      }
    }
  } catch (error) {
    if (!signal.aborted) throw new ApiError(0, 0, "The connection to devreg was lost.");
  }
}

function dispatch(block, handlers) {
  let kind = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event: ")) kind = line.slice(7);
    else if (line.startsWith("data: ")) data.push(line.slice(6));
  }
  if (!data.length) return; // a keep-alive comment
  const payload = JSON.parse(data.join("\n"));
  handlers[kind]?.(payload);
}

// What to tell a person when a call fails.
export function explain(error) {
  if (!(error instanceof ApiError)) return `Something went wrong in the console: ${error}`;
  if (error.status === 401 || error.status === 403) {
    return "devreg did not accept that app id and admin key. Check both and sign in again.";
  }
  if (error.status === 503) {
    return `devreg is busy and asks to try again in a moment (${error.message}).`;
  }
  if (error.status === 0) return error.message;
  return `devreg answered: ${error.message}`;
}

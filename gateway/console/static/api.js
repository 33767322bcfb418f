// The console's only way to the gateway: the public REST API, with the key the
// user signed in with (kept in sessionStorage: gone with the tab, never in a URL).

const KEY = "infergate.key";

export const session = {
  key: () => sessionStorage.getItem(KEY) || "",
  signIn: (key) => sessionStorage.setItem(KEY, key),
  signOut: () => sessionStorage.removeItem(KEY),
};

// An error from the gateway: the HTTP status, the gRPC status code (a number,
// google.rpc.Code) and its message.
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
  get denied() {
    return this.status === 403;
  }
}

function headers(extra = {}) {
  const h = { ...extra };
  const key = session.key();
  if (key) h.authorization = `Bearer ${key}`;
  return h;
}

async function failure(reply) {
  let body = {};
  try {
    body = await reply.json();
  } catch {
    // not JSON: keep the status line
  }
  const code = body.code || 0;
  const message = body.message || reply.statusText || `HTTP ${reply.status}`;
  return new ApiError(reply.status, code, message);
}

// One JSON call: `api("GET", "/v1/models")`, `api("POST", "/v1/apps?app_id=x", {...})`.
export async function api(method, path, body) {
  const init = { method, headers: headers() };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const reply = await fetch(path, init);
  if (!reply.ok) throw await failure(reply);
  const text = await reply.text();
  return text ? JSON.parse(text) : {};
}

// A server-streaming call read as NDJSON: onMessage(result) per message. Resolves
// when the stream ends; rejects with ApiError on an HTTP error or an in-stream
// error. `signal` (an AbortController's) stops it.
export async function stream(path, body, onMessage, signal) {
  const reply = await fetch(path, {
    method: "POST",
    headers: headers({ "content-type": "application/json", accept: "application/x-ndjson" }),
    body: JSON.stringify(body),
    signal,
  });
  if (!reply.ok) throw await failure(reply);
  const reader = reply.body.getReader();
  const decoder = new TextDecoder();
  let buffered = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffered += decoder.decode(value, { stream: true });
    let newline;
    while ((newline = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, newline).trim();
      buffered = buffered.slice(newline + 1);
      if (!line) continue;
      const frame = JSON.parse(line);
      if (frame.error) throw new ApiError(200, frame.error.code || 0, frame.error.message);
      onMessage(frame.result);
    }
  }
}

// A raw-body upload with progress (fetch has no upload progress): resolves with
// the JSON reply. onProgress(fraction) as the bytes leave.
export function upload(path, file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    for (const [k, v] of Object.entries(headers({ "content-type": file.type || "application/octet-stream" }))) {
      xhr.setRequestHeader(k, v);
    }
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
    xhr.onload = () => {
      let body = {};
      try {
        body = JSON.parse(xhr.responseText || "{}");
      } catch {
        // keep the status
      }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(new ApiError(xhr.status, body.code || 0, body.message || `HTTP ${xhr.status}`));
    };
    xhr.onerror = () => reject(new ApiError(0, 14, "the gateway could not be reached"));
    xhr.send(file);
  });
}

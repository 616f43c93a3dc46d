// api.js: every request the console makes, all to the node that served it.
//
// Calls go to the same `/v1/...` routes the CLI uses, so the server validates every write
// and its error text is what the operator sees. The ACL token (when the cluster has ACLs)
// lives in sessionStorage only, so it dies with the tab, and goes out as
// `Authorization: Bearer` on every request, watches included. A 401 asks for a token and
// sends the request again: a refused request wrote nothing, so sending it again is safe.
// Page logic lives in the page modules; DOM helpers in view.js.

const TOKEN_KEY = "pyxis.token";

/// An error answer of the API: `status`, the wire `code` and the server's `message`.
export class ApiError extends Error {
  constructor(status, body, text) {
    const message = body && typeof body.message === "string" ? body.message : text || `HTTP ${status}`;
    super(message);
    this.status = status;
    this.code = body && body.error ? body.error : null;
    this.body = body;
  }
}

/// The token of this tab, or null.
export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

/// Forgets the token (for "sign out").
export function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

function headers(json) {
  const h = {};
  if (json) h["content-type"] = "application/json";
  const t = token();
  if (t) h["authorization"] = `Bearer ${t}`;
  return h;
}

// One prompt at a time: every call that got a 401 while it is open waits for the same answer.
let prompt = null;

/// Shows the token dialog (with `reason` under it) and resolves once a token was entered.
export function askToken(reason) {
  if (prompt) return prompt;
  prompt = new Promise((resolve) => {
    const dialog = document.getElementById("token-dialog");
    const form = document.getElementById("token-form");
    const input = document.getElementById("token-input");
    const error = document.getElementById("token-error");
    error.hidden = !reason;
    error.textContent = reason || "";
    input.value = "";
    const done = (ev) => {
      ev.preventDefault();
      const value = input.value.trim();
      if (!value) return;
      sessionStorage.setItem(TOKEN_KEY, value);
      form.removeEventListener("submit", done);
      dialog.close();
      prompt = null;
      resolve();
    };
    form.addEventListener("submit", done);
    // Escape would close the dialog with nothing entered; keep it open until a token is given.
    dialog.addEventListener("cancel", (ev) => ev.preventDefault(), { once: true });
    dialog.showModal();
    input.focus();
  });
  return prompt;
}

/// The message shown in the token dialog after a 401 (the server's own words).
function unauthorized(body, text) {
  const why = body && body.message ? body.message : text;
  return token() ? `The token was refused: ${why}` : `The server asks for a token: ${why}`;
}

/// `text` parsed as JSON, or null (an empty body, or one that is not the API's).
function parse(text) {
  try {
    return text ? JSON.parse(text) : null;
  } catch (_) {
    return null;
  }
}

/// Sends one request; resolves to `{status, headers, json, text}` for a 2xx answer and
/// throws an `ApiError` for any other. `body` is sent as JSON (a string as it is).
export async function call(method, path, body) {
  for (;;) {
    const init = { method, headers: headers(body !== undefined), cache: "no-store" };
    if (body !== undefined) init.body = typeof body === "string" ? body : JSON.stringify(body);
    const resp = await fetch(path, init);
    const text = await resp.text();
    const json = parse(text);
    if (resp.status === 401) {
      await askToken(unauthorized(json, text));
      continue;
    }
    if (!resp.ok) throw new ApiError(resp.status, json, text);
    return { status: resp.status, headers: resp.headers, json, text };
  }
}

/// GET `path` as JSON.
export async function get(path) {
  return (await call("GET", path)).json;
}

/// GET `path` as JSON, or null on a 404 (a value that is not stored, or a route this node
/// does not have).
export async function getOrNull(path) {
  try {
    return await get(path);
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) return null;
    throw e;
  }
}

/// GET one typed value with its mod revision: `{value, rev}`, or `{value: null, rev: 0}`
/// when nothing is stored (rev 0 is what `prev_rev` takes for "must not exist").
export async function getVersioned(path) {
  try {
    const r = await call("GET", path);
    return { value: r.json, rev: Number(r.headers.get("x-pyxis-mod-revision") || 0) };
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) return { value: null, rev: 0 };
    throw e;
  }
}

/// PUT `value` at `path` only if its mod revision is still `rev` (compare-and-set).
export async function putIf(path, value, rev) {
  const sep = path.includes("?") ? "&" : "?";
  return (await call("PUT", `${path}${sep}prev_rev=${rev}`, value)).json;
}

/// Every value under `prefix` of the raw key space, parsed as JSON where it parses:
/// `[{key, value, mod_rev, lease}]` (the typed routes have no listing for these).
export async function listPrefix(prefix) {
  const r = await get(`/v1/kv${prefix}?prefix=true`);
  return r.entries.map((e) => {
    let value = null;
    try {
      value = e.value !== undefined ? JSON.parse(e.value) : null;
    } catch (_) {
      value = null;
    }
    return { key: e.key, value, mod_rev: e.mod_rev, lease: e.lease };
  });
}

/// Whether ACLs are on: asks `/v1/acl/status` (a 404 means a node without ACLs) and, when
/// they are and no token is held, asks for one before anything else is loaded.
export async function checkAcl() {
  const status = await getOrNull("/v1/acl/status");
  const enabled = !!(status && status.enabled);
  if (enabled && !token()) await askToken("");
  return enabled;
}

/// Follows every change under `prefix` through `GET /v1/watch`, read as a stream of lines.
/// `onChange()` is called once per chunk holding events, and once when the stream (re)starts
/// from scratch, so the caller re-reads what it shows; `onState(text)` reports the stream's
/// state. A broken stream resumes from the last revision seen (an event of that revision may
/// come twice; callers re-read, so that is harmless); a 410 starts afresh. Returns `stop()`.
export function watch(prefix, onChange, onState) {
  const abort = new AbortController();
  let next = null; // revision to resume from; null = from now, then re-read everything
  let backoff = 250;
  const run = async () => {
    while (!abort.signal.aborted) {
      try {
        const from = next === null ? "" : `&from_rev=${next}`;
        const resp = await fetch(`/v1/watch${prefix}?prefix=true${from}`, {
          headers: headers(false),
          cache: "no-store",
          signal: abort.signal,
        });
        if (resp.status === 401) {
          // A revoked token ends the stream; this reconnect is where the page learns of it.
          const text = await resp.text();
          await askToken(unauthorized(parse(text), text));
          continue;
        }
        if (resp.status === 410) {
          next = null;
          continue;
        }
        if (!resp.ok) throw new Error(`watch answered ${resp.status}`);
        // A stream started from scratch re-reads once its first line arrives: everything
        // before that line is in the re-read, everything after it comes as events.
        let reread = next === null;
        onState("live");
        backoff = 250;
        await readLines(resp.body, (msgs) => {
          let changed = reread;
          reread = false;
          for (const m of msgs) {
            if (m.type === "progress") next = Math.max(next || 0, m.revision + 1);
            else if (m.type === "put" || m.type === "delete") {
              next = Math.max(next || 0, m.mod_rev);
              changed = true;
            } else if (m.type === "compacted") next = null;
          }
          if (changed) onChange();
        });
      } catch (e) {
        if (abort.signal.aborted) return;
      }
      onState("reconnecting");
      await new Promise((r) => setTimeout(r, backoff));
      backoff = Math.min(backoff * 2, 5000);
    }
  };
  run();
  return () => abort.abort();
}

/// Reads newline-delimited JSON from `body`, calling `onMessages(array)` per chunk read.
async function readLines(body, onMessages) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += decoder.decode(value, { stream: true });
    const lines = buf.split("\n");
    buf = lines.pop();
    const msgs = [];
    for (const l of lines) {
      if (!l.trim()) continue;
      try {
        msgs.push(JSON.parse(l));
      } catch (_) {
        // A line that is not JSON is not the server's; skip it rather than stop following.
      }
    }
    if (msgs.length) onMessages(msgs);
  }
}

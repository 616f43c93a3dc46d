// view.js: building DOM nodes and formatting values, shared by the pages.
//
// Text from the store (names, check output, error messages) only ever reaches the page as
// text nodes (`textContent`), never as HTML, so a service called `<script>` is just a name.
// Nothing here talks to the server (api.js) or knows a page (the page modules).

/// An element: `h("td", {class: "num"}, "3", child)`. Attributes starting with `on` are
/// listeners; `null`/`false` attributes and children are skipped.
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "value") el.value = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/// A table with a header row and one row per entry of `rows` (each an array of cells).
export function table(id, head, rows, empty) {
  if (!rows.length) return h("p", { class: "muted", id: id && `${id}-empty` }, empty || "None.");
  return h(
    "table",
    { id },
    h("thead", {}, h("tr", {}, head.map((c) => h("th", {}, c)))),
    h("tbody", {}, rows),
  );
}

/// A message box for the outcome of a change: `kind` is `error`, `ok` or `warn`.
export function notice(kind, title, ...body) {
  return h("div", { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" },
    h("strong", {}, title), " ", ...body);
}

/// A duration in milliseconds as `850 ms`, `12.3 s`, `4 min 5 s`, `2 h 10 min`.
export function duration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "–";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.floor(s % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

/// A Unix time in milliseconds as a local date and time.
export function when(ms) {
  if (!ms) return "–";
  return new Date(ms).toLocaleString();
}

/// The text of an error for the page: the server's own message for an API error.
export function errorText(e) {
  return e && e.message ? e.message : String(e);
}

/// Replaces the children of `el` with `children`.
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

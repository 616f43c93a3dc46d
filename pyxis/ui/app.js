// app.js: the console's entry point: hash routes, the one watch stream, the ACL check.
//
// Routes: `#/services`, `#/service/NAME`, `#/datacenters`, `#/cluster`, `#/agents`,
// `#/audit`. Each
// page module exports `mount(main, arg)` returning `{refresh(), unmount()}`. One watch on
// `/ns/` (services, instances, traffic, datacenters, agents) drives every page: a chunk
// of events asks the current page to re-read once (coalesced), so there is no reload and
// no polling per row. What a page shows and how it writes is in its own module.

import { checkAcl, getOrNull, watch } from "/ui/api.js";
import { h, replace, errorText } from "/ui/view.js";
import * as services from "/ui/services.js";
import * as service from "/ui/service.js";
import * as cluster from "/ui/cluster.js";
import * as agents from "/ui/agents.js";
import * as audit from "/ui/audit.js";

const main = document.getElementById("main");
let page = null;

/// The page for the current hash: `[module, argument, nav name]`.
function route() {
  const hash = decodeURIComponent(location.hash.replace(/^#\/?/, ""));
  const [head, ...rest] = hash.split("/");
  switch (head) {
    case "service":
      return [service, rest.join("/"), "services"];
    case "datacenters":
      return [cluster, "datacenters", "datacenters"];
    case "cluster":
      return [cluster, "cluster", "cluster"];
    case "agents":
      return [agents, null, "agents"];
    case "audit":
      return [audit, null, "audit"];
    default:
      return [services, null, "services"];
  }
}

function show() {
  if (page) page.unmount();
  const [mod, arg, nav] = route();
  for (const a of document.querySelectorAll("#nav a")) {
    a.classList.toggle("active", a.dataset.page === nav);
  }
  replace(main, h("p", { class: "muted" }, "Loading…"));
  page = mod.mount(main, arg);
}

// Coalesces the events of a burst into one re-read, and never runs two re-reads at once.
let pending = false;
let running = false;
async function refresh() {
  if (running) {
    pending = true;
    return;
  }
  running = true;
  try {
    do {
      pending = false;
      if (page) await page.refresh();
    } while (pending);
  } finally {
    running = false;
  }
}

async function who(enabled) {
  const el = document.getElementById("who");
  if (!enabled) {
    el.textContent = "ACLs off";
    return;
  }
  const self = await getOrNull("/v1/acl/token/self").catch(() => null);
  el.textContent = self ? `${self.role}${self.description ? ` · ${self.description}` : ""}` : "token set";
}

async function start() {
  try {
    const enabled = await checkAcl();
    who(enabled);
  } catch (e) {
    replace(main, h("p", { class: "error" }, `Cannot reach the store: ${errorText(e)}`));
  }
  window.addEventListener("hashchange", show);
  show();
  const live = document.getElementById("live");
  watch("/ns/", refresh, (state) => {
    live.textContent = state;
    live.classList.toggle("ok", state === "live");
    live.dataset.state = state;
  });
}

start();

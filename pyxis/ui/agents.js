// agents.js: the agents page (`#/agents`): every agent's node, datacenter, last contact,
// mirror revision and staleness, and its services' states, from `GET /v1/agents`.
//
// Records change through the live stream (`/ns/agents/` is under `/ns/`). An agent that
// stops (crash, SIGSTOP) writes nothing, so the page also ticks each "last contact" on
// the client every second from the value read and the time since the read, and re-reads
// on one page-level timer; an agent whose last contact is older than STALE_AFTER_MS is
// marked stale. Its record vanishes when its lease expires.

import { get } from "/ui/api.js";
import { h, notice, replace, table, errorText, duration } from "/ui/view.js";

/// Past this long without contact an agent is shown as stale: a live agent keeps its lease
/// alive every third of its TTL (3.3 s at the default 10 s), so at least one keep-alive was
/// missed; the record itself vanishes once the lease expires.
const STALE_AFTER_MS = 5000;
/// The page-level re-read while shown; the ticking in between is local.
const REREAD_EVERY_MS = 5000;

function states(services) {
  const by = new Map();
  for (const s of services || []) by.set(s.state, (by.get(s.state) || 0) + 1);
  return [...by.keys()].sort().map((k) => h("span", { class: `chip state-${k}` }, `${k} ${by.get(k)}`));
}

function serviceList(services) {
  return (services || []).map((s) => h("div", { class: "svc" },
    h("a", { href: `#/service/${encodeURIComponent(s.name)}` }, s.name),
    ` ${s.instance_id} `, h("span", { class: `status state-${s.state}` }, s.state),
    s.last_check && s.last_check.output ? h("span", { class: "muted" }, ` · ${s.last_check.output.slice(-80)}`) : null));
}

/// Mounts the agents page into `main`.
export function mount(main) {
  let seq = 0;
  let alive = true;
  let read = null; // {agents, at: performance.now() of the read}
  const body = h("div", { id: "agents" });
  const error = h("div", {});
  replace(main, h("h1", {}, "Agents"),
    h("p", { class: "muted" }, `An agent is stale after ${duration(STALE_AFTER_MS)} without contact.`),
    error, body);

  // Updates the ticking cells in place, so nothing else on the page is redrawn each second.
  const tick = () => {
    if (!read) return;
    const since = performance.now() - read.at;
    for (const row of body.querySelectorAll("tr[data-node]")) {
      // A record not bound to a lease (written by hand) has no last contact to tick.
      if (row.dataset.lastContact === "") {
        row.querySelector(".last-contact").textContent = "–";
        row.querySelector(".sync").textContent = "no lease";
        continue;
      }
      const base = Number(row.dataset.lastContact);
      const now = base + since;
      row.querySelector(".last-contact").textContent = `${duration(now)} ago`;
      const connected = row.dataset.storeConnected !== "false";
      const stale = now > STALE_AFTER_MS || !connected;
      row.classList.toggle("stale", stale);
      const sync = row.querySelector(".sync");
      sync.textContent = now > STALE_AFTER_MS ? "stale" : connected ? "in sync" : "store unreachable";
      sync.className = `sync status ${stale ? "status-critical" : "status-passing"}`;
    }
  };

  const draw = () => {
    const rows = read.agents.map((a) => h("tr", {
      "data-node": a.node, "data-last-contact": typeof a.last_contact_ms === "number" ? a.last_contact_ms : "",
      "data-store-connected": a.store_connected === false ? "false" : "true",
    },
    h("td", {}, a.node),
    h("td", {}, a.datacenter),
    h("td", { class: "last-contact" }),
    h("td", {}, h("span", { class: "sync status" })),
    h("td", { class: "num mirror-revision" }, String(a.mirror_revision ?? "–")),
    h("td", { class: "num staleness" }, duration(a.staleness_ms)),
    h("td", {}, states(a.services)),
    h("td", {}, serviceList(a.services)),
    h("td", { class: "muted" }, a.version || "")));
    replace(body, table("agent-table",
      ["Node", "DC", "Last contact", "State", "Mirror revision", "Staleness", "Services", "", "Version"],
      rows, "No agent has published a status record."));
    tick();
  };

  async function refresh() {
    const mine = ++seq;
    try {
      const r = await get("/v1/agents");
      if (!alive || mine !== seq) return;
      read = { agents: r.agents || [], at: performance.now() };
      replace(error);
      draw();
    } catch (e) {
      if (alive && mine === seq) replace(error, notice("error", "Cannot read the agents:", errorText(e)));
    }
  }

  refresh();
  const ticker = setInterval(tick, 1000);
  const timer = setInterval(refresh, REREAD_EVERY_MS);
  return {
    refresh,
    unmount: () => {
      alive = false;
      clearInterval(ticker);
      clearInterval(timer);
    },
  };
}

// services.js: the services page (`#/services`): every service with its instance counts
// (healthy / total) per datacenter and version, and a search box.
//
// Two reads per refresh, whatever the fleet's size: the typed service listing (names,
// definitions, totals) and one listing of `/ns/instances/` for the breakdown. The search
// box filters what is already loaded and survives live updates. One service's page is
// service.js.

import { get, listPrefix } from "/ui/api.js";
import { h, notice, replace, table, errorText } from "/ui/view.js";

/// Instance counts of one service by datacenter, then version: `Map<dc, Map<version, {healthy, total}>>`.
function breakdown(instances) {
  const by = new Map();
  for (const i of instances) {
    const dc = by.get(i.datacenter) || new Map();
    by.set(i.datacenter, dc);
    const v = dc.get(i.version || "") || { healthy: 0, total: 0 };
    dc.set(i.version || "", v);
    v.total += 1;
    if (i.status !== "critical") v.healthy += 1;
  }
  return by;
}

function counts(c) {
  return h("span", { class: c.healthy === c.total ? "ok" : c.healthy === 0 ? "bad" : "warn" },
    `${c.healthy}/${c.total}`);
}

function rows(list, instances, filter) {
  const f = filter.trim().toLowerCase();
  return list
    .filter((s) => !f || s.name.toLowerCase().includes(f))
    .map((s) => {
      const by = breakdown(instances.get(s.name) || []);
      const cells = [...by.keys()].sort().map((dc) => h("div", { class: "dc" },
        h("strong", {}, dc), " ",
        [...by.get(dc).keys()].sort().map((v) => h("span", { class: "chip", "data-dc": dc, "data-version": v },
          `${v || "unversioned"} `, counts(by.get(dc).get(v))))));
      return h("tr", { "data-service": s.name },
        h("td", {}, h("a", { href: `#/service/${encodeURIComponent(s.name)}` }, s.name)),
        h("td", { class: "num total" }, counts({ healthy: s.healthy, total: s.instances })),
        h("td", {}, cells.length ? cells : h("span", { class: "muted" }, "no instances")),
        h("td", {}, s.traffic ? h("span", { class: "chip" }, "policy") : ""),
        h("td", { class: "muted" }, (s.def && s.def.owner) || ""));
    });
}

/// Mounts the services page into `main`.
export function mount(main) {
  let seq = 0;
  let alive = true;
  let data = null;
  const search = h("input", {
    id: "search", type: "search", placeholder: "Search services", autocomplete: "off",
    oninput: () => draw(),
  });
  const body = h("div", { id: "services" });
  const error = h("div", {});
  replace(main, h("h1", {}, "Services"), h("div", { class: "row" }, search), error, body);
  search.focus();

  const draw = () => {
    if (!data) return;
    const r = rows(data.list, data.instances, search.value);
    replace(body, table("service-table", ["Service", "Healthy / total", "By datacenter and version", "", "Owner"], r,
      search.value ? `No service matches "${search.value}".` : "No services registered."));
  };

  async function refresh() {
    const mine = ++seq;
    try {
      const [list, entries] = await Promise.all([get("/v1/services"), listPrefix("/ns/instances/")]);
      const instances = new Map();
      for (const e of entries) {
        const m = /^\/ns\/instances\/([^/]+)\/([^/]+)$/.exec(e.key);
        if (!m || !e.value) continue;
        const list = instances.get(m[1]) || [];
        instances.set(m[1], list);
        list.push({ id: m[2], ...e.value });
      }
      if (!alive || mine !== seq) return;
      data = { list, instances };
      replace(error);
      draw();
    } catch (e) {
      if (alive && mine === seq) replace(error, notice("error", "Cannot list the services:", errorText(e)));
    }
  }

  refresh();
  return { refresh, unmount: () => { alive = false; } };
}

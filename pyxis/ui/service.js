// service.js: the page of one service (`#/service/NAME`): its definition, its instances
// (with each one's last check as its agent published it), its traffic policy and the
// controls that change it.
//
// The page re-reads everything on each live update and redraws the tables; a policy form
// with unsent edits is kept as it is, with the revision it was started from, and says so
// when the stored policy has moved on (applying it is then refused as a conflict). How the
// policy is changed is policy.js.

import { get, getOrNull, getVersioned } from "/ui/api.js";
import { h, notice, replace, table, errorText, when, duration } from "/ui/view.js";
import { drain, expired, groupsForm, inForce, shiftForm } from "/ui/policy.js";

async function load(name) {
  const n = encodeURIComponent(name);
  const [instances, policy, def, dcs, agents] = await Promise.all([
    get(`/v1/services/${n}/instances`),
    getVersioned(`/v1/traffic/${n}`),
    getOrNull(`/v1/services/${n}`),
    get("/v1/datacenters"),
    // Agents' records are optional: a node without the route, or no agent, shows no checks.
    getOrNull("/v1/agents").catch(() => null),
  ]);
  const checks = new Map();
  for (const a of (agents && agents.agents) || []) {
    for (const s of a.services || []) {
      if (s.name === name || !s.name) checks.set(s.instance_id, { ...s, node: a.node });
    }
  }
  return {
    instances,
    policy,
    def,
    // The configured ones (a stored value); policy.js adds those of this service's instances.
    datacenters: dcs.filter((d) => d.mod_rev !== null && d.mod_rev !== undefined).map((d) => d.name),
    checks,
  };
}

function lastCheck(c) {
  if (!c || !c.last_check) return h("span", { class: "muted" }, c ? c.state || "–" : "–");
  const lc = c.last_check;
  return h("div", { class: "check" },
    h("span", { class: lc.exit === 0 ? "ok" : "bad" },
      lc.exit === null || lc.exit === undefined ? "killed or not started" : `exit ${lc.exit}`),
    lc.duration_ms !== undefined ? ` · ${duration(lc.duration_ms)}` : "",
    lc.at ? h("span", { class: "muted" }, ` · ${typeof lc.at === "number" ? when(lc.at) : lc.at}`) : "",
    lc.output ? h("pre", { class: "output" }, lc.output) : null);
}

function instanceRows(d, onDrain) {
  // An expired policy's drains and weights no longer apply, so they are not shown as if they did.
  const overrides = inForce(d.policy.value).overrides || {};
  return d.instances.map((i) => {
    const o = overrides[i.id] || {};
    const drained = !!o.drain;
    const weight = o.weight !== undefined ? `${o.weight} (override of ${i.weight})` : String(i.weight);
    return h("tr", { "data-id": i.id, class: drained ? "drained" : "" },
      h("td", {}, i.id),
      h("td", {}, i.address),
      h("td", { class: "num" }, String(i.port)),
      h("td", {}, i.datacenter),
      h("td", {}, i.version || h("span", { class: "muted" }, "none")),
      h("td", { class: "num" }, weight),
      h("td", {}, h("span", { class: `status status-${i.status}` }, i.status),
        drained ? h("span", { class: "status status-drained" }, "drained") : null),
      h("td", {}, i.node),
      h("td", {}, lastCheck(d.checks.get(i.id))),
      h("td", {}, h("button", {
        id: `drain-${i.id}`, class: "small", "data-drained": drained ? "true" : "false",
        onclick: () => onDrain(i.id, !drained),
      }, drained ? "Undrain" : "Drain")));
  });
}

/// Mounts the page of service `name` into `main`.
export function mount(main, name) {
  let seq = 0;
  let alive = true;
  let data = null;
  const forms = { groups: null, shift: null };
  const boxes = {
    drain: h("div", { id: "drain-msg", class: "msg" }),
    groups: h("div", { id: "groups-msg", class: "msg" }),
    shift: h("div", { id: "shift-msg", class: "msg" }),
  };
  const slots = {
    def: h("div", { id: "service-def" }),
    instances: h("div", { id: "instances" }),
    policy: h("pre", { id: "policy-json" }),
    policyRev: h("span", { id: "policy-rev", class: "muted" }),
    groups: h("div", {}),
    groupsStale: h("div", { id: "groups-stale" }),
    shift: h("div", {}),
    shiftStale: h("div", { id: "shift-stale" }),
    error: h("div", { id: "page-error" }),
  };
  // Shared with policy.js; its fields are the latest data, replaced on every re-read.
  const ctx = {
    name,
    instances: [],
    datacenters: [],
    onApplied: (form) => {
      form.dirty = false;
      refresh();
    },
    onReload: () => {
      forms.groups = null;
      forms.shift = null;
      refresh();
    },
  };

  const onDrain = async (id, on) => {
    if (!data) return;
    if (await drain(ctx, data.policy, id, on, boxes.drain)) refresh();
  };

  replace(main,
    h("p", { class: "crumbs" }, h("a", { href: "#/services" }, "Services"), " / ", name),
    h("h1", { id: "service-name" }, name),
    slots.error,
    slots.def,
    h("section", { class: "card" }, h("h2", {}, "Instances"), slots.instances, boxes.drain),
    h("section", { class: "card" },
      h("h2", {}, "Traffic policy ", slots.policyRev), slots.policy),
    h("div", { class: "forms" },
      h("div", {}, slots.groups, slots.groupsStale, boxes.groups),
      h("div", {}, slots.shift, slots.shiftStale, boxes.shift)));

  // Rebuilds a form from the latest policy unless it holds unsent edits; then it only says
  // that the stored policy has moved on.
  const form = (kind, build, slot, stale) => {
    const f = forms[kind];
    if (!f || !f.dirty) {
      forms[kind] = { base: data.policy, dirty: false };
      replace(slot, build(ctx, forms[kind], boxes[kind]));
      replace(stale);
    } else if (f.base.rev !== data.policy.rev) {
      replace(stale, notice("warn", "Changed meanwhile:",
        `the stored policy is now at mod revision ${data.policy.rev} (you started from ` +
        `${f.base.rev}); applying your edits will be refused as a conflict.`));
    }
  };

  const render = () => {
    ctx.instances = data.instances;
    ctx.datacenters = data.datacenters;
    const def = data.def;
    replace(slots.def, def
      ? h("p", { class: "muted" }, `Owner ${def.owner || "–"} · DNS TTL ${def.ttl_secs} s` +
        (def.description ? ` · ${def.description}` : ""))
      : h("p", { class: "muted" }, "No service definition stored (defaults apply)."));
    const healthy = data.instances.filter((i) => i.status !== "critical").length;
    replace(slots.instances,
      h("p", { class: "muted", id: "instance-count" }, `${healthy} healthy of ${data.instances.length}`),
      table("instance-table",
        ["ID", "Address", "Port", "DC", "Version", "Weight", "Status", "Node", "Last check", ""],
        instanceRows(data, onDrain), "No instances registered."));
    replace(slots.policyRev, data.policy.rev
      ? `(mod revision ${data.policy.rev}${expired(data.policy.value) ? "; expired, not in force" : ""})`
      : "(none stored)");
    slots.policy.textContent = data.policy.value
      ? JSON.stringify(data.policy.value, null, 2)
      : "No traffic policy: the service definition's defaults apply.";
    form("groups", groupsForm, slots.groups, slots.groupsStale);
    form("shift", shiftForm, slots.shift, slots.shiftStale);
  };

  async function refresh() {
    const mine = ++seq;
    try {
      const d = await load(name);
      if (!alive || mine !== seq) return;
      data = d;
      replace(slots.error);
      render();
    } catch (e) {
      if (alive && mine === seq) replace(slots.error, notice("error", "Cannot read the service:", errorText(e)));
    }
  }

  refresh();
  return {
    refresh,
    unmount: () => {
      alive = false;
    },
  };
}

// cluster.js: the datacenters page (`#/datacenters`: each datacenter's client subnets and
// fallback order, and how many instances run there) and the cluster page (`#/cluster`:
// members, leader, term, this node's revision and applied index).
//
// Datacenters live under `/ns/`, so the live stream refreshes them. Membership and Raft
// positions are not keys, so the cluster page also re-reads on one page-level timer
// (every 2 s while it is shown), never per row.

import { get } from "/ui/api.js";
import { h, notice, replace, table, errorText } from "/ui/view.js";

const CLUSTER_EVERY_MS = 2000;

/// `GET /v1/datacenters`: every datacenter stored or named by an instance, with its counts.
async function loadDatacenters() {
  return get("/v1/datacenters");
}

function datacenterRows(list) {
  return list.map((d) => {
    // A stored value has a mod revision; one the schema rejects comes without `def`.
    const stored = d.mod_rev !== null && d.mod_rev !== undefined;
    const v = stored ? d.def || {} : null;
    return h("tr", { "data-dc": d.name },
      h("td", {}, d.name),
      h("td", {}, v ? (v.subnets || []).map((s) => h("code", { class: "chip" }, s)) : h("span", { class: "muted" }, "not configured")),
      h("td", {}, v && v.fallback && v.fallback.length ? v.fallback.join(" → ") : h("span", { class: "muted" }, "by name")),
      h("td", { class: "num" }, d.instances ? `${d.healthy}/${d.instances}` : "0"),
      h("td", { class: "muted num" }, stored ? String(d.mod_rev) : ""));
  });
}

async function loadCluster() {
  const [cluster, status] = await Promise.all([get("/v1/cluster"), get("/v1/status")]);
  return { cluster, status };
}

function clusterView(d) {
  const s = d.status;
  const c = d.cluster;
  const facts = [
    ["Leader", c.leader === null || c.leader === undefined ? "none known" : `node ${c.leader}`],
    ["Term", c.term],
    ["Revision", s.revision],
    ["Applied index", s.applied_index ?? "–"],
    ["Committed index", s.committed_index ?? "–"],
    ["Keys", s.keys],
    ["This node", `node ${s.id} (${s.state})`],
    ["Cluster id", s.cluster_id || "–"],
  ];
  const members = c.members.map((m) => h("tr", { "data-member": m.id },
    h("td", {}, String(m.id), m.id === c.leader ? h("span", { class: "chip ok" }, "leader") : null),
    h("td", {}, m.addr),
    h("td", {}, m.voter ? "voter" : "learner"),
    h("td", { class: "num" }, m.applied ?? "–"),
    h("td", { class: `num ${m.behind ? "bad" : ""}` }, m.lag ?? "–")));
  return [
    h("dl", { class: "facts", id: "cluster-facts" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", { "data-fact": k }, String(v))])),
    h("h2", {}, "Members"),
    table("member-table", ["ID", "Address", "Role", "Applied / matched", "Lag"], members),
  ];
}

/// Mounts the datacenters page (`what` = "datacenters") or the cluster page ("cluster").
export function mount(main, what) {
  let seq = 0;
  let alive = true;
  const body = h("div", {});
  const error = h("div", {});
  const dcs = what === "datacenters";
  replace(main, h("h1", {}, dcs ? "Datacenters" : "Cluster"), error, body);

  async function refresh() {
    const mine = ++seq;
    try {
      const view = dcs
        ? table("dc-table", ["Datacenter", "Client subnets", "Fallback", "Healthy / instances", "Mod revision"],
          datacenterRows(await loadDatacenters()), "No datacenters.")
        : clusterView(await loadCluster());
      if (!alive || mine !== seq) return;
      replace(error);
      replace(body, view);
    } catch (e) {
      if (alive && mine === seq) replace(error, notice("error", "Cannot read:", errorText(e)));
    }
  }

  refresh();
  const timer = dcs ? null : setInterval(refresh, CLUSTER_EVERY_MS);
  return {
    refresh,
    unmount: () => {
      alive = false;
      if (timer) clearInterval(timer);
    },
  };
}

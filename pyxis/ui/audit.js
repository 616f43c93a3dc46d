// audit.js: the audit page (`#/audit`): the newest operator and admin changes from
// `GET /v1/audit` (who: the token's description, accessor and role; what; each key before
// and after), newest first.
//
// Changes under `/ns/` arrive through the live stream; token and lease changes do not, so
// the page also re-reads on one page-level timer. A node without the route (404) says so.

import { getOrNull } from "/ui/api.js";
import { h, notice, replace, table, errorText, when } from "/ui/view.js";

const REREAD_EVERY_MS = 5000;
const LIMIT = 200;

function who(actor) {
  if (!actor) return "–";
  return h("div", {},
    h("strong", {}, actor.description || "–"),
    actor.role ? h("span", { class: "chip" }, actor.role) : null,
    actor.accessor ? h("div", { class: "muted" }, actor.accessor) : null);
}

function changes(entry) {
  const list = (entry.changes || []).map((c) => h("div", { class: "change" },
    h("code", {}, c.key),
    h("pre", { class: "output" }, `${c.before ?? "(absent)"}\n→ ${c.after ?? "(absent)"}`)));
  if (entry.more) list.push(h("p", { class: "muted" }, `and ${entry.more} more keys`));
  return list;
}

/// Mounts the audit page into `main`.
export function mount(main) {
  let seq = 0;
  let alive = true;
  const body = h("div", { id: "audit" });
  const error = h("div", {});
  replace(main, h("h1", {}, "Audit"), error, body);

  async function refresh() {
    const mine = ++seq;
    try {
      const r = await getOrNull(`/v1/audit?limit=${LIMIT}`);
      if (!alive || mine !== seq) return;
      replace(error);
      if (r === null) {
        replace(body, h("p", { class: "muted", id: "audit-missing" }, "This node keeps no audit history."));
        return;
      }
      const rows = [...(r.entries || [])].reverse().map((e) => h("tr", { "data-revision": e.revision },
        h("td", {}, when(e.time_ms)),
        h("td", { class: "num" }, String(e.revision)),
        h("td", {}, who(e.actor)),
        h("td", {}, h("code", {}, e.what)),
        h("td", {}, changes(e))));
      replace(body, table("audit-table", ["Time", "Revision", "Who", "What", "Before → after"], rows,
        "No change recorded yet."));
    } catch (e) {
      if (alive && mine === seq) replace(error, notice("error", "Cannot read the audit history:", errorText(e)));
    }
  }

  refresh();
  const timer = setInterval(refresh, REREAD_EVERY_MS);
  return {
    refresh,
    unmount: () => {
      alive = false;
      clearInterval(timer);
    },
  };
}

// policy.js: changing one service's traffic policy: version-group weights, forced
// datacenter shifts with an expiry, and instance drains.
//
// Every change is a read-modify-write of the whole policy at `PUT /v1/traffic/NAME` with
// `prev_rev` set to the mod revision of the policy the operator looked at, so a change made
// by someone else in between is a 409 that is shown (with the current value), never
// overwritten. The form keeps the policy it was started from while it has unsent edits,
// even when the live stream brings a newer one. Nothing is validated here beyond reading
// numbers: the server's checks and words are the ones that count. A change that would
// leave clients of a datacenter with no healthy instance where they are sent asks first.
// The page around it (instances, data loading) is service.js.

import { ApiError, getVersioned, putIf } from "/ui/api.js";
import { h, notice, replace, errorText, when, duration } from "/ui/view.js";

/// A number typed by the operator: an integer as a number, anything else as typed, so the
/// server names the field and says what is wrong with it.
export function typed(text) {
  const t = String(text).trim();
  return /^-?\d+$/.test(t) ? Number(t) : t;
}

function clone(v) {
  return JSON.parse(JSON.stringify(v || {}));
}

/// Whether `policy` has an `expires_at` and has passed it (routing then ignores all of it).
/// `expires_at: 0` is an expiry too, long past, as `TrafficPolicy::is_active` reads it.
export function expired(policy) {
  return hasExpiry(policy) && policy.expires_at <= Date.now();
}

function hasExpiry(policy) {
  return !!policy && policy.expires_at !== undefined && policy.expires_at !== null;
}

/// The policy in force: `policy`, or nothing once it expired. Changes start from this, so a
/// drain or a split written over an expired policy applies instead of inheriting its expiry.
export function inForce(policy) {
  return expired(policy) ? {} : policy || {};
}

/// Whether routing may use `inst` under `policy`: not critical and not drained.
function usable(inst, policy) {
  const p = inForce(policy);
  const o = p.overrides ? p.overrides[inst.id] : null;
  return inst.status !== "critical" && !(o && o.drain);
}

/// Where the clients of datacenter `dc` are sent under `policy`, and for which versions:
/// `[{to, version}]` (`version` null when the policy has no groups).
function destinations(policy, dc) {
  const p = inForce(policy);
  const shifts = (p.shifts || []).filter((s) => s.from_dc === dc && Number(s.percent) > 0);
  const moved = shifts.reduce((sum, s) => sum + Number(s.percent), 0);
  const to = shifts.map((s) => s.to_dc);
  if (p.prefer_same_dc !== false && moved < 100) to.push(dc);
  const groups = (p.groups || []).filter((g) => Number(g.weight) > 0).map((g) => g.version);
  const versions = groups.length ? groups : [null];
  return to.flatMap((t) => versions.map((version) => ({ to: t, version })));
}

function healthyAt(instances, policy, to, version) {
  return instances.filter(
    (i) => i.datacenter === to && (version === null || i.version === version) && usable(i, policy),
  ).length;
}

/// The client datacenters that `after` would leave without a healthy instance where they
/// are sent, and that `before` did not: one sentence each. Client datacenters are the
/// configured ones and those with instances.
export function risks(before, after, instances, datacenters) {
  const dcs = [...new Set([...datacenters, ...instances.map((i) => i.datacenter)])].sort();
  const out = [];
  for (const dc of dcs) {
    const was = destinations(before, dc);
    for (const d of destinations(after, dc)) {
      if (healthyAt(instances, after, d.to, d.version) > 0) continue;
      // Clients already sent to a datacenter without any usable instance lose nothing.
      const already = was.some((w) => w.to === d.to) && healthyAt(instances, before, d.to, null) === 0;
      if (already) continue;
      const what = d.version === null ? "" : ` of version ${d.version}`;
      const where = d.to === dc ? `in ${dc}` : `in ${d.to}, where they are shifted`;
      out.push(`clients in ${dc} would have no healthy instance${what} ${where}` +
        " (they fall back to another datacenter, or get no answer)");
    }
  }
  return [...new Set(out)];
}

/// Asks in `box` before a risky change; resolves true to go ahead.
function confirm(box, list) {
  return new Promise((resolve) => {
    const answer = (yes) => () => {
      replace(box);
      resolve(yes);
    };
    replace(box, h("div", { class: "notice warn", id: "confirm", role: "alertdialog" },
      h("strong", {}, "This change needs confirmation:"),
      h("ul", {}, list.map((r) => h("li", {}, r))),
      h("button", { id: "confirm-apply", class: "danger", onclick: answer(true) }, "Apply anyway"),
      " ",
      h("button", { id: "confirm-cancel", onclick: answer(false) }, "Cancel")));
  });
}

/// Applies `edit` (policy object -> policy object) to `base` (`{value, rev}`, what the
/// operator saw) and writes it with compare-and-set; reports in `box`. Resolves true when
/// the change was applied. `ctx` has `name`, `instances`, `datacenters`, `onReload`.
export async function change(ctx, base, edit, box) {
  let next;
  try {
    next = edit(clone(inForce(base.value)));
  } catch (e) {
    replace(box, notice("error", "Not sent:", h("span", { class: "local-message" }, errorText(e))));
    return false;
  }
  const list = risks(base.value, next, ctx.instances, ctx.datacenters);
  if (list.length && !(await confirm(box, list))) {
    replace(box, notice("warn", "Cancelled:", "nothing was written."));
    return false;
  }
  replace(box, h("p", { class: "muted" }, "Applying…"));
  const path = `/v1/traffic/${encodeURIComponent(ctx.name)}`;
  try {
    const r = await putIf(path, next, base.rev);
    replace(box, notice("ok", "Applied", `at revision ${r.revision}.`));
    return true;
  } catch (e) {
    if (e instanceof ApiError && e.status === 409) {
      await conflict(ctx, path, base, e, box);
    } else {
      replace(box, notice("error", `Refused (${e.status || "network"}):`,
        h("span", { class: "server-message" }, errorText(e))));
    }
    return false;
  }
}

/// Shows a lost compare-and-set: who won is not known, but what is stored now is.
async function conflict(ctx, path, base, err, box) {
  let current = null;
  try {
    current = await getVersioned(path);
  } catch (e) {
    current = null;
  }
  replace(box, h("div", { class: "notice error conflict", id: "conflict", role: "alert" },
    h("strong", {}, "Conflict: not applied. "),
    h("span", { class: "server-message" }, errorText(err)),
    h("p", {}, `Another client changed the traffic policy of ${ctx.name} after you read it ` +
      `(you edited mod revision ${base.rev}${current ? `; it is now ${current.rev}` : ""}). ` +
      "Your change was not written. The current value:"),
    h("pre", { id: "conflict-current" },
      current ? JSON.stringify(current.value, null, 2) : "(could not be read)"),
    h("button", { id: "conflict-reload", onclick: () => ctx.onReload() },
      "Discard my edits and show the current value")));
}

/// The version-group form: one weight per group, a row to add one. `form.dirty` is set on
/// the first edit; the page then keeps it (and its base revision) across live updates.
/// Outcomes go to `box`, which the page keeps when it rebuilds the form.
export function groupsForm(ctx, form, box) {
  const policy = inForce(form.base.value);
  const rows = (policy.groups || []).map((g) => ({ version: g.version, weight: String(g.weight) }));
  const versions = [...new Set(ctx.instances.map((i) => i.version).filter((v) => v))].sort();
  const body = h("tbody", {});
  const total = () => rows.reduce((s, r) => s + (Number(r.weight) || 0), 0);
  const dirty = () => {
    form.dirty = true;
    draw();
  };
  const draw = () => {
    replace(body, rows.map((r, i) => h("tr", { "data-version": r.version },
      h("td", {}, r.version),
      h("td", {}, h("input", {
        class: "group-weight", "data-version": r.version, value: r.weight, size: 6,
        inputmode: "numeric", "aria-label": `weight of ${r.version}`,
        oninput: (ev) => { r.weight = ev.target.value; form.dirty = true; share(); },
      })),
      h("td", { class: "share", id: `share-${r.version}` }),
      h("td", {}, h("button", { class: "small", onclick: () => { rows.splice(i, 1); dirty(); } },
        "remove")))));
    share();
  };
  const share = () => {
    for (const r of rows) {
      const cell = body.querySelector(`#share-${CSS.escape(r.version)}`);
      if (cell) cell.textContent = total() > 0 ? `${Math.round((100 * (Number(r.weight) || 0)) / total())} %` : "–";
    }
  };
  const addVersion = h("input", { id: "group-add-version", list: "known-versions", size: 10, placeholder: "version" });
  const addWeight = h("input", { id: "group-add-weight", size: 6, placeholder: "weight", inputmode: "numeric" });
  const add = () => {
    const version = addVersion.value.trim();
    if (!version) return;
    rows.push({ version, weight: addWeight.value.trim() || "0" });
    addVersion.value = "";
    addWeight.value = "";
    dirty();
  };
  const apply = async () => {
    const ok = await change(ctx, form.base, (p) => {
      p.groups = rows.map((r) => ({ version: r.version, weight: typed(r.weight) }));
      return p;
    }, box);
    if (ok) ctx.onApplied(form);
  };
  draw();
  return h("section", { class: "card", id: "groups" },
    h("h3", {}, "Version groups (gray release)"),
    h("p", { class: "muted" }, rows.length ? "Each client keeps its group while the weights hold; " +
      "a weight change moves only the clients near a boundary." : "No version split: every version is answered."),
    h("table", { id: "groups-table" },
      h("thead", {}, h("tr", {}, ["Version", "Weight", "Share", ""].map((c) => h("th", {}, c)))), body),
    h("datalist", { id: "known-versions" }, versions.map((v) => h("option", { value: v }))),
    h("div", { class: "row" }, addVersion, addWeight, h("button", { class: "small", onclick: add }, "add group")),
    h("div", { class: "row" }, h("button", { id: "groups-apply", class: "primary", onclick: apply }, "Apply weights"),
      h("span", { class: "muted" }, ` (compare-and-set on revision ${form.base.rev})`)));
}

/// The forced-shift form (and the shifts in force): FROM's clients, PERCENT of them, to TO,
/// optionally for a number of minutes (the policy's `expires_at`, which ends the whole policy).
/// Outcomes go to `box`, as for [`groupsForm`].
export function shiftForm(ctx, form, box) {
  const stored = form.base.value || {};
  const policy = inForce(stored);
  const dcs = [...new Set([...ctx.datacenters, ...ctx.instances.map((i) => i.datacenter)])].sort();
  const pick = (id) => h("select", { id, onchange: () => { form.dirty = true; } },
    dcs.map((d) => h("option", { value: d }, d)));
  const from = pick("shift-from");
  const to = pick("shift-to");
  if (dcs.length > 1) to.value = dcs[1];
  const percent = h("input", { id: "shift-percent", size: 4, value: "100", inputmode: "numeric",
    oninput: () => { form.dirty = true; } });
  const minutes = h("input", { id: "shift-minutes", size: 5, value: "30", inputmode: "numeric",
    oninput: () => { form.dirty = true; } });
  const write = async (edit) => {
    if (await change(ctx, form.base, edit, box)) ctx.onApplied(form);
  };
  const setShift = (p, f, t, pct) => {
    p.shifts = (p.shifts || []).filter((s) => !(s.from_dc === f && s.to_dc === t));
    if (pct !== 0) p.shifts.push({ from_dc: f, to_dc: t, percent: pct });
    return p;
  };
  const apply = () => write((p) => {
    const m = minutes.value.trim();
    if (m !== "") {
      if (!/^\d+$/.test(m) || Number(m) === 0) throw new Error("expiry: enter whole minutes (1 or more), or leave it empty for none");
      p.expires_at = Date.now() + Number(m) * 60000;
    }
    return setShift(p, from.value, to.value, typed(percent.value));
  });
  const now = Date.now();
  const expiry = hasExpiry(stored)
    ? stored.expires_at <= now
      ? `The stored policy expired at ${when(stored.expires_at)} and no longer applies; a change starts from the defaults.`
      : `This policy expires at ${when(stored.expires_at)} (in ${duration(stored.expires_at - now)}).`
    : "This policy does not expire.";
  const shifts = (policy.shifts || []).map((s) => h("li", { "data-shift": `${s.from_dc}-${s.to_dc}` },
    `${s.percent} % of ${s.from_dc}'s clients to ${s.to_dc} `,
    h("button", { class: "small", onclick: () => write((p) => setShift(p, s.from_dc, s.to_dc, 0)) }, "remove")));
  return h("section", { class: "card", id: "shifts" },
    h("h3", {}, "Forced datacenter shifts"),
    shifts.length ? h("ul", { id: "shift-list" }, shifts) : h("p", { class: "muted" }, "No shift in force."),
    h("p", { class: "muted", id: "policy-expiry" }, expiry),
    h("div", { class: "row" }, "Send ", percent, " % of ", from, "'s clients to ", to, " for ", minutes,
      " minutes (empty: keep the expiry; it applies to the whole policy)"),
    h("div", { class: "row" }, h("button", { id: "shift-apply", class: "primary", onclick: apply }, "Apply shift")));
}

/// Drains (or undrains) instance `id`: an override of the policy the page shows.
export function drain(ctx, base, id, on, box) {
  return change(ctx, base, (p) => {
    p.overrides = p.overrides || {};
    const o = { ...(p.overrides[id] || {}), drain: on };
    if (!on && o.weight === undefined) delete p.overrides[id];
    else p.overrides[id] = o;
    return p;
  }, box);
}

// The supervisor desk: live compliance alerts (acknowledge / resolve, kept in sync across
// desks), the live board with charts, read-only conversation view with live updates, held
// messages, and editors for compliance rules and the knowledge base.

import { HubClient, api } from "./hubclient.js";
import { Transcript } from "./transcript.js";
import { $, $$, el, fill, show, highlighted, duration, clock } from "./dom.js";
import { t, setupLanguage, onLangChange } from "./i18n.js";
import { signIn, showConnection } from "./staffsession.js";
import { lineChart, barChart } from "./charts.js";
import { beep } from "./attention.js";

const SCOPE = "supervisor";
const BOARD_EVERY_MS = 3000;
const MAX_SAMPLES = 480; // 24 minutes at one sample every 3 s

const desk = {
  token: null,
  client: null,
  alerts: new Map(), // id -> alert
  advisors: new Map(), // id -> name (from the board)
  samples: [], // [{time, queue, chats, alertsOpen}]
  board: null,
  watched: null, // {id, transcript}
  rules: [],
  kb: [],
};

const call = (method, path, body) => api(method, path, { token: desk.token, body });

// ---- alerts ---------------------------------------------------------------------------------
function upsertAlert(alert, live = false) {
  const old = desk.alerts.get(alert.id);
  // Stored alerts carry no message text; keep the text a live event brought.
  const merged = { ...old, ...alert, text: alert.text ?? old?.text, advisor_id: alert.advisor_id ?? old?.advisor_id };
  desk.alerts.set(alert.id, merged);
  renderAlerts();
  if (live && !old) {
    beep(520, 220);
    renderAlertsPerHour();
  }
}

function advisorName(id) {
  return desk.advisors.get(id) || (id ? id.slice(0, 8) : "—");
}

const SEVERITY = { block: 4, hold: 3, warn: 2, remind: 1 };
const STATE_ORDER = ["open", "acknowledged", "resolved"];

/** One card per flagged message: a message that breaks several rules raises one alert per rule. */
function alertGroups() {
  const groups = new Map();
  for (const a of desk.alerts.values()) {
    const key = a.message_id || a.id;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(a);
  }
  return [...groups.entries()]
    .map(([key, alerts]) => {
      alerts.sort((a, b) => (SEVERITY[b.tier] || 0) - (SEVERITY[a.tier] || 0) || a.rule_id.localeCompare(b.rule_id));
      const state = STATE_ORDER.find((st) => alerts.some((a) => a.state === st)) || "open";
      return { key, alerts, state, first: alerts[0], created_at: Math.max(...alerts.map((a) => a.created_at)) };
    })
    .sort((a, b) => b.created_at - a.created_at);
}

function renderAlerts() {
  const list = $("#alerts");
  const groups = alertGroups();
  $("#alerts-open").textContent = String(groups.filter((g) => g.state === "open").length);
  if (!groups.length) {
    fill(list, el("li", { class: "empty" }, t("sup.noAlerts")));
    return;
  }
  // Keep whatever a supervisor is typing in a notes box while alerts re-render.
  const typing = new Map($$(".alert input.notes", list).map((i) => [i.closest(".alert").dataset.alert, i.value]));
  fill(list, groups.map((g) => renderAlert(g, typing.get(g.key) || "")));
}

function renderAlert(group, notesValue) {
  const a = group.first;
  const notes = el("input", { class: "notes", placeholder: t("sup.notes"), value: notesValue });
  const disposition = el(
    "select",
    { class: "disposition" },
    ["confirmed", "false_positive", "coached"].map((d) => el("option", { value: d }, t(`sup.disposition.${d}`))),
  );
  const text = group.alerts.find((x) => x.text)?.text;
  const body = text
    ? highlighted(text, group.alerts.map((x) => ({ start: x.span_start, end: x.span_end, tier: x.tier, title: x.rule_id })))
    : group.alerts.map((x) => el("mark", { class: `hit tier-${x.tier}` }, x.matched));
  const decided = group.alerts.find((x) => x.disposition);
  const pending = (states) => group.alerts.filter((x) => states.includes(x.state)).map((x) => x.id);
  return el(
    "li",
    {
      class: `alert tier-${a.tier} state-${group.state}`,
      dataset: { alert: group.key, rule: group.alerts.map((x) => x.rule_id).join(" "), conversation: a.conversation_id },
    },
    el(
      "div",
      { class: "head" },
      el("span", { class: `pill tier-${a.tier}` }, t(`verdict.${a.tier}`)),
      group.alerts.map((x) => el("strong", { class: "rule", title: x.category }, x.rule_id)),
      el("span", {}, [...new Set(group.alerts.map((x) => x.category))].join(", ")),
      el("span", {}, `${t("role.advisor")}: ${a.sender_role === "advisor" ? advisorName(a.sender_id) : t(`role.${a.sender_role}`)}`),
      el("time", {}, clock(a.created_at)),
      el("span", { class: "pill state" }, t(`sup.state.${group.state}`)),
      el("button", { type: "button", class: "link small open-conv", onclick: () => openConversation(a.conversation_id) }, t("sup.open")),
    ),
    el("p", { class: "body" }, body),
    decided ? el("div", { class: "note" }, `${t(`sup.disposition.${decided.disposition}`)}${decided.notes ? ` · ${decided.notes}` : ""}`) : null,
    group.state === "resolved"
      ? null
      : el(
          "div",
          { class: "actions" },
          notes,
          group.state === "open"
            ? el("button", { type: "button", class: "ack", onclick: () => decideAlerts(pending(["open"]), "acknowledge", { notes: notes.value.trim() || undefined }) }, t("sup.ack"))
            : null,
          disposition,
          el("button", { type: "button", class: "primary resolve", onclick: () => decideAlerts(pending(["open", "acknowledged"]), "resolve", { disposition: disposition.value, notes: notes.value.trim() || undefined }) }, t("sup.resolve")),
        ),
  );
}

/** Acknowledge or resolve every alert of one message (one HTTP call per alert). */
async function decideAlerts(ids, action, body) {
  for (const id of ids) {
    try {
      const res = await call("POST", `/api/alerts/${encodeURIComponent(id)}/${action}`, body);
      upsertAlert(res.alert);
    } catch (err) {
      // Another desk may have decided it a moment before us: its alert_update brings the state.
      if (err.code !== "invalid_state") alertError(err);
    }
  }
}

function alertError(err) {
  const banner = $("#conn-banner");
  fill(banner, t("common.error", { message: `${t(`error.${err.code}`, { code: "" })} (${err.message})` }));
  show(banner, true);
  setTimeout(() => show(banner, false), 5000);
}

function dayStart() {
  const d = new Date();
  d.setHours(0, 0, 0, 0);
  return d.getTime() / 1000;
}

async function loadAlerts() {
  const res = await call("GET", `/api/alerts?since=${dayStart()}`);
  for (const a of res.alerts) upsertAlert(a);
  renderAlertsPerHour();
}

function renderAlertsPerHour() {
  const start = dayStart();
  const hours = new Array(24).fill(0);
  for (const a of desk.alerts.values()) {
    const h = Math.floor((a.created_at - start) / 3600);
    if (h >= 0 && h < 24) hours[h] += 1;
  }
  const upTo = Math.max(new Date().getHours() + 1, 1);
  const bars = hours.slice(0, upTo).map((value, h) => ({ label: `${h}`, value }));
  fill($("#chart-alerts"), el("h3", {}, t("sup.chartAlerts")), barChart(bars));
}

// ---- board ----------------------------------------------------------------------------------
async function pollBoard() {
  try {
    const board = await call("GET", "/api/supervisor/board");
    desk.board = board;
    for (const a of board.advisors) desk.advisors.set(a.id, a.name);
    desk.samples.push({
      time: board.time,
      queue: board.groups.reduce((s, g) => s + g.queue_length, 0),
      chats: board.advisors.reduce((s, a) => s + a.open_chats, 0),
      alertsOpen: [...desk.alerts.values()].filter((a) => a.state !== "resolved").length,
    });
    if (desk.samples.length > MAX_SAMPLES) desk.samples.shift();
    renderBoard();
  } catch (err) {
    if (err.status === 401) location.reload();
  }
}

function renderBoard() {
  const board = desk.board;
  if (!board) return;
  const head = (...keys) => el("tr", {}, keys.map((k) => el("th", {}, t(k))));
  fill(
    $("#groups-table"),
    head("sup.col.group", "sup.col.queue", "sup.col.longest", "sup.col.online"),
    board.groups.map((g) =>
      el("tr", { dataset: { group: g.group } }, el("td", {}, g.group), el("td", { class: "queue" }, String(g.queue_length)),
        el("td", {}, duration(g.longest_wait_s)), el("td", {}, String(g.online_advisors))),
    ),
  );
  fill(
    $("#advisors-table"),
    head("sup.col.name", "sup.col.status", "sup.col.load", "sup.col.frt", "sup.col.handled", "sup.col.sat", "sup.col.alerts"),
    board.advisors.map((a) =>
      el(
        "tr",
        { dataset: { advisor: a.id } },
        el("td", {}, a.name),
        el("td", {}, el("span", { class: `pill ${a.status}` }, t(`console.${a.status}`))),
        el("td", {}, `${a.open_chats}/${a.capacity}`),
        el("td", {}, duration(a.first_response_avg_s)),
        el("td", {}, String(a.handled_today)),
        el("td", {}, a.satisfaction === null || a.satisfaction === undefined ? "—" : Number(a.satisfaction).toFixed(2)),
        el("td", {}, String(a.alerts_today)),
      ),
    ),
  );
  const points = (key) => desk.samples.map((s) => [s.time, s[key]]);
  const fmt = (s) => clock(s);
  fill($("#chart-queue"), el("h3", {}, t("sup.chartQueue")), lineChart([{ name: "queue", points: points("queue") }], fmt));
  fill($("#chart-chats"), el("h3", {}, `${t("sup.chartChats")} / ${t("sup.alerts")}`),
    lineChart([{ name: "chats", points: points("chats") }, { name: "alerts", points: points("alertsOpen") }], fmt),
    el("div", { class: "legend" }, el("span", { class: "k0" }, `— ${t("sup.chartChats")}`), el("span", { class: "k1" }, `— ${t("sup.alerts")}`)));
}

// ---- conversation view ------------------------------------------------------------------------
async function openConversation(id) {
  setView("conversation");
  $("#conv-id").value = id;
  if (desk.watched) desk.client.untrack(desk.watched.id);
  const transcript = new Transcript($("#conv-messages"), { mineRole: "supervisor", staffView: true });
  transcript.clear();
  desk.watched = { id, transcript };
  fill($("#conv-head"));
  try {
    const res = await call("GET", `/api/conversations/${encodeURIComponent(id)}`);
    desk.watched.info = res;
    renderConversationHead();
    for (const m of res.messages) transcript.add(m);
    await desk.client.request({ type: "watch", conversation_id: id });
    desk.client.track(id, transcript.lastSeq);
    // Messages stored between the HTTP read and the watch arrive through resume.
    desk.client.request({ type: "resume", conversation_id: id, after_seq: transcript.lastSeq }).catch(() => {});
  } catch (err) {
    fill($("#conv-head"), t(`error.${err.code}`, { code: "" }));
  }
}

function renderConversationHead() {
  const res = desk.watched?.info;
  if (!res) return;
  const c = res.conversation;
  fill(
    $("#conv-head"),
    `${c.state} · ${c.channel} · ${c.group || "—"} · ${t("role.advisor")}: ${advisorName(c.advisor_id)}`,
    res.customer ? ` · ${t("sup.customer")}: ${res.customer.name} ${"★".repeat(res.customer.star || 0)} ${res.customer.risk_level}` : "",
    res.rating ? ` · ${t("sup.rating")}: ${res.rating.score ?? ""}` : "",
  );
}

// ---- holds ------------------------------------------------------------------------------------
async function loadHolds() {
  try {
    const res = await call("GET", "/api/holds");
    $("#holds-count").textContent = String(res.holds.length);
    fill(
      $("#holds"),
      res.holds.length
        ? res.holds.map((h) =>
            el(
              "div",
              { class: "hold", dataset: { message: h.message_id } },
              el("div", { class: "note" }, `${h.sender_name || advisorName(h.sender_id)} · ${clock(h.created_at)}`),
              el("p", {}, h.text),
              el("div", { class: "row" },
                el("button", { type: "button", class: "primary", onclick: () => decideHold(h.message_id, "approve") }, t("sup.approve")),
                el("button", { type: "button", onclick: () => decideHold(h.message_id, "reject") }, t("sup.reject")),
                el("button", { type: "button", class: "link small", onclick: () => openConversation(h.conversation_id) }, t("sup.open"))),
            ),
          )
        : el("div", { class: "empty" }, t("sup.noHolds")),
    );
  } catch (err) {
    fill($("#holds"), t(`error.${err.code}`, { code: "" }));
  }
}

async function decideHold(id, decision) {
  try {
    await call("POST", `/api/holds/${encodeURIComponent(id)}/${decision}`);
  } catch (err) {
    alertError(err);
  }
  loadHolds();
}

// ---- rules editor and "try this text" ---------------------------------------------------------
function editorList(container, items, activeId, onPick, label) {
  fill(
    container,
    items.map((item) =>
      el("div", { class: `item${item.id === activeId ? " active" : ""}`, dataset: { id: item.id }, onclick: () => onPick(item) }, label(item)),
    ),
  );
}

function withoutId(obj) {
  const { id, ...rest } = obj;
  return rest;
}

async function loadRules(activeId) {
  const res = await call("GET", "/api/rules");
  desk.rules = res.rules;
  editorList($("#rule-list"), desk.rules, activeId, pickRule, (r) => `${r.id} · ${r.category} · ${r.tier}`);
}

function pickRule(rule) {
  $("#rule-id").value = rule.id;
  $("#rule-json").value = JSON.stringify(withoutId(rule), null, 2);
  $("#rule-status").textContent = "";
  editorList($("#rule-list"), desk.rules, rule.id, pickRule, (r) => `${r.id} · ${r.category} · ${r.tier}`);
}

async function saveDoc(kind) {
  const id = $(`#${kind}-id`).value.trim();
  const status = $(`#${kind}-status`);
  if (!id) return;
  let body;
  try {
    body = JSON.parse($(`#${kind}-json`).value);
  } catch (err) {
    status.textContent = String(err.message);
    return;
  }
  const path = kind === "rule" ? `/api/rules/${encodeURIComponent(id)}` : `/api/kb/entries/${encodeURIComponent(id)}`;
  try {
    const res = await call("PUT", path, body);
    status.textContent = t("sup.saved", { version: res.version });
    if (kind === "rule") loadRules(id);
    else loadKb(id);
  } catch (err) {
    status.textContent = `${t(`error.${err.code}`, { code: "" })}: ${err.message}`;
  }
}

async function deleteDoc(kind) {
  const id = $(`#${kind}-id`).value.trim();
  const status = $(`#${kind}-status`);
  if (!id || !window.confirm(t("sup.confirmDelete", { id }))) return;
  const path = kind === "rule" ? `/api/rules/${encodeURIComponent(id)}` : `/api/kb/entries/${encodeURIComponent(id)}`;
  try {
    const res = await call("DELETE", path);
    status.textContent = t("sup.deleted", { version: res.version });
    if (kind === "rule") loadRules();
    else loadKb();
  } catch (err) {
    status.textContent = `${t(`error.${err.code}`, { code: "" })}: ${err.message}`;
  }
}

async function checkText(e) {
  e.preventDefault();
  const text = $("#check-text").value;
  if (!text.trim()) return;
  const out = $("#check-result");
  try {
    const res = await call("POST", "/api/compliance/check", { text, role: $("#check-role").value });
    fill(
      out,
      el("div", {}, el("span", { class: `pill tier-${res.tier}` }, t("sup.tier", { tier: res.tier })), res.hold ? ` · ${t("verdict.hold")}` : ""),
      el("p", { class: "body" }, highlighted(text, res.hits.filter((h) => !h.in_previous).map((h) => ({ ...h, title: h.rule_id })))),
      el("ul", {}, res.hits.map((h) => el("li", {}, `${h.rule_id} · ${h.category} · ${h.tier} · “${h.matched}”`))),
    );
  } catch (err) {
    fill(out, `${t(`error.${err.code}`, { code: "" })}: ${err.message}`);
  }
}

// ---- knowledge base ---------------------------------------------------------------------------
async function loadKb(activeId) {
  const res = await call("GET", "/api/kb");
  desk.kb = res.entries;
  renderKbList(activeId);
}

function renderKbList(activeId) {
  const q = $("#kb-filter").value.trim();
  const items = desk.kb.filter((e) => !q || e.id.includes(q) || (e.question || "").includes(q)).slice(0, 300);
  editorList($("#kb-list"), items, activeId, pickKb, (e) => `${e.id} · ${e.question}`);
}

function pickKb(entry) {
  $("#kb-id").value = entry.id;
  $("#kb-json").value = JSON.stringify(withoutId(entry), null, 2);
  $("#kb-status").textContent = "";
  renderKbList(entry.id);
}

async function loadUnanswered() {
  try {
    const res = await call("GET", "/api/kb/unanswered");
    fill(
      $("#unanswered"),
      res.clusters.length
        ? res.clusters.map((c) =>
            el("div", { class: "cluster" },
              el("strong", {}, c.representative), ` · ${t("sup.clusterCount", { count: c.count })}`,
              c.advisor_reply ? el("div", { class: "note" }, c.advisor_reply) : null),
          )
        : el("div", { class: "empty" }, t("common.none")),
    );
  } catch (err) {
    fill($("#unanswered"), t(`error.${err.code}`, { code: "" }));
  }
}

// ---- views and wiring ---------------------------------------------------------------------------
function setView(name) {
  for (const v of $$(".view")) show(v, v.dataset.view === name);
  for (const b of $$("#desk-nav button")) b.classList.toggle("active", b.dataset.view === name);
  if (name === "holds") loadHolds();
  if (name === "rules") loadRules().catch(alertError);
  if (name === "kb") {
    loadKb().catch(alertError);
    loadUnanswered();
  }
}

function wire(client) {
  client.on("alert", (ev) => {
    upsertAlert(ev, true);
    if (ev.tier === "hold") loadHolds();
  });
  client.on("alert_update", (ev) => upsertAlert(ev.alert));
  client.on("message", (ev) => {
    if (desk.watched && ev.conversation_id === desk.watched.id) desk.watched.transcript.add(ev);
  });
  client.on("conversation", (ev) => {
    const info = desk.watched?.id === ev.conversation_id ? desk.watched.info : null;
    if (info) {
      info.conversation = { ...info.conversation, state: ev.state, advisor_id: ev.advisor_id ?? info.conversation.advisor_id };
      renderConversationHead();
    }
  });
  client.on("auth_ok", () => {
    // After a reconnect the server no longer knows what we watched: ask again.
    if (desk.watched) client.request({ type: "watch", conversation_id: desk.watched.id }).catch(() => {});
    loadAlerts().catch(() => {});
  });
}

async function main() {
  setupLanguage();
  const { token, user } = await signIn(SCOPE, ["supervisor", "admin"]);
  desk.token = token;
  $("#me-name").textContent = user.name || user.username;
  show($("#desk"), true);
  const client = new HubClient({ token });
  desk.client = client;
  showConnection(client);
  wire(client);
  for (const b of $$("#desk-nav button")) b.addEventListener("click", () => setView(b.dataset.view));
  $("#conv-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const id = $("#conv-id").value.trim();
    if (id) openConversation(id);
  });
  $("#rule-save").addEventListener("click", () => saveDoc("rule"));
  $("#rule-delete").addEventListener("click", () => deleteDoc("rule"));
  $("#rule-new").addEventListener("click", () => {
    $("#rule-id").value = "";
    $("#rule-json").value = JSON.stringify({ category: "promise_returns", tier: "block", roles: ["advisor"], terms: [] }, null, 2);
  });
  $("#check-form").addEventListener("submit", checkText);
  $("#kb-save").addEventListener("click", () => saveDoc("kb"));
  $("#kb-delete").addEventListener("click", () => deleteDoc("kb"));
  $("#kb-new").addEventListener("click", () => {
    $("#kb-id").value = "";
    $("#kb-json").value = JSON.stringify({ question: "", answer: "", category: "general", similar_questions: [] }, null, 2);
  });
  $("#kb-filter").addEventListener("input", () => renderKbList());
  onLangChange(() => {
    renderAlerts();
    renderBoard();
    renderAlertsPerHour();
  });
  renderAlerts();
  client.connect();
  loadHolds();
  await pollBoard();
  setInterval(pollBoard, BOARD_EVERY_MS);
}

main();

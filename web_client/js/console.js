// The advisor console: presence, several chats in tabs with unread counts, the grab pool,
// customer panel, transcript, KB suggestions, quick replies, transfer, close, and the
// inline compliance notice when a reply is blocked (the text stays in the input).

import { HubClient, api } from "./hubclient.js";
import { Transcript } from "./transcript.js";
import { $, el, fill, show, highlighted, clock, duration } from "./dom.js";
import { t, setupLanguage, onLangChange } from "./i18n.js";
import { signIn, showConnection } from "./staffsession.js";
import { beep, notify, needsPermission, askPermission } from "./attention.js";

const SCOPE = "advisor";
const GROUPS = ["account", "trading", "margin", "wealth", "complaints", "general"];
// The shipped knowledge base's categories; "general" first, the default for a learned entry.
const KB_CATEGORIES = [
  "general", "account", "trading", "margin", "wealth", "complaints", "fees", "ipo", "transfer",
  "password_app", "risk_assessment",
];
const QUEUE_REFRESH_MS = 4000;

const app = {
  token: null,
  user: null,
  client: null,
  chats: new Map(), // conversation id -> Chat
  active: null,
  pool: new Map(), // conversation id -> {offer, node}
};

class Chat {
  constructor(conversation, { customer = null, investor = null } = {}) {
    this.id = conversation.id;
    this.conversation = conversation;
    this.customer = customer;
    this.investor = investor || { id: conversation.investor_id, name: "" };
    this.past = null;
    this.suggestions = [];
    this.unread = 0;
    this.ended = null; // null | "closed" | "unassigned"
    this.typingTimer = null;
    this.buildPane();
    this.transcript = new Transcript(this.list, {
      mineRole: "advisor",
      staffView: true,
      decorate: (node, message) => addLearnAction(this, node, message),
    });
  }

  title() {
    return this.customer?.name || this.investor?.name || this.id.slice(0, 6);
  }

  buildPane() {
    this.list = el("ol", { class: "messages" });
    this.body = el("div", { class: "chat-body" }, this.list);
    this.typing = el("div", { class: "typing", hidden: true }, t("chat.typing"));
    this.notice = el("div", { class: "block-notice", hidden: true, role: "alert" });
    this.input = el("textarea", { class: "reply-input", rows: 3, maxlength: 4000, placeholder: t("console.placeholder") });
    this.sendButton = el("button", { type: "submit", class: "primary" }, t("chat.send"));
    const form = el("form", { class: "send-form" }, this.input, this.sendButton);
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      sendReply(this);
    });
    this.input.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        form.requestSubmit();
      }
    });
    let lastTyping = 0;
    this.input.addEventListener("input", () => {
      const now = Date.now();
      if (!this.ended && now - lastTyping > 2000) {
        lastTyping = now;
        app.client.notify({ type: "typing", conversation_id: this.id });
      }
    });
    this.transferTo = el("input", { list: "groups", placeholder: t("console.transferTo"), class: "transfer-to" });
    this.transferNote = el("input", { placeholder: t("console.transferNote"), class: "transfer-note" });
    this.transferForm = el(
      "form",
      { class: "transfer-form", hidden: true },
      this.transferTo,
      this.transferNote,
      el("button", { type: "submit", class: "primary" }, t("console.doTransfer")),
    );
    this.transferForm.addEventListener("submit", (e) => {
      e.preventDefault();
      transfer(this);
    });
    this.head = el("div", { class: "pane-head" });
    this.pane = el(
      "div",
      { class: "chat-pane", hidden: true, dataset: { conversation: this.id } },
      this.head,
      this.body,
      this.typing,
      this.notice,
      this.transferForm,
      el("div", { class: "advisor-composer" }, form),
    );
    this.renderHead();
  }

  renderHead() {
    const c = this.conversation;
    fill(
      this.head,
      el("strong", {}, this.title()),
      el("span", { class: "pill" }, `${t("console.channel")}: ${c.channel || "web"}`),
      c.group ? el("span", { class: "pill" }, `${t("console.group")}: ${c.group}`) : null,
      this.ended ? el("span", { class: "pill offline" }, t(this.ended === "closed" ? "console.closed" : "console.transferred")) : null,
      el("span", { class: "spacer" }),
      el("button", { type: "button", class: "transfer-toggle", disabled: !!this.ended, onclick: () => {
        show(this.transferForm, this.transferForm.hidden);
        if (!this.transferForm.hidden) this.transferTo.focus();
      } }, t("console.transfer")),
      el("button", { type: "button", class: "close-chat", disabled: !!this.ended, onclick: () => closeChat(this) }, t("console.close")),
    );
  }

  end(kind) {
    this.ended = kind;
    this.input.disabled = true;
    this.sendButton.disabled = true;
    show(this.transferForm, false);
    this.renderHead();
    renderTabs();
  }
}

// ---- tabs -----------------------------------------------------------------------------------
function renderTabs() {
  const tabs = $("#tabs");
  fill(
    tabs,
    [...app.chats.values()].map((chat) =>
      el(
        "button",
        {
          type: "button",
          class: `tab${chat.id === app.active ? " active" : ""}${chat.ended ? " closed" : ""}`,
          dataset: { conversation: chat.id },
          onclick: () => activate(chat.id),
        },
        chat.title(),
        chat.unread ? el("span", { class: "badge unread" }, String(chat.unread)) : null,
        chat.ended
          ? el("span", { class: "tab-x", title: t("common.close"), onclick: (e) => {
              e.stopPropagation();
              dropChat(chat.id);
            } }, "×")
          : null,
      ),
    ),
  );
  show($("#no-chat"), app.chats.size === 0);
  show($("#panes"), app.chats.size > 0);
}

function activate(id) {
  app.active = id;
  for (const chat of app.chats.values()) show(chat.pane, chat.id === id);
  const chat = app.chats.get(id);
  if (chat) {
    chat.unread = 0;
    chat.transcript.scroll();
    chat.input.focus();
  }
  renderTabs();
  renderProfile();
  renderSuggestions();
  loadQuickReplies();
}

function dropChat(id) {
  const chat = app.chats.get(id);
  if (!chat) return;
  chat.pane.remove();
  app.chats.delete(id);
  app.client.untrack(id);
  if (app.active === id) {
    const next = [...app.chats.keys()][0];
    if (next) activate(next);
    else {
      app.active = null;
      renderTabs();
      renderProfile();
      renderSuggestions();
    }
  } else renderTabs();
}

function openChat(conversation, extra, messages) {
  let chat = app.chats.get(conversation.id);
  if (!chat || chat.ended) {
    if (chat) chat.pane.remove();
    chat = new Chat(conversation, extra);
    app.chats.set(chat.id, chat);
    $("#panes").append(chat.pane);
  } else {
    chat.conversation = conversation;
    if (extra?.customer) chat.customer = extra.customer;
    if (extra?.investor) chat.investor = extra.investor;
    chat.renderHead();
  }
  for (const m of messages || []) chat.transcript.add(m);
  app.client.track(chat.id, chat.transcript.lastSeq);
  if (!app.active || !app.chats.get(app.active) || app.chats.get(app.active).ended) activate(chat.id);
  else renderTabs();
  if (chat.customer?.id) loadPast(chat);
  return chat;
}

async function loadPast(chat) {
  try {
    const res = await api("GET", `/api/customers/${encodeURIComponent(chat.customer.id)}`, { token: app.token });
    chat.past = res.conversations.filter((c) => c.id !== chat.id);
    if (chat.id === app.active) renderProfile();
  } catch {
    chat.past = null;
  }
}

// ---- customer panel and suggestions -----------------------------------------------------------
function renderProfile() {
  const body = $("#profile-body");
  const chat = app.chats.get(app.active);
  if (!chat) {
    fill(body);
    return;
  }
  const c = chat.customer;
  if (!c) {
    body.className = "empty";
    fill(body, chat.investor?.name ? `${chat.investor.name} · ` : "", t("console.anonymous"));
    return;
  }
  body.className = "";
  const tags = Object.values(c.tags || {}).flat();
  fill(
    body,
    el("div", {}, el("strong", {}, c.name), " ", el("span", { class: "stars-static" }, "★".repeat(c.star || 0))),
    el(
      "dl",
      {},
      el("dt", {}, t("console.star")), el("dd", {}, String(c.star ?? "—")),
      el("dt", {}, t("console.risk")), el("dd", {}, c.risk_level || "—"),
      el("dt", {}, t("console.tags")), el("dd", {}, tags.length ? tags.join("、") : "—"),
      el("dt", {}, t("console.dedicated")), el("dd", {}, c.dedicated_advisor || "—"),
      el("dt", {}, t("console.phone")), el("dd", {}, c.phone || "—"),
    ),
    el("h3", {}, t("console.past")),
    chat.past && chat.past.length
      ? el("ul", { class: "past" }, chat.past.map((p) => el("li", {}, `${clock(p.created_at)} · ${p.channel} · ${p.state}${p.intent ? ` · ${p.intent}` : ""}`)))
      : el("div", { class: "empty" }, t("common.none")),
  );
}

function renderSuggestions() {
  const box = $("#suggestions");
  const chat = app.chats.get(app.active);
  if (!chat || !chat.suggestions.length) {
    fill(box, el("div", { class: "empty" }, t("console.noSuggestions")));
    return;
  }
  fill(
    box,
    chat.suggestions.map((s) =>
      el(
        "div",
        { class: "suggestion", role: "button", tabindex: "0", dataset: { entry: s.entry_id }, onclick: () => insert(chat, s.answer) },
        el("div", { class: "q" }, s.question),
        el("div", { class: "a" }, s.answer),
        el("div", { class: "conf" }, `${s.category || ""} · ${Math.round((s.confidence || 0) * 100)}%`),
      ),
    ),
  );
}

function insert(chat, text) {
  if (chat.ended) return;
  chat.input.value = text;
  chat.input.focus();
  chat.input.setSelectionRange(text.length, text.length);
}

// ---- quick replies ---------------------------------------------------------------------------
let quickTimer = null;
async function loadQuickReplies() {
  const chat = app.chats.get(app.active);
  const q = $("#quick-search").value.trim();
  const params = new URLSearchParams({ q });
  if (chat?.customer?.name) params.set("customer_name", chat.customer.name);
  try {
    const res = await api("GET", `/api/quick-replies?${params}`, { token: app.token });
    fill(
      $("#quick-list"),
      res.quick_replies.length
        ? res.quick_replies.map((r) =>
            el(
              "div",
              { class: "quick-item", role: "button", tabindex: "0", onclick: () => {
                const target = app.chats.get(app.active);
                if (target) insert(target, r.rendered || r.text);
              } },
              el("div", { class: "title" }, r.title),
              el("div", {}, r.rendered || r.text),
            ),
          )
        : el("div", { class: "empty" }, t("common.none")),
    );
  } catch {
    fill($("#quick-list"), el("div", { class: "empty" }, t("error.unavailable")));
  }
}

// ---- sending, compliance notice, transfer, close -----------------------------------------------
function sendReply(chat) {
  const text = chat.input.value.trim();
  if (!text || chat.ended) return;
  const cid = app.client.nextCid();
  chat.transcript.addPending(cid, text, app.user.name);
  chat.input.value = "";
  show(chat.notice, false);
  app.client
    .request({ type: "send", cid, conversation_id: chat.id, text })
    .then((ack) => chat.transcript.acked(cid, ack))
    .catch((err) => {
      if (err.code === "compliance_blocked" || err.code === "held_for_review") {
        chat.transcript.drop(cid);
        // Put the text back (unless the advisor already typed something new) to rephrase it.
        if (!chat.input.value.trim()) chat.input.value = text;
        showBlocked(chat, text, err.event.hits || [], err.code === "held_for_review");
        chat.input.focus();
        return;
      }
      chat.transcript.failed(cid, t(`error.${err.code}`, { code: err.event?.routing_code || "" }), (again) => {
        chat.input.value = again;
        sendReply(chat);
      });
    });
}

function showBlocked(chat, text, hits, held) {
  const first = hits[0] || {};
  const rules = [...new Set(hits.map((h) => h.rule_id))].join(", ") || "—";
  const categories = [...new Set(hits.map((h) => h.category))].join(", ");
  fill(
    chat.notice,
    el(
      "div",
      { class: "rule" },
      held ? t("console.held", { rule: rules }) : t("console.blocked", { rule: rules, category: categories }),
      " ",
      uniqueWords(text, hits).map(([word, tier]) => el("mark", { class: `hit tier-${tier}` }, word)),
    ),
    el(
      "div",
      { class: "quoted" },
      highlighted(
        text,
        hits.filter((h) => !h.in_previous).map((h) => ({ start: h.start, end: h.end, tier: h.tier, title: h.rule_id })),
      ),
    ),
    held ? null : el("div", { class: "note" }, t("console.blockedHint")),
    el("button", { type: "button", class: "link small", onclick: () => show(chat.notice, false) }, t("common.close")),
  );
  chat.notice.dataset.rule = first.rule_id || "";
  show(chat.notice, true);
  chat.transcript.scroll(); // the notice took room from the transcript: keep the latest visible
}

/** The distinct words the rules matched, in order, as [word, tier]. */
function uniqueWords(text, hits) {
  const seen = new Map();
  for (const h of hits) {
    const word = (h.in_previous ? "" : text.slice(h.start, h.end)) || h.matched || "";
    if (word && !seen.has(word)) seen.set(word, h.tier || "block");
  }
  return [...seen];
}

function transfer(chat) {
  const target = chat.transferTo.value.trim();
  if (!target) return;
  const frame = { type: "transfer", conversation_id: chat.id };
  if (GROUPS.includes(target)) frame.to_group = target;
  else frame.to_advisor = target;
  const note = chat.transferNote.value.trim();
  if (note) frame.note = note;
  app.client
    .request(frame)
    .then(() => {
      chat.transferTo.value = "";
      chat.transferNote.value = "";
      chat.end("unassigned");
    })
    .catch((err) => flash(chat, t(`error.${err.code}`, { code: err.event?.routing_code || err.message })));
}

function closeChat(chat) {
  app.client
    .request({ type: "close", conversation_id: chat.id })
    .then(() => chat.end("closed"))
    .catch((err) => flash(chat, t(`error.${err.code}`, { code: "" })));
}

function flash(chat, text) {
  fill(chat.notice, text);
  show(chat.notice, true);
}

// ---- learning loop: an advisor's reply becomes a KB entry ------------------------------------
function addLearnAction(chat, node, message) {
  // Only a delivered text reply of an advisor: a blocked or held one must not become an answer.
  if (message.sender_role !== "advisor" || message.kind !== "text") return;
  if (message.verdict === "block" || message.verdict === "hold") return;
  if (node.querySelector(".learn")) return;
  const button = el("button", { type: "button", class: "link small learn", onclick: () => openLearn(chat, node, message) }, t("console.learn"));
  node.querySelector(".meta")?.append(button);
}

/** The investor's latest text before this reply: the question the reply answers. */
function questionBefore(chat, message) {
  let question = "";
  for (const m of chat.transcript.messages()) {
    if (m.seq >= message.seq) break;
    if (m.sender_role === "investor" && m.kind === "text") question = m.text;
  }
  return question;
}

function openLearn(chat, node, message) {
  const existing = node.querySelector(".learn-form");
  if (existing) {
    existing.remove();
    return;
  }
  const question = el("input", { class: "learn-question", maxlength: 500, value: questionBefore(chat, message), placeholder: t("console.learnQuestion") });
  const category = el("select", { class: "learn-category" }, KB_CATEGORIES.map((c) => el("option", { value: c }, c)));
  const submit = el("button", { type: "submit", class: "primary small" }, t("console.learnSave"));
  const result = el("div", { class: "learn-result note", hidden: true, role: "status" });
  const form = el(
    "form",
    { class: "learn-form" },
    el("label", {}, t("console.learnQuestion"), question),
    el("label", {}, t("console.learnCategory"), category),
    submit,
    result,
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    submit.disabled = true;
    const body = { question: question.value.trim(), answer: message.text, category: category.value || "general" };
    try {
      const res = await api("POST", "/api/kb/learn", { token: app.token, body });
      result.className = "learn-result note ok";
      fill(result, t("console.learned", { id: res.entry.id }));
      result.dataset.entry = res.entry.id;
    } catch (err) {
      result.className = "learn-result note error";
      fill(result, t("console.learnFailed", { message: err.message || err.code || String(err) }));
      submit.disabled = false;
    }
    show(result, true);
  });
  node.append(form);
  question.focus();
}

// ---- waiting queue (outside grab mode too) -------------------------------------------------------
let queueTimer = null;
let queueLoading = false;

async function loadQueue() {
  if (queueLoading || !app.token) return;
  queueLoading = true;
  try {
    const res = await api("GET", "/api/queue", { token: app.token });
    renderQueue(res.queue || []);
  } catch {
    fill($("#queue"), el("div", { class: "empty" }, t("error.unavailable")));
  } finally {
    queueLoading = false;
  }
}

function renderQueue(items) {
  $("#queue-count").textContent = String(items.length);
  fill(
    $("#queue"),
    items.length
      ? items.map((item) =>
          el(
            "div",
            { class: "queue-item", dataset: { conversation: item.conversation.id, group: item.group } },
            el(
              "div",
              {},
              el("div", {}, el("span", { class: "pill" }, item.group), " ", el("span", { class: "stars-static" }, "★".repeat(item.star || 0))),
              el("div", { class: "note" }, `${item.conversation.channel || "web"} · ${t("console.waiting", { s: duration(item.waiting_s) })}`),
            ),
            el(
              "div",
              { class: "queue-place note" },
              item.position ? t("console.queuePosition", { n: item.position }) : "—",
              item.eta_s !== null && item.eta_s !== undefined ? el("div", {}, t("console.queueEta", { eta: duration(item.eta_s) })) : null,
            ),
          ),
        )
      : el("div", { class: "empty" }, t("console.queueEmpty")),
  );
}

/** Soon after an event that changes the queue; several events in a burst cost one request. */
function refreshQueueSoon() {
  clearTimeout(queueTimer);
  queueTimer = setTimeout(loadQueue, 300);
}

// ---- pool (grab mode) ---------------------------------------------------------------------
function renderPoolCount() {
  $("#pool-count").textContent = String([...app.pool.values()].filter((p) => !p.gone).length);
}

function offer(ev) {
  const conv = ev.conversation;
  if (app.pool.has(conv.id)) return;
  const claim = el("button", { type: "button", class: "primary small claim", onclick: () => claimChat(conv.id) }, t("console.claim"));
  const node = el(
    "div",
    { class: "pool-item", dataset: { conversation: conv.id } },
    el(
      "div",
      {},
      el("div", {}, ev.customer?.name || t("role.investor"), ev.customer ? ` ${"★".repeat(ev.customer.star || 0)}` : ""),
      el("div", { class: "note" }, `${ev.group || conv.group || ""} · ${conv.channel} · ${clock(conv.created_at)}`),
    ),
    claim,
  );
  app.pool.set(conv.id, { node, claim, gone: false });
  $("#pool").append(node);
  renderPoolCount();
  beep(660);
}

function takenAway(id, message) {
  const item = app.pool.get(id);
  if (!item || item.gone) return;
  item.gone = true;
  item.claim.replaceWith(el("span", { class: "gone" }, message));
  renderPoolCount();
  setTimeout(() => {
    item.node.remove();
    app.pool.delete(id);
  }, 6000);
}

function claimChat(id) {
  const item = app.pool.get(id);
  if (item) item.claim.disabled = true;
  app.client
    .request({ type: "claim", conversation_id: id })
    .then(() => {
      const it = app.pool.get(id);
      if (it) {
        it.node.remove();
        app.pool.delete(id);
      }
      renderPoolCount();
    })
    .catch((err) => {
      if (err.code === "already_taken") takenAway(id, t("console.taken"));
      else takenAway(id, t(`error.${err.code}`, { code: err.event?.routing_code || "" }));
    });
}

// ---- events -------------------------------------------------------------------------------
async function loadAssigned() {
  // After (re)connecting: every chat the server says is ours, with its transcript.
  const res = await api("GET", "/api/conversations?state=assigned", { token: app.token });
  for (const conv of res.conversations) {
    if (app.chats.has(conv.id) && !app.chats.get(conv.id).ended) continue;
    const full = await api("GET", `/api/conversations/${encodeURIComponent(conv.id)}`, { token: app.token });
    const chat = openChat(full.conversation, { customer: full.customer }, full.messages);
    // Anything stored between the HTTP read and now arrives through resume (dedupe by id).
    app.client.request({ type: "resume", conversation_id: chat.id, after_seq: chat.transcript.lastSeq }).catch(() => {});
  }
}

function wire(client) {
  client.on("auth_ok", () => {
    loadAssigned().catch(() => {});
    refreshQueueSoon();
    const status = $("#presence").value;
    if (status !== "online") client.request({ type: "presence", status }).catch(() => {});
  });
  client.on("assigned", (ev) => {
    refreshQueueSoon();
    const chat = openChat(ev.conversation, { customer: ev.customer, investor: ev.investor }, ev.transcript);
    const name = chat.title();
    beep();
    notify(t("console.newChat", { name }), ev.transcript.at(-1)?.text || "");
    if (app.active !== chat.id) {
      chat.unread += 1;
      renderTabs();
    }
  });
  client.on("message", (ev) => {
    const chat = app.chats.get(ev.conversation_id);
    if (!chat) return;
    if (!chat.transcript.add(ev)) return;
    if (ev.sender_role === "investor") show(chat.typing, false);
    if (app.active !== chat.id || document.hidden) {
      if (ev.sender_role === "investor") {
        chat.unread += 1;
        renderTabs();
        if (document.hidden) notify(chat.title(), ev.text);
      }
    }
  });
  client.on("suggestions", (ev) => {
    const chat = app.chats.get(ev.conversation_id);
    if (!chat) return;
    chat.suggestions = ev.items || [];
    if (chat.id === app.active) renderSuggestions();
  });
  client.on("typing", (ev) => {
    const chat = app.chats.get(ev.conversation_id);
    if (!chat || ev.role === "advisor") return;
    show(chat.typing, true);
    clearTimeout(chat.typingTimer);
    chat.typingTimer = setTimeout(() => show(chat.typing, false), 4000);
  });
  client.on("conversation", (ev) => {
    refreshQueueSoon();
    const chat = app.chats.get(ev.conversation_id);
    if (!chat) return;
    chat.conversation = { ...chat.conversation, state: ev.state };
    if (ev.state === "closed") chat.end("closed");
    else chat.renderHead();
  });
  client.on("resumed", (ev) => {
    const chat = app.chats.get(ev.conversation_id);
    if (!chat) return;
    if (ev.state === "closed") chat.end("closed");
    else if (ev.advisor_id && ev.advisor_id !== app.user.id) chat.end("unassigned");
  });
  client.on("unassigned", (ev) => {
    const chat = app.chats.get(ev.conversation_id);
    if (!chat) return;
    chat.end("unassigned");
    flash(chat, t("console.unassigned", { reason: ev.reason }));
  });
  client.on("pool", (ev) => {
    if (ev.action === "offer") offer(ev);
    else if (ev.action === "withdraw") {
      const mine = app.chats.has(ev.conversation_id) && !app.chats.get(ev.conversation_id).ended;
      const item = app.pool.get(ev.conversation_id);
      if (mine && item) {
        // It came to us (auto-assigned after the pool timeout): not "taken by someone else".
        item.node.remove();
        app.pool.delete(ev.conversation_id);
        renderPoolCount();
      } else takenAway(ev.conversation_id, t("console.taken"));
    }
  });
  client.on("blocked", (ev) => {
    // The send's own error already explains it; this covers a second tab of the same advisor.
    const chat = app.chats.get(ev.conversation_id);
    if (chat && chat.notice.hidden) {
      const text = chat.transcript.byId.get(ev.message_id)?.message.text || "";
      showBlocked(chat, text, ev.hits || [], ev.held);
    }
  });
  client.on("hold_decided", (ev) => {
    const chat = app.chats.get(ev.conversation_id);
    if (chat) flash(chat, t(ev.approved ? "console.holdApproved" : "console.holdRejected"));
  });
}

async function main() {
  setupLanguage();
  const { token, user } = await signIn(SCOPE, ["advisor"]);
  app.token = token;
  app.user = user;
  $("#me-name").textContent = user.name || user.username;
  show($("#console"), true);
  show($("#presence-box"), true);
  const client = new HubClient({ token });
  app.client = client;
  showConnection(client);
  wire(client);
  $("#presence").addEventListener("change", (e) => {
    client.request({ type: "presence", status: e.target.value }).catch(() => {});
  });
  if (needsPermission()) {
    show($("#notify-enable"), true);
    $("#notify-enable").addEventListener("click", async () => {
      await askPermission();
      show($("#notify-enable"), needsPermission());
      beep(); // a click also unlocks audio for later beeps
    });
  }
  $("#quick-search").addEventListener("input", () => {
    clearTimeout(quickTimer);
    quickTimer = setTimeout(loadQuickReplies, 250);
  });
  onLangChange(() => {
    renderTabs();
    renderProfile();
    renderSuggestions();
    for (const chat of app.chats.values()) chat.renderHead();
    loadQueue();
  });
  renderTabs();
  renderSuggestions();
  loadQuickReplies();
  loadQueue();
  setInterval(() => {
    if (!document.hidden) loadQueue();
  }, QUEUE_REFRESH_MS);
  client.connect();
}

main();

// The investor chat page (also the embedded widget at /?embed=1): visitor token, start, bot
// answers with "did you mean" choices, 转人工, queue position, typing, rating and 留言.

import { HubClient, session, visitor, login } from "./hubclient.js";
import { Transcript } from "./transcript.js";
import { $, el, fill, show, duration } from "./dom.js";
import { t, setupLanguage, onLangChange } from "./i18n.js";

const SCOPE = "investor";
const CONV_KEY = "investor.conversation";
const LONG_WAIT_S = 120;
// Conversations this tab has rated: a reload of a closed, rated chat must not ask again.
const RATED_PREFIX = "investor.rated.";

function ratedLocally(conversationId) {
  return !!conversationId && sessionStorage.getItem(RATED_PREFIX + conversationId) === "1";
}

function rememberRated(conversationId) {
  if (conversationId) sessionStorage.setItem(RATED_PREFIX + conversationId, "1");
}

const state = {
  client: null,
  conversationId: sessionStorage.getItem(CONV_KEY),
  convState: null,
  advisorName: null,
  queue: null,
  rated: ratedLocally(sessionStorage.getItem(CONV_KEY)),
  user: null,
  typingTimer: null,
  lastTypingSent: 0,
};

let transcript;

function status(text) {
  $("#chat-status").textContent = text;
}

function renderStatus() {
  const s = state.convState;
  if (s === "assigned") status(t("chat.withAdvisor", { name: state.advisorName || t("role.advisor") }));
  else if (s === "queued") status(t("chat.queued"));
  else if (s === "closed") status(t("chat.closed"));
  else if (s === "bot") status(t("chat.withBot"));
  const info = $("#queue-info");
  if (s === "queued" && state.queue) {
    fill(info, t("chat.queueInfo", { position: state.queue.position, eta: duration(state.queue.eta_s) }));
    show(info, true);
  } else {
    show(info, false);
  }
  $("#handoff").disabled = s !== "bot";
  $("#composer").classList.toggle("closed", s === "closed");
  $("#input").disabled = s === "closed";
  $("#send").disabled = s === "closed";
}

function applyConversation(ev) {
  state.convState = ev.state;
  if (ev.state === "assigned") state.advisorName = ev.advisor_name || state.advisorName;
  if (ev.state === "queued" && ev.position !== undefined) {
    state.queue = { position: ev.position, eta_s: ev.eta_s };
    // Nobody will pick this up soon: offer to leave a message instead of waiting.
    if (ev.eta_s >= LONG_WAIT_S) openLeave(true);
  }
  if (ev.state === "closed") {
    show($("#typing"), false);
    // The panel stays for its 开始新的咨询 button; only the prompt goes once rated.
    show($("#rating"), true);
    renderRating();
  }
  renderStatus();
}

function renderRating() {
  show($("#rate-prompt"), !state.rated);
  show($("#rate-send"), !state.rated);
  show($("#rate-done"), state.rated);
}

function markRated() {
  state.rated = true;
  rememberRated(state.conversationId);
  renderRating();
}

async function ensureToken() {
  let token = session.token(SCOPE);
  if (!token) {
    const res = await visitor(t("chat.visitorName"));
    session.save(SCOPE, res.token, res.user);
    token = res.token;
  }
  state.user = session.user(SCOPE);
  return token;
}

async function startConversation() {
  const ack = await state.client.request({ type: "start", channel: "web" });
  state.conversationId = ack.conversation.id;
  sessionStorage.setItem(CONV_KEY, state.conversationId);
  state.client.track(state.conversationId, transcript.lastSeq);
  // The greeting may have arrived before the ack told us the conversation id: fetch it again.
  state.client
    .request({ type: "resume", conversation_id: state.conversationId, after_seq: transcript.lastSeq })
    .catch(() => {});
  state.rated = false;
  applyConversation({ state: ack.conversation.state, advisor_name: ack.advisor_name });
}

function connect(token) {
  const client = new HubClient({ token });
  state.client = client;
  if (state.conversationId) client.track(state.conversationId, 0);
  let first = true;
  client.on("connection", (ev) => {
    const banner = $("#conn-banner");
    if (ev.state === "open") {
      show(banner, false);
    } else if (ev.state === "closed" && ev.retryInMs !== undefined) {
      fill(banner, t("conn.lost", { s: Math.ceil(ev.retryInMs / 1000) }));
      show(banner, true);
    } else if (ev.state === "failed") {
      // The token is no longer accepted (expired, or the hub's secret changed): begin again
      // as a new visitor, once; a second refusal (a banned address) is shown, not retried.
      session.clear(SCOPE);
      sessionStorage.removeItem(CONV_KEY);
      if (ev.code === 4001 && !state.renewed) {
        state.renewed = true;
        state.conversationId = null;
        transcript.clear();
        ensureToken().then(connect).catch(showError);
        return;
      }
      fill(banner, t("conn.authFailed"));
      show(banner, true);
    }
  });
  client.on("auth_ok", async (ev) => {
    state.user = ev.user;
    if (first) {
      first = false;
      if (!state.conversationId) await startConversation().catch(showError);
    }
  });
  client.on("message", (ev) => {
    if (ev.conversation_id !== state.conversationId) return;
    transcript.add(ev);
    if (ev.sender_role !== "investor") show($("#typing"), false);
  });
  client.on("conversation", (ev) => {
    if (ev.conversation_id === state.conversationId) applyConversation(ev);
  });
  client.on("resumed", (ev) => {
    if (ev.conversation_id !== state.conversationId) return;
    applyConversation({ state: ev.state, advisor_name: ev.advisor_name, rating_requested: true });
  });
  client.on("typing", (ev) => {
    if (ev.conversation_id !== state.conversationId || ev.role === "investor") return;
    show($("#typing"), true);
    clearTimeout(state.typingTimer);
    state.typingTimer = setTimeout(() => show($("#typing"), false), 4000);
  });
  client.on("error", (ev) => {
    if (ev.code === "conversation_not_found" && ev.cid?.startsWith("resume-")) {
      // The stored conversation is not ours (new token): begin a fresh one.
      client.untrack(state.conversationId);
      state.conversationId = null;
      sessionStorage.removeItem(CONV_KEY);
      transcript.clear();
      startConversation().catch(showError);
    }
  });
  client.connect();
}

function showError(err) {
  const banner = $("#conn-banner");
  fill(banner, t("common.error", { message: err.message || String(err) }));
  show(banner, true);
}

function sendText(text) {
  text = text.trim();
  if (!text || !state.conversationId) return;
  const cid = state.client.nextCid();
  transcript.addPending(cid, text, state.user?.name);
  state.client
    .request({ type: "send", cid, conversation_id: state.conversationId, text })
    .then((ack) => transcript.acked(cid, ack))
    .catch((err) => transcript.failed(cid, t(`error.${err.code}`), (again) => sendText(again)));
}

function openLeave(auto = false) {
  if (auto && $("#leave").dataset.dismissed) return;
  show($("#leave"), true);
  show($("#leave-result"), false);
}

function setupComposer() {
  const input = $("#input");
  $("#send-form").addEventListener("submit", (e) => {
    e.preventDefault();
    sendText(input.value);
    input.value = "";
    input.focus();
  });
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      $("#send-form").requestSubmit();
    }
  });
  input.addEventListener("input", () => {
    const now = Date.now();
    if (state.conversationId && now - state.lastTypingSent > 2000) {
      state.lastTypingSent = now;
      state.client.notify({ type: "typing", conversation_id: state.conversationId });
    }
  });
  $("#handoff").addEventListener("click", () => {
    if (!state.conversationId) return;
    $("#handoff").disabled = true;
    state.client
      .request({ type: "handoff", conversation_id: state.conversationId })
      .catch((err) => {
        $("#handoff").disabled = false;
        showError(err);
      });
  });
  $("#leave-open").addEventListener("click", () => openLeave(false));
  $("#leave-cancel").addEventListener("click", () => {
    $("#leave").dataset.dismissed = "1";
    show($("#leave"), false);
  });
  $("#leave-send").addEventListener("click", () => {
    const text = $("#leave-text").value.trim();
    const contact = $("#leave-contact").value.trim();
    if (!text) return;
    const frame = { type: "leave_message", conversation_id: state.conversationId, text };
    if (contact) frame.contact = contact;
    state.client
      .request(frame)
      .then(() => {
        $("#leave-text").value = "";
        fill($("#leave-result"), t("leave.done"));
        show($("#leave-result"), true);
      })
      .catch((err) => {
        fill($("#leave-result"), t(`error.${err.code}`));
        show($("#leave-result"), true);
      });
  });
}

function setupRating() {
  const stars = $("#stars");
  let score = 5;
  const draw = () => {
    fill(
      stars,
      [1, 2, 3, 4, 5].map((n) =>
        el(
          "button",
          {
            type: "button",
            class: `star${n <= score ? " on" : ""}`,
            "aria-label": `${n}`,
            dataset: { score: String(n) },
            onclick: () => {
              score = n;
              draw();
            },
          },
          "★",
        ),
      ),
    );
  };
  draw();
  $("#rate-send").addEventListener("click", () => {
    const frame = { type: "rate", conversation_id: state.conversationId, score };
    const comment = $("#rate-comment").value.trim();
    if (comment) frame.comment = comment;
    state.client
      .request(frame)
      .then(() => markRated())
      .catch((err) => {
        // The hub refuses a second rating with invalid_state: it is already rated (by this
        // chat in another tab, or before a lost ack), which is what the investor wanted.
        if (err.code === "invalid_state") markRated();
        else showError(err);
      });
  });
  $("#new-chat").addEventListener("click", () => {
    state.client.untrack(state.conversationId);
    transcript.clear();
    show($("#rating"), false);
    state.rated = false;
    renderRating();
    startConversation().catch(showError);
  });
}

function setupLogin() {
  const dialog = $("#login-dialog");
  $("#login-link").addEventListener("click", () => dialog.showModal());
  $("#login-cancel").addEventListener("click", () => dialog.close());
  $("#login-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const form = new FormData(e.target);
    try {
      const res = await login(form.get("username"), form.get("password"));
      if (res.user.role !== "investor") throw new Error(t("login.notInvestor"));
      session.save(SCOPE, res.token, res.user);
      sessionStorage.removeItem(CONV_KEY);
      dialog.close();
      location.reload();
    } catch (err) {
      fill($("#login-error"), err.code ? t(`error.${err.code}`) : err.message);
      show($("#login-error"), true);
    }
  });
}

async function main() {
  setupLanguage();
  if (new URLSearchParams(location.search).get("embed") === "1") {
    document.body.classList.add("embed");
  }
  transcript = new Transcript($("#messages"), {
    mineRole: "investor",
    onSuggestion: (question) => sendText(question),
  });
  onLangChange(renderStatus);
  setupComposer();
  setupRating();
  setupLogin();
  try {
    connect(await ensureToken());
  } catch (err) {
    showError(err);
  }
  const user = session.user(SCOPE);
  if (user && !user.username?.startsWith("visitor-")) $("#login-link").hidden = true;
}

main();

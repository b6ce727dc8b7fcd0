// One conversation's messages on screen: dedupe by message id, order by seq, and the local
// delivery state (sending → delivered on ack, failed with retry) of what this user sent.

import { el, clock } from "./dom.js";
import { t } from "./i18n.js";

export class Transcript {
  /**
   * @param {HTMLElement} container  an <ol> the messages go in
   * @param {{mineRole: string, onSuggestion?: Function, staffView?: boolean,
   *          decorate?: (node: HTMLElement, message: object) => void}} options
   *   decorate is called once for every stored message (one with an id) after it is drawn
   */
  constructor(container, { mineRole, onSuggestion, staffView = false, decorate = null }) {
    this.container = container;
    this.decorate = decorate;
    this.mineRole = mineRole;
    this.onSuggestion = onSuggestion;
    this.staffView = staffView;
    this.byId = new Map(); // message id -> {seq, node, message}
    this.pending = new Map(); // cid -> {node, text}
    this.lastSeq = 0;
  }

  has(id) {
    return this.byId.has(id);
  }

  messages() {
    return [...this.byId.values()].sort((a, b) => a.seq - b.seq).map((r) => r.message);
  }

  clear() {
    this.byId.clear();
    this.pending.clear();
    this.container.replaceChildren();
    this.lastSeq = 0;
  }

  /** A `message` event (live, resumed or from a transcript). Returns false for a duplicate. */
  add(message) {
    if (this.byId.has(message.id)) return false;
    if (message.sender_role === this.mineRole) this.adoptPending(message.text);
    const node = this.render(message);
    const record = { seq: message.seq, node, message };
    this.byId.set(message.id, record);
    this.lastSeq = Math.max(this.lastSeq, message.seq);
    this.place(record);
    if (this.decorate) this.decorate(node, message);
    return true;
  }

  place(record) {
    // Ordered by seq; the ones still sending (no seq yet) stay after all of them.
    let before = null;
    for (const child of this.container.children) {
      const seq = child.dataset.seq ? Number(child.dataset.seq) : Infinity;
      if (seq > record.seq) {
        before = child;
        break;
      }
    }
    this.container.insertBefore(record.node, before);
    this.scroll();
  }

  scroll() {
    const box = this.container.parentElement;
    if (box) box.scrollTop = box.scrollHeight;
  }

  /**
   * Our own message came back as an event before its ack (e.g. the ack was lost with the
   * connection): the stored copy replaces the oldest bubble still sending the same text.
   */
  adoptPending(text) {
    for (const [cid, p] of this.pending) {
      if (p.text === text) {
        p.node.remove();
        this.pending.delete(cid);
        return;
      }
    }
  }

  /** A message this user is sending: shown at once, state "sending". */
  addPending(cid, text, senderName) {
    const node = this.render(
      { id: null, seq: null, sender_role: this.mineRole, sender_name: senderName, kind: "text", text },
      "sending",
    );
    node.dataset.cid = cid;
    this.pending.set(cid, { node, text });
    this.container.append(node);
    this.scroll();
  }

  acked(cid, ack) {
    const p = this.pending.get(cid);
    if (!p) return;
    this.pending.delete(cid);
    if (this.byId.has(ack.message_id)) {
      // The live event already drew it: keep that one, drop ours.
      p.node.remove();
      this.setDelivery(this.byId.get(ack.message_id).node, "delivered");
      return;
    }
    const message = {
      id: ack.message_id,
      seq: ack.seq,
      sender_role: this.mineRole,
      sender_name: p.node.dataset.sender || "",
      kind: "text",
      text: p.text,
      created_at: Date.now() / 1000,
    };
    p.node.dataset.id = ack.message_id;
    p.node.dataset.seq = String(ack.seq);
    this.setDelivery(p.node, "delivered");
    p.node.remove();
    const record = { seq: ack.seq, node: p.node, message };
    this.byId.set(ack.message_id, record);
    this.lastSeq = Math.max(this.lastSeq, ack.seq);
    this.place(record);
    if (this.decorate) this.decorate(p.node, message);
  }

  failed(cid, reason, onRetry) {
    const p = this.pending.get(cid);
    if (!p) return;
    this.setDelivery(p.node, "failed", reason, () => {
      this.pending.delete(cid);
      p.node.remove();
      onRetry(p.text);
    });
  }

  /** Remove a pending bubble (compliance block: the text goes back to the input instead). */
  drop(cid) {
    const p = this.pending.get(cid);
    if (p) {
      p.node.remove();
      this.pending.delete(cid);
    }
  }

  setDelivery(node, state, reason, onRetry) {
    node.dataset.delivery = state;
    const status = node.querySelector(".delivery");
    if (!status) return;
    status.replaceChildren(t(`delivery.${state}`));
    if (reason) status.append(" · ", reason);
    if (onRetry) {
      status.append(" ", el("button", { class: "link retry", type: "button", onclick: onRetry }, t("delivery.retry")));
    }
  }

  render(message, delivery) {
    const role = message.sender_role;
    const mine = role === this.mineRole && !["bot", "system"].includes(role);
    const classes = ["msg", `role-${role}`, `kind-${message.kind}`, mine ? "mine" : "theirs"];
    if (message.verdict) classes.push(`verdict-${message.verdict}`);
    const body = el("div", { class: "bubble" }, el("p", { class: "text" }, message.text));
    const meta = message.meta || {};
    if (message.kind === "leave_message") body.prepend(el("div", { class: "tag" }, t("msg.leaveMessage")));
    if (message.kind === "note") body.prepend(el("div", { class: "tag" }, t("msg.note")));
    if (this.staffView && message.verdict) {
      body.append(el("div", { class: "verdict" }, t(`verdict.${message.verdict}`)));
    }
    if (role === "bot" && meta.action === "suggest" && Array.isArray(meta.suggestions)) {
      const list = el("div", { class: "choices" }, el("span", { class: "choices-title" }, t("chat.didYouMean")));
      for (const s of meta.suggestions) {
        list.append(
          el(
            "button",
            {
              type: "button",
              class: "choice",
              disabled: !this.onSuggestion,
              onclick: () => this.onSuggestion && this.onSuggestion(s.question, s),
            },
            s.question,
          ),
        );
      }
      body.append(list);
    }
    const node = el(
      "li",
      { class: classes.join(" "), dataset: { sender: message.sender_name || "" } },
      role === "system" ? null : el("div", { class: "sender" }, senderLabel(message)),
      body,
      el(
        "div",
        { class: "meta" },
        el("time", {}, clock(message.created_at)),
        mine ? el("span", { class: "delivery" }, t(`delivery.${delivery || "delivered"}`)) : null,
      ),
    );
    if (message.id) node.dataset.id = message.id;
    if (message.seq) node.dataset.seq = String(message.seq);
    node.dataset.delivery = delivery || "delivered";
    return node;
  }
}

function senderLabel(message) {
  if (message.sender_role === "bot") return message.sender_name || t("role.bot");
  return message.sender_name || t(`role.${message.sender_role}`);
}

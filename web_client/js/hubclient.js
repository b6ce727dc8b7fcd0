// The one protocol client every page uses: auth, reconnect with backoff and jitter, resume by
// seq per conversation, re-send of unacknowledged frames with the same cid, ack/error by cid.

const TOKEN_KEY = "chat.token";
const USER_KEY = "chat.user";

/** Tokens live in sessionStorage only: never in URLs, never in logs. */
export const session = {
  save(scope, token, user) {
    sessionStorage.setItem(`${scope}.${TOKEN_KEY}`, token);
    sessionStorage.setItem(`${scope}.${USER_KEY}`, JSON.stringify(user));
  },
  token(scope) {
    return sessionStorage.getItem(`${scope}.${TOKEN_KEY}`);
  },
  user(scope) {
    try {
      return JSON.parse(sessionStorage.getItem(`${scope}.${USER_KEY}`) || "null");
    } catch {
      return null;
    }
  },
  clear(scope) {
    sessionStorage.removeItem(`${scope}.${TOKEN_KEY}`);
    sessionStorage.removeItem(`${scope}.${USER_KEY}`);
  },
};

export class HubError extends Error {
  constructor(event, status = 0) {
    super(event.message || event.code || "error");
    this.code = event.code || "internal_error";
    this.event = event;
    this.status = status;
  }
}

/** JSON over HTTP with the bearer token; errors become HubError with the protocol code. */
export async function api(method, path, { token, body } = {}) {
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
    cache: "no-store",
  });
  let data = null;
  try {
    data = await res.json();
  } catch {
    data = null;
  }
  if (!res.ok) {
    const err = (data && data.error) || { code: "internal_error", message: `HTTP ${res.status}` };
    throw new HubError(err, res.status);
  }
  return data;
}

export async function login(username, password) {
  return api("POST", "/api/login", { body: { username, password } });
}

export async function visitor(name) {
  return api("POST", "/api/visitor", { body: name ? { name } : {} });
}

// Frames we never replay after a reconnect: they are about "now" only.
const NOT_REPLAYED = new Set(["typing", "ping", "auth", "resume"]);
// Close codes after which reconnecting cannot help.
const FINAL_CLOSES = new Set([4001, 4003]);

export const backoff = {
  baseMs: 500,
  maxMs: 15000,
  /** Full jitter: a random delay in [0, min(max, base * 2^attempt)], at least 100 ms. */
  delay(attempt, random = Math.random) {
    const cap = Math.min(this.maxMs, this.baseMs * 2 ** attempt);
    return Math.max(100, Math.floor(random() * cap));
  },
};

export class HubClient {
  constructor({ token, url } = {}) {
    this.token = token;
    this.url = url || `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
    this.ws = null;
    this.user = null;
    this.state = "idle"; // idle | connecting | open | closed | failed
    this.pending = new Map(); // cid -> {frame, resolve, reject, sentOn}
    this.cursors = new Map(); // conversation_id -> highest seq seen
    this.handlers = new Map(); // event type -> Set(fn)
    this.attempt = 0;
    this.cidCounter = 0;
    this.cidPrefix = Math.random().toString(36).slice(2, 10);
    this.stopped = false;
    this.timer = null;
    this.generation = 0;
  }

  on(type, fn) {
    if (!this.handlers.has(type)) this.handlers.set(type, new Set());
    this.handlers.get(type).add(fn);
    return () => this.handlers.get(type).delete(fn);
  }

  emit(type, event) {
    for (const key of [type, "*"]) {
      for (const fn of this.handlers.get(key) || []) {
        try {
          fn(event);
        } catch (err) {
          console.error("handler for", type, "failed:", err);
        }
      }
    }
  }

  nextCid() {
    this.cidCounter += 1;
    return `${this.cidPrefix}-${this.cidCounter}`;
  }

  /** Follow a conversation: its messages are resumed from `seq` after every reconnect. */
  track(conversationId, seq = 0) {
    const known = this.cursors.get(conversationId) || 0;
    this.cursors.set(conversationId, Math.max(known, seq));
  }

  untrack(conversationId) {
    this.cursors.delete(conversationId);
  }

  cursor(conversationId) {
    return this.cursors.get(conversationId) || 0;
  }

  connect() {
    this.stopped = false;
    this.open();
  }

  close() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000, "bye");
    this.setState("closed");
  }

  setState(state, detail = {}) {
    this.state = state;
    this.emit("connection", { state, ...detail });
  }

  open() {
    const generation = ++this.generation;
    this.setState("connecting", { attempt: this.attempt });
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (err) {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    ws.addEventListener("open", () => {
      ws.send(JSON.stringify({ type: "auth", token: this.token }));
    });
    ws.addEventListener("message", (msg) => {
      if (generation !== this.generation) return;
      let event;
      try {
        event = JSON.parse(msg.data);
      } catch {
        return;
      }
      this.receive(event);
    });
    ws.addEventListener("close", (ev) => {
      if (generation !== this.generation) return;
      this.ws = null;
      if (this.stopped) return;
      if (FINAL_CLOSES.has(ev.code)) {
        this.setState("failed", { code: ev.code, reason: ev.reason });
        for (const [, p] of this.pending) {
          p.reject(new HubError({ code: "auth_failed", message: ev.reason || "closed" }));
        }
        this.pending.clear();
        return;
      }
      this.scheduleReconnect(ev.code);
    });
  }

  scheduleReconnect(code) {
    const delay = backoff.delay(this.attempt);
    this.attempt += 1;
    this.setState("closed", { code, retryInMs: delay });
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.open(), delay);
  }

  receive(event) {
    switch (event.type) {
      case "auth_ok":
        this.user = event.user;
        this.attempt = 0;
        this.setState("open", { user: event.user });
        this.emit("auth_ok", event);
        this.afterAuth();
        return;
      case "ack": {
        const p = this.pending.get(event.cid);
        if (p) {
          this.pending.delete(event.cid);
          p.resolve(event);
        }
        this.emit("ack", event);
        return;
      }
      case "error": {
        const p = event.cid ? this.pending.get(event.cid) : null;
        if (p) {
          // Retryable errors keep the frame pending: it goes out again with the same cid.
          if (event.retryable) {
            setTimeout(() => this.transmit(p.frame), backoff.delay(p.tries++));
          } else {
            this.pending.delete(event.cid);
            p.reject(new HubError(event));
          }
        }
        this.emit("error", event);
        return;
      }
      case "message":
        this.track(event.conversation_id, event.seq);
        break;
      case "resumed":
        // Some seqs are never shown to this role: take the server's cursor as ours.
        this.cursors.set(event.conversation_id, event.last_seq);
        break;
      default:
        break;
    }
    this.emit(event.type, event);
  }

  afterAuth() {
    for (const [conversationId, seq] of this.cursors) {
      this.transmit({
        type: "resume",
        cid: `resume-${this.nextCid()}`,
        conversation_id: conversationId,
        after_seq: seq,
      });
    }
    for (const [, p] of this.pending) this.transmit(p.frame);
  }

  transmit(frame) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN && this.state === "open") {
      this.ws.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }

  /** Send a frame and wait for its ack (resolves) or error (rejects with HubError). */
  request(frame) {
    const full = { ...frame, cid: frame.cid || this.nextCid() };
    return new Promise((resolve, reject) => {
      this.pending.set(full.cid, { frame: full, resolve, reject, tries: 0 });
      // Replayable frames wait in `pending` for the next connection; the others fail now.
      if (!this.transmit(full) && NOT_REPLAYED.has(full.type)) {
        this.pending.delete(full.cid);
        reject(new HubError({ code: "unavailable", message: "not connected" }));
      }
    });
  }

  /** Fire-and-forget frames (typing): dropped while offline, never replayed. */
  notify(frame) {
    this.transmit(frame);
  }
}

// Safe rendering: every piece of user or server text becomes a text node (textContent),
// never HTML. The only markup we build is our own elements, created one by one.

/**
 * el("div", {class: "x", onclick: fn, dataset: {id}}, "text", child) -> HTMLElement.
 * Strings and numbers become text nodes; null/false children are skipped.
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2), value);
    } else if (key === "text") node.textContent = String(value);
    else if (key in node && typeof value !== "string") node[key] = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace all children of `node` with `children` (text or nodes). */
export function fill(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

const SEVERITY = { block: 4, hold: 3, warn: 2, remind: 1 };

/**
 * Text with [start, end) spans wrapped in <mark>, built from text nodes only. Where spans
 * overlap, each character takes the most severe tier covering it.
 */
export function highlighted(text, spans, markClass = "hit") {
  const frag = document.createDocumentFragment();
  const owner = new Array(text.length).fill(null);
  for (const s of spans || []) {
    if (!Number.isInteger(s.start) || !Number.isInteger(s.end)) continue;
    const rank = SEVERITY[s.tier] || 0;
    for (let i = Math.max(0, s.start); i < Math.min(text.length, s.end); i += 1) {
      if (!owner[i] || (SEVERITY[owner[i].tier] || 0) < rank) owner[i] = s;
    }
  }
  let at = 0;
  while (at < text.length) {
    const span = owner[at];
    let to = at + 1;
    while (to < text.length && owner[to] === span) to += 1;
    const piece = text.slice(at, to);
    if (span) {
      const mark = document.createElement("mark");
      mark.className = markClass + (span.tier ? ` tier-${span.tier}` : "");
      mark.textContent = piece;
      if (span.title) mark.title = span.title;
      frag.append(mark);
    } else {
      frag.append(document.createTextNode(piece));
    }
    at = to;
  }
  return frag;
}

export function $(selector, root = document) {
  return root.querySelector(selector);
}

export function $$(selector, root = document) {
  return Array.from(root.querySelectorAll(selector));
}

export function show(node, visible = true) {
  node.hidden = !visible;
}

export function clock(seconds) {
  if (!seconds) return "";
  const d = new Date(seconds * 1000);
  return d.toLocaleTimeString(document.documentElement.lang || [], {
    hour: "2-digit",
    minute: "2-digit",
    hour12: false,
  });
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, "0")}m`;
}

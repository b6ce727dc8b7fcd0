// Interface strings: zh-CN by default, English on request; one module per language.
// Pages mark static text with data-i18n / data-i18n-placeholder; code calls t(key, vars).

import zh from "./i18n/zh-CN.js";
import en from "./i18n/en.js";

const LANGS = { "zh-CN": zh, en };
const KEY = "chat.lang";
let current = LANGS[localStorage.getItem(KEY)] ? localStorage.getItem(KEY) : "zh-CN";
const listeners = new Set();

export function lang() {
  return current;
}

export function t(key, vars = {}) {
  const raw = LANGS[current][key] ?? zh[key] ?? key;
  return raw.replace(/\{(\w+)\}/g, (_, name) => (name in vars ? String(vars[name]) : `{${name}}`));
}

export function setLang(code) {
  if (!LANGS[code]) return;
  current = code;
  localStorage.setItem(KEY, code);
  applyStatic();
  for (const fn of listeners) fn(code);
}

export function onLangChange(fn) {
  listeners.add(fn);
}

/** Fill every element marked with data-i18n (textContent) or data-i18n-* (attributes). */
export function applyStatic(root = document) {
  document.documentElement.lang = current;
  for (const node of root.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  for (const node of root.querySelectorAll("[data-i18n-placeholder]")) {
    node.placeholder = t(node.dataset.i18nPlaceholder);
  }
  for (const node of root.querySelectorAll("[data-i18n-title]")) node.title = t(node.dataset.i18nTitle);
}

/** Wire a <select class="lang-switch"> and apply the current language. */
export function setupLanguage() {
  applyStatic();
  for (const select of document.querySelectorAll("select.lang-switch")) {
    select.value = current;
    select.addEventListener("change", () => setLang(select.value));
  }
}

// Staff sign-in shared by the advisor console and the supervisor desk: a login form, the
// token in sessionStorage, a check that the role may use the page, and sign-out.

import { api, login, session } from "./hubclient.js";
import { $, fill, show } from "./dom.js";
import { t } from "./i18n.js";

/** Resolve with {token, user} once someone with one of `roles` is signed in. */
export function signIn(scope, roles) {
  return new Promise((resolve) => {
    const screen = $("#login-screen");
    const form = $("#login-form");
    const done = (token, user) => {
      show(screen, false);
      show($("#logout"), true);
      $("#logout").onclick = () => {
        session.clear(scope);
        location.reload();
      };
      resolve({ token, user });
    };
    const ask = () => {
      show(screen, true);
      form.username.focus();
    };
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      try {
        const res = await login(form.username.value.trim(), form.password.value);
        if (!roles.includes(res.user.role)) throw new Error(t("login.wrongRole"));
        session.save(scope, res.token, res.user);
        form.password.value = "";
        done(res.token, res.user);
      } catch (err) {
        fill($("#login-error"), err.code ? t(`error.${err.code}`) : err.message);
        show($("#login-error"), true);
      }
    });
    const token = session.token(scope);
    if (!token) {
      ask();
      return;
    }
    api("GET", "/api/me", { token })
      .then((res) => {
        if (res.user && roles.includes(res.user.role)) done(token, res.user);
        else ask();
      })
      .catch(() => {
        session.clear(scope);
        ask();
      });
  });
}

/** Reflect the HubClient connection state in the header dot and the banner. */
export function showConnection(client) {
  client.on("connection", (ev) => {
    const dot = $("#conn-dot");
    dot.className = `conn-dot ${ev.state}`;
    dot.title = ev.state === "open" ? t("conn.online") : t("conn.offline");
    const banner = $("#conn-banner");
    if (ev.state === "open") show(banner, false);
    else if (ev.state === "closed" && ev.retryInMs !== undefined) {
      fill(banner, t("conn.lost", { s: Math.ceil(ev.retryInMs / 1000) }));
      show(banner, true);
    } else if (ev.state === "failed") {
      fill(banner, t("conn.authFailed"));
      show(banner, true);
    }
  });
}

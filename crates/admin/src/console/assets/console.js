// alertpost console: actions and refresh. Every page reads without this
// script; it runs the actions through the admin API (the token as a
// Bearer header, never a cookie) and refreshes the overview.
"use strict";

(function () {
  const TOKEN_KEY = "alertpost-admin-token";
  const root = document.documentElement;
  root.classList.add("js");

  const tokenRequired = () => document.body.dataset.tokenRequired === "true";
  const token = () => sessionStorage.getItem(TOKEN_KEY) || "";

  function notice(text, kind) {
    const box = document.getElementById("notice");
    if (!box) return;
    box.textContent = text;
    box.className = kind || "";
  }

  // POSTs `body` (JSON, optional) to an admin route; the answer's JSON, or
  // an Error saying what went wrong.
  async function post(path, body) {
    const headers = { "Accept": "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (token()) headers["Authorization"] = "Bearer " + token();
    const answer = await fetch(path, {
      method: "POST",
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit",
    });
    let data = null;
    try { data = await answer.json(); } catch (_) { /* not JSON */ }
    if (answer.status === 401) {
      const field = document.getElementById("admin-token");
      if (field) field.focus();
      throw new Error("This action needs the admin token: enter it above.");
    }
    if (!answer.ok) {
      throw new Error((data && data.error) || ("HTTP " + answer.status));
    }
    return data;
  }

  // Actions under way: no refresh replaces their buttons meanwhile.
  let busy = 0;
  // Each refresh's number: an answer older than the newest is dropped.
  let asked = 0;

  // Replaces #live with the same element of a fresh copy of this page.
  async function refresh() {
    const live = document.getElementById("live");
    if (!live) return;
    const mine = ++asked;
    const answer = await fetch(location.href, { headers: { "Accept": "text/html" } });
    if (!answer.ok) return;
    const text = await answer.text();
    if (mine !== asked || busy > 0) return;
    const fresh = new DOMParser().parseFromString(text, "text/html");
    const next = fresh.getElementById("live");
    const current = document.getElementById("live");
    if (next && current) current.replaceWith(next);
    const stamp = fresh.querySelector("footer");
    const footer = document.querySelector("footer");
    if (stamp && footer) footer.replaceWith(stamp);
  }

  // Runs `action` with its button disabled and refreshes held off.
  async function running(button, action) {
    busy += 1;
    button.disabled = true;
    try {
      await action();
    } catch (e) {
      notice(e.message, "failed");
    } finally {
      busy -= 1;
      button.disabled = false;
    }
  }

  function test(button) {
    const id = button.dataset.integration;
    return running(button, async () => {
      notice("Testing " + id + "…");
      const trial = await post("/v1/integrations/" + encodeURIComponent(id) + "/test");
      document.getElementById("trial-title").textContent =
        "Test delivery to " + id + ": " + (trial.delivered ? "delivered" : "failed");
      const output = document.getElementById("trial-output");
      output.textContent = trial.text;
      output.className = trial.delivered ? "ok" : "failed";
      document.getElementById("trial").hidden = false;
      notice("Test delivery to " + id + (trial.delivered ? " delivered." : " failed."),
        trial.delivered ? "ok" : "failed");
    });
  }

  function replay(button) {
    const which = button.dataset.id ? { id: button.dataset.id } : { integration: button.dataset.integration };
    return running(button, async () => {
      const done = await post("/v1/dlq/replay", which);
      let text = "Replayed " + done.replayed + ".";
      if (done.unreadable) text += " " + done.unreadable + " could not be read.";
      notice(text, "ok");
      if (button.dataset.then) {
        location.assign(button.dataset.then);
      }
    }).then(() => button.dataset.then ? undefined : refresh());
  }

  function purge(button) {
    if (!confirm("Delete every dead letter in the dead queue (every worker's)? They cannot be replayed afterwards.")) {
      return;
    }
    return running(button, async () => {
      const done = await post("/v1/dlq/purge");
      notice("Purged " + done.purged + ".", "ok");
    }).then(refresh);
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const action = { test, replay, purge }[button.dataset.action];
    if (action) action(button);
  });

  document.addEventListener("DOMContentLoaded", () => {
    const form = document.getElementById("token-form");
    if (form && tokenRequired()) {
      const field = document.getElementById("admin-token");
      if (token()) field.placeholder = "set for this tab";
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        sessionStorage.setItem(TOKEN_KEY, field.value);
        field.value = "";
        field.placeholder = "set for this tab";
        notice("Admin token set for this tab.", "ok");
      });
    }
    const live = document.getElementById("live");
    const every = live && Number(live.dataset.refresh);
    if (every > 0) {
      setInterval(() => {
        // Not while the operator reads an answer they opened.
        if (!document.hidden && busy === 0 && !document.querySelector("#live details[open]")) {
          refresh().catch(() => {});
        }
      }, every * 1000);
    }
  });
})();

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

  // Replaces #live with the same element of a fresh copy of this page.
  async function refresh() {
    const live = document.getElementById("live");
    if (!live) return;
    const answer = await fetch(location.href, { headers: { "Accept": "text/html" } });
    if (!answer.ok) return;
    const fresh = new DOMParser().parseFromString(await answer.text(), "text/html");
    const next = fresh.getElementById("live");
    if (next) live.replaceWith(next);
    const stamp = fresh.querySelector("footer");
    const footer = document.querySelector("footer");
    if (stamp && footer) footer.replaceWith(stamp);
  }

  async function test(button) {
    const id = button.dataset.integration;
    const section = document.getElementById("trial");
    const title = document.getElementById("trial-title");
    const output = document.getElementById("trial-output");
    button.disabled = true;
    notice("Testing " + id + "…");
    try {
      const trial = await post("/v1/integrations/" + encodeURIComponent(id) + "/test");
      title.textContent = "Test delivery to " + id + ": " + (trial.delivered ? "delivered" : "failed");
      output.textContent = trial.text;
      output.className = trial.delivered ? "ok" : "failed";
      section.hidden = false;
      notice(trial.delivered ? "Test delivery to " + id + " delivered." : "Test delivery to " + id + " failed.",
        trial.delivered ? "ok" : "failed");
    } catch (e) {
      notice(e.message, "failed");
    } finally {
      button.disabled = false;
    }
  }

  async function replay(button) {
    const which = button.dataset.id ? { id: button.dataset.id } : { integration: button.dataset.integration };
    button.disabled = true;
    try {
      const done = await post("/v1/dlq/replay", which);
      let text = "Replayed " + done.replayed + ".";
      if (done.unreadable) text += " " + done.unreadable + " could not be read.";
      notice(text, "ok");
      if (button.dataset.then) {
        location.assign(button.dataset.then);
        return;
      }
      await refresh();
    } catch (e) {
      notice(e.message, "failed");
    } finally {
      button.disabled = false;
    }
  }

  async function purge(button) {
    if (!confirm("Delete every dead letter in the dead queue (every worker's)? They cannot be replayed afterwards.")) {
      return;
    }
    button.disabled = true;
    try {
      const done = await post("/v1/dlq/purge");
      notice("Purged " + done.purged + ".", "ok");
      await refresh();
    } catch (e) {
      notice(e.message, "failed");
    } finally {
      button.disabled = false;
    }
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
        if (!document.hidden && !document.querySelector("#live details[open]")) {
          refresh().catch(() => {});
        }
      }, every * 1000);
    }
  });
})();

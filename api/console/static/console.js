// The console's only script: no inline code anywhere (the pages' CSP forbids it).
"use strict";

(function () {
  const POLL_MS = 5000;

  function text(tag, value, className) {
    const node = document.createElement(tag);
    node.textContent = value == null ? "" : String(value);
    if (className) node.className = className;
    return node;
  }

  // Ask before actions that cannot be taken back.
  function confirmations() {
    document.querySelectorAll("form.confirm").forEach((form) => {
      form.addEventListener("submit", (event) => {
        if (!window.confirm(form.dataset.confirm || "Are you sure?")) event.preventDefault();
      });
    });
    document.querySelectorAll("select.autosubmit").forEach((select) => {
      select.addEventListener("change", () => select.form.submit());
    });
  }

  // Messages from the server fade after a while; errors stay until dismissed.
  function toasts() {
    document.querySelectorAll(".toast").forEach((toast) => {
      toast.addEventListener("click", () => toast.remove());
      if (toast.classList.contains("toast-ok")) {
        window.setTimeout(() => toast.classList.add("fading"), 8000);
      }
    });
  }

  function timeline() {
    const body = document.getElementById("timeline");
    if (!body) return;
    const state = document.getElementById("timeline-state");
    const shopperBase = body.dataset.shopper;

    function render(rows) {
      body.replaceChildren();
      if (rows.length === 0) {
        const row = document.createElement("tr");
        const cell = text("td", "Nothing decided or sent in the last 30 days.", "note");
        cell.colSpan = 7;
        row.append(cell);
        body.append(row);
        return;
      }
      for (const r of rows) {
        const row = document.createElement("tr");
        row.className = "event-" + r.what;
        row.append(
          text("td", r.at.replace("T", " ").replace("Z", "")),
          text("td", r.what),
          text("td", r.kind),
          text("td", r.status, "status status-" + r.status),
          text("td", r.detail),
          text("td", r.channel),
        );
        const who = document.createElement("td");
        const link = text("a", r.user);
        link.href = shopperBase + encodeURIComponent(r.user_key);
        who.append(link);
        row.append(who);
        body.append(row);
      }
    }

    async function poll() {
      try {
        const response = await fetch(body.dataset.source, {
          credentials: "same-origin",
          headers: { Accept: "application/json" },
          redirect: "manual",
        });
        if (response.type === "opaqueredirect" || response.status === 303) {
          state.textContent = "session ended: sign in again";
          state.className = "live stopped";
          return; // no more polling
        }
        const data = await response.json();
        if (!response.ok) {
          state.textContent = "unavailable: " + (data.error || response.status) + " (retrying)";
          state.className = "live stopped";
        } else {
          render(data.rows);
          state.textContent = "live · updated " + new Date().toLocaleTimeString();
          state.className = "live";
        }
      } catch (error) {
        state.textContent = "cannot reach the API (retrying)";
        state.className = "live stopped";
      }
      window.setTimeout(poll, POLL_MS);
    }
    poll();
  }

  document.addEventListener("DOMContentLoaded", () => {
    confirmations();
    toasts();
    timeline();
  });
})();

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


  // --- the segment builder ---------------------------------------------------------

  function toast(kind, message) {
    const box = document.getElementById("toasts");
    const node = text("p", message, "toast toast-" + kind);
    node.setAttribute("role", "status");
    node.addEventListener("click", () => node.remove());
    box.replaceChildren(node);
  }

  async function postJSON(url, csrf, body) {
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      redirect: "manual",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body),
    });
    if (response.type === "opaqueredirect") throw new Error("Your session ended: sign in again.");
    let data = {};
    try {
      data = await response.json();
    } catch (error) {
      throw new Error("The console did not answer (" + response.status + ").");
    }
    if (!response.ok) throw new Error(data.error || "That did not work (" + response.status + ").");
    return data;
  }

  function builder() {
    const root = document.getElementById("builder");
    if (!root) return;
    const fields = JSON.parse(root.dataset.fields);
    const names = Object.keys(fields);
    const csrf = root.dataset.csrf;
    const holder = document.getElementById("rules");
    const size = document.getElementById("audience-size");
    const sizeState = document.getElementById("audience-state");
    const sample = document.querySelector("#audience-sample tbody");
    let state = { op: "AND", rules: [blank()] };
    let timer = null;

    function blank() {
      return { field: "total_spend", op: ">", value: "" };
    }

    function hint(spec, op) {
      if (op === "between") return spec.type === "datetime" ? "from, to (ISO times)" : "low, high";
      if (op === "in" || op === "not_in") return "a, b, c";
      if (op === "inactive_days" || op === "within_days") return "days";
      if (spec.type === "datetime") return "2024-05-01T00:00:00Z";
      return "value";
    }

    function select(options, chosen, onChange, label) {
      const node = document.createElement("select");
      node.setAttribute("aria-label", label);
      for (const option of options) {
        const item = text("option", option);
        item.value = option;
        if (option === chosen) item.selected = true;
        node.append(item);
      }
      node.addEventListener("change", () => onChange(node.value));
      return node;
    }

    function conditionNode(rule, parent, index) {
      const row = document.createElement("div");
      row.className = "condition";
      const spec = fields[rule.field];
      row.append(
        select(names, rule.field, (value) => {
          rule.field = value;
          const ops = fields[value].operators;
          if (!ops.includes(rule.op)) rule.op = ops[0];
          rule.value = "";
          changed(true);
        }, "field"),
        select(spec.operators, rule.op, (value) => {
          rule.op = value;
          changed(true);
        }, "operator"),
      );
      const single = !["in", "not_in", "between"].includes(rule.op);
      let input;
      if (spec.type === "bool") {
        if (rule.value === "") rule.value = "true";
        input = select(["true", "false"], String(rule.value), (v) => { rule.value = v; changed(false); }, "value");
      } else if (spec.choices.length && single) {
        if (!spec.choices.includes(rule.value)) rule.value = spec.choices[0];
        input = select(spec.choices, rule.value, (v) => { rule.value = v; changed(false); }, "value");
      } else {
        input = document.createElement("input");
        input.setAttribute("aria-label", "value");
        input.placeholder = hint(spec, rule.op);
        input.value = rule.value;
        input.addEventListener("input", () => { rule.value = input.value; changed(false); });
      }
      row.append(input);
      row.title = spec.description;
      row.append(removeButton(parent, index));
      return row;
    }

    function removeButton(parent, index) {
      const button = text("button", "×", "remove");
      button.type = "button";
      button.setAttribute("aria-label", "remove");
      button.disabled = !parent;
      button.addEventListener("click", () => {
        parent.rules.splice(index, 1);
        if (parent.rules.length === 0) parent.rules.push(blank());
        changed(true);
      });
      return button;
    }

    function groupNode(group, parent, index) {
      const box = document.createElement("div");
      box.className = "group";
      const head = document.createElement("div");
      head.className = "group-head";
      head.append(
        text("span", parent ? "Any / all of:" : "Shoppers matching"),
        select(["AND", "OR"], group.op, (value) => { group.op = value; changed(true); }, "group"),
      );
      if (parent) head.append(removeButton(parent, index));
      box.append(head);
      group.rules.forEach((rule, i) => {
        box.append("rules" in rule ? groupNode(rule, group, i) : conditionNode(rule, group, i));
      });
      const add = text("button", "+ condition", "add");
      add.type = "button";
      add.addEventListener("click", () => { group.rules.push(blank()); changed(true); });
      const nest = text("button", "+ group", "add");
      nest.type = "button";
      nest.addEventListener("click", () => {
        group.rules.push({ op: "OR", rules: [blank()] });
        changed(true);
      });
      const buttons = document.createElement("div");
      buttons.className = "group-buttons";
      buttons.append(add, nest);
      box.append(buttons);
      return box;
    }

    function typed(spec, op, raw) {
      const value = String(raw).trim();
      const list = () => value.split(",").map((v) => v.trim()).filter((v) => v !== "");
      const one = (v) => {
        if (spec.type === "number" || spec.type === "count") return v === "" ? NaN : Number(v);
        if (spec.type === "bool") return v === "true";
        return v;
      };
      if (op === "inactive_days" || op === "within_days") return value === "" ? NaN : Number(value);
      if (op === "in" || op === "not_in" || op === "between") return list().map(one);
      return one(value);
    }

    function asRule(node) {
      if ("rules" in node) return { op: node.op, rules: node.rules.map(asRule) };
      return { field: node.field, op: node.op, value: typed(fields[node.field], node.op, node.value) };
    }

    function asState(node) {
      if ("rules" in node) return { op: node.op, rules: node.rules.map(asState) };
      const value = Array.isArray(node.value) ? node.value.join(", ") : String(node.value);
      return { field: node.field, op: node.op, value: value };
    }

    function render() {
      holder.replaceChildren(groupNode(state, null, 0));
    }

    function changed(structure) {
      if (structure) render();
      window.clearTimeout(timer);
      timer = window.setTimeout(count, 400);
    }

    async function count() {
      sizeState.textContent = "counting…";
      try {
        const data = await postJSON(root.dataset.preview, csrf, { rules: asRule(state) });
        if (data.problem) throw new Error(data.problem);
        size.textContent = String(data.size);
        sizeState.textContent = "";
        sample.replaceChildren();
        for (const p of data.sample) {
          const row = document.createElement("tr");
          row.append(
            text("td", p.user), text("td", p.intent_score.toFixed(2)), text("td", p.orders),
            text("td", p.total_spend.toFixed(2)), text("td", p.tier), text("td", p.channels.join(", ")),
            text("td", p.phone || "—"), text("td", (p.last_seen || "").slice(0, 16).replace("T", " ")),
          );
          sample.append(row);
        }
      } catch (error) {
        size.textContent = "—";
        sizeState.textContent = error.message;
        sample.replaceChildren();
      }
    }

    document.getElementById("phrase-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const result = document.getElementById("phrase-result");
      const phrase = document.getElementById("phrase").value;
      try {
        const data = await postJSON(root.dataset.parse, csrf, { text: phrase });
        state = asState(data.rules);
        result.textContent = "Read " + (data.source === "llm" ? "by the language model" : "as rules") + ": check them below.";
        changed(true);
      } catch (error) {
        result.textContent = error.message;
      }
    });

    document.getElementById("save-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const name = document.getElementById("segment-name").value;
      const description = document.getElementById("segment-description").value;
      try {
        const saved = await postJSON(root.dataset.save, csrf, { name, description, rules: asRule(state) });
        window.location.assign(window.location.pathname + "?saved=" + encodeURIComponent(saved.segment_id));
      } catch (error) {
        toast("error", error.message);
      }
    });

    document.querySelectorAll("button.load-rules").forEach((button) => {
      button.addEventListener("click", () => {
        state = asState(JSON.parse(button.dataset.rules));
        changed(true);
        root.scrollIntoView();
      });
    });

    render();
    count();
  }

  document.addEventListener("DOMContentLoaded", () => {
    confirmations();
    toasts();
    timeline();
    builder();
  });
})();

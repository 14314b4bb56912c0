/* The demo shop's own behaviour: a cart in localStorage, a profile with consent, a
 * message's offer and a VIP token applied, and checkout through the shop's backend
 * (/demo/api/), which reports the order with its server key.
 * Everything shown is set with textContent: nothing from storage or the URL is parsed as HTML. */
(function () {
  "use strict";
  var tracker = window.intentflow;
  var CART_KEY = "demo:cart";
  // {customer_id, phone_masked, consents}: never the phone itself (personal data).
  var PROFILE_KEY = "demo:profile";
  // The landing's message: {message_id, kind, discount_percent, expired}.
  var OFFER_KEY = "demo:offer";
  // One checkout's id until its order is placed: a retry is the same order.
  var CHECKOUT_KEY = "demo:checkout";
  // A VIP token is a bearer credential: kept for this tab only.
  var VIP_KEY = "demo:vip";
  var CONSENTS = [
    // [checkbox id, channel, purpose]: order updates are transactional, offers marketing.
    ["consent-whatsapp-updates", "whatsapp", "transactional"],
    ["consent-whatsapp-offers", "whatsapp", "marketing"],
    ["consent-sms-updates", "sms", "transactional"],
    ["consent-sms-offers", "sms", "marketing"],
  ];

  function read(store, key, fallback) {
    try {
      var raw = store.getItem(key);
      return raw === null ? fallback : JSON.parse(raw);
    } catch (e) { return fallback; }
  }
  function write(store, key, value) {
    try {
      if (value === null) store.removeItem(key);
      else store.setItem(key, JSON.stringify(value));
    } catch (e) { /* storage blocked: this page still works */ }
  }
  function $(id) { return document.getElementById(id); }
  function el(tag, text, attrs) {
    var node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    return node;
  }
  function show(id, text) {
    var node = $(id);
    if (!node) return;
    node.textContent = text || "";
    node.hidden = !text;
  }
  function money(amount) { return amount.toFixed(2) + " EUR"; }
  function percent(value) { return String(Math.round(value * 100) / 100) + " %"; }

  function cart() { return read(localStorage, CART_KEY, {}) || {}; }
  function saveCart(items) {
    write(localStorage, CART_KEY, items);
    showCount();
  }
  function showCount() {
    var items = cart();
    var n = Object.keys(items).reduce(function (sum, id) { return sum + items[id].quantity; }, 0);
    if ($("cart-count")) $("cart-count").textContent = String(n);
  }
  function profile() { return read(localStorage, PROFILE_KEY, null); }
  function offer() { return read(localStorage, OFFER_KEY, null); }
  function offerPercent() {
    var o = offer();
    return o && !o.expired ? o.discount_percent : 0;
  }
  function vipToken() { return read(sessionStorage, VIP_KEY, null); }

  // --- a message's landing: its offer, a VIP token ------------------------------
  function vipPercent(token) {
    // Shown only: the shop's backend verifies and redeems the token at checkout.
    try {
      var part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      var claims = JSON.parse(atob(part + "===".slice((part.length + 3) % 4)));
      return typeof claims.discount_percent === "number" ? claims.discount_percent : null;
    } catch (e) { return null; }
  }
  function showOffers() {
    var o = offer();
    show("discount", o && !o.expired ? percent(o.discount_percent) + " off from your message" : "");
    show("offer-note", o && o.expired ? "The offer from your message has expired." : "");
    var token = vipToken();
    var vip = token ? vipPercent(token) : null;
    show("vip", token ? (vip === null ? "VIP: your discount applies at checkout"
      : "VIP: " + percent(vip) + " off at checkout") : "");
  }
  function restore(found) {
    write(localStorage, OFFER_KEY, { message_id: found.message_id, kind: found.kind,
      discount_percent: found.discount_percent, expired: found.expired });
    if (found.items.length) {
      var items = cart();
      found.items.forEach(function (line) {
        var kept = items[line.product_id];
        items[line.product_id] = { quantity: Math.max(line.quantity, kept ? kept.quantity : 0),
          price: line.price, name: line.name, category: line.category };
      });
      saveCart(items);
    }
  }
  function land() {
    var params = new URLSearchParams(location.search);
    var token = params.get("vip_token");
    if (token) {
      write(sessionStorage, VIP_KEY, token.slice(0, 4096));
      // Out of the address bar (and of what is shared or bookmarked from here).
      params.delete("vip_token");
      var rest = params.toString();
      history.replaceState(null, "", location.pathname + (rest ? "?" + rest : "") + location.hash);
    }
    var messageId = params.get("utm_message_id");
    if (!messageId || !/^[A-Za-z0-9_-]{1,128}$/.test(messageId)) return Promise.resolve();
    return fetch("/demo/api/offer?message_id=" + encodeURIComponent(messageId),
      { credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (found) {
        if (found) restore(found);
        // The order names the message either way (attribution).
        else write(localStorage, OFFER_KEY, { message_id: messageId, discount_percent: 0 });
      }, function () { /* offline: the page works without the offer */ });
  }

  // --- profile and consent: the one place that identifies and records consent ----
  var dialog = $("profile-dialog");
  var afterSave = null;

  function showBadge() {
    var p = profile();
    $("profile-badge").textContent = p ? (p.phone_masked || p.customer_id) : "Sign in";
  }
  function openProfile(reason, then) {
    var p = profile() || {};
    $("profile-customer-id").value = p.customer_id || "";
    $("profile-phone").value = "";
    $("profile-phone").placeholder = p.phone_masked || "+447700900123";
    CONSENTS.forEach(function (c) { $(c[0]).checked = !!(p.consents && p.consents[c[0]]); });
    show("profile-reason", reason);
    show("profile-error", "");
    afterSave = then || null;
    dialog.showModal();
  }
  function applyProfile(customer, phone, hadPhone, choices) {
    tracker.identify(customer, { source: "profile" });
    // One decision per channel and purpose. A phone typed now goes with them; without
    // one, a phone given before still applies (a revoke needs no phone).
    if (phone || hadPhone) {
      CONSENTS.forEach(function (c) { tracker.consent(c[1], choices[c[0]], phone || null, c[2]); });
    }
    tracker.flush();
  }
  function saveProfile(e) {
    e.preventDefault();
    var customer = $("profile-customer-id").value.trim();
    var phone = $("profile-phone").value.replace(/[\s()-]/g, "");
    if (!customer) {
      show("profile-error", "Enter your customer id.");
      return;
    }
    var before = profile() || {};
    fetch("/demo/api/profile", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      credentials: "same-origin",
      body: JSON.stringify({ customer_id: customer, phone: phone || null }),
    }).then(function (response) {
      if (response.status === 422) {
        show("profile-error", "Use the international format for the phone, e.g. +447700900123.");
        return;
      }
      if (!response.ok) {
        show("profile-error", "Your profile could not be saved; please try again.");
        return;
      }
      return response.json().then(function (checked) {
        var choices = {};
        CONSENTS.forEach(function (c) { choices[c[0]] = $(c[0]).checked; });
        var sameCustomer = before.customer_id === customer;
        var hadPhone = sameCustomer && !!before.phone_masked;
        applyProfile(customer, phone, hadPhone, choices);
        write(localStorage, PROFILE_KEY, { customer_id: customer,
          phone_masked: checked.phone_masked || (hadPhone ? before.phone_masked : null),
          consents: choices });
        showBadge();
        dialog.close();
        var then = afterSave;
        afterSave = null;
        if (then) then();
      });
    }, function () {
      show("profile-error", "The shop did not answer; please try again.");
    });
  }
  $("profile-badge").addEventListener("click", function () { openProfile(""); });
  $("profile-form").addEventListener("submit", saveProfile);
  $("profile-cancel").addEventListener("click", function () { afterSave = null; dialog.close(); });

  // --- product page: the button's data-if-* attributes make the tracker send add_to_cart.
  var add = $("add-to-cart");
  if (add) {
    add.addEventListener("click", function () {
      var items = cart();
      var id = add.getAttribute("data-if-prop-product_id");
      var line = items[id] || { quantity: 0, price: Number(add.getAttribute("data-if-prop-price")),
        name: add.getAttribute("data-name"), category: add.getAttribute("data-if-prop-category") };
      line.quantity += 1;
      items[id] = line;
      saveCart(items);
      $("added").textContent = "Added to your cart.";
    });
  }

  // --- cart and checkout -------------------------------------------------------
  function renderCart(container, editable) {
    var items = cart();
    container.textContent = "";
    var ids = Object.keys(items);
    if (!ids.length) {
      container.appendChild(el("p", "Your cart is empty.", { "class": "empty" }));
      return 0;
    }
    var table = el("table");
    var subtotal = 0;
    ids.forEach(function (id) {
      var line = items[id];
      subtotal += line.quantity * line.price;
      var row = el("tr", undefined, { "data-product-id": id });
      var pic = el("td");
      pic.appendChild(el("img", undefined, { src: "/demo/images/" + encodeURIComponent(id) + ".png",
        alt: "", width: "56", height: "56", "class": "thumb" }));
      row.appendChild(pic);
      row.appendChild(el("td", line.name));
      row.appendChild(el("td", "× " + line.quantity));
      row.appendChild(el("td", money(line.quantity * line.price), { "class": "amount" }));
      if (editable) {
        var cell = el("td");
        var remove = el("button", "Remove", { "class": "remove secondary", "data-product-id": id });
        remove.addEventListener("click", function () {
          var current = cart();
          var gone = current[id];
          delete current[id];
          saveCart(current);
          tracker.track("remove_from_cart", { product_id: id, quantity: gone.quantity,
            price: gone.price, category: gone.category });
          renderCart(container, editable);
        });
        cell.appendChild(remove);
        row.appendChild(cell);
      }
      table.appendChild(row);
    });
    container.appendChild(table);
    var off = offerPercent();
    var totals = el("div", undefined, { "class": "totals" });
    if (off) {
      var discount = Math.round(subtotal * off) / 100;
      totals.appendChild(el("p", "Subtotal: " + money(subtotal), { id: "cart-subtotal" }));
      totals.appendChild(el("p", percent(off) + " off: −" + money(discount),
        { id: "cart-discount" }));
      subtotal -= discount;
    }
    totals.appendChild(el("p", "Total: " + money(subtotal), { id: "cart-total" }));
    container.appendChild(totals);
    return ids.length;
  }

  function waitForTracker(timeoutMs) {
    // Identify and consent reach the collector before the order names the shopper.
    var deadline = Date.now() + timeoutMs;
    return new Promise(function (resolve) {
      (function check() {
        tracker.flush();
        if (tracker.queued() === 0 || Date.now() > deadline) resolve();
        else setTimeout(check, 100);
      })();
    });
  }
  function checkoutId() {
    var id = read(localStorage, CHECKOUT_KEY, null);
    if (!id) {
      id = tracker.uuid();
      write(localStorage, CHECKOUT_KEY, id);
    }
    return id;
  }
  function errorText(body, status) {
    var detail = body && body.detail;
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail) && detail.length) {
      return "Your order was not placed: " + detail.map(function (d) {
        return (d.loc || []).slice(1).join(".") + ": " + d.msg;
      }).join("; ");
    }
    return "Your order was not placed (the shop answered " + status + "). Your cart is kept; " +
      "please try again.";
  }
  function vipText(vip) {
    if (!vip) return "";
    if (vip.redeemed) return "VIP discount applied: " + percent(vip.discount_percent) + ".";
    return "Your VIP token was refused (" + vip.reason + ": " + vip.message +
      "). The order was placed without its discount.";
  }
  function placeOrder() {
    var p = profile();
    if (!p || !p.customer_id) {
      openProfile("Sign in to place your order.", placeOrder);
      return;
    }
    var items = cart();
    var ids = Object.keys(items);
    if (!ids.length) return;
    var button = $("place-order");
    button.disabled = true;
    show("checkout-error", "");
    var o = offer();
    var body = {
      checkout_id: checkoutId(),
      anonymous_id: tracker.anonymousId(),
      user_id: tracker.userId() || p.customer_id,
      items: ids.map(function (id) { return { product_id: id, quantity: items[id].quantity }; }),
    };
    if (o && o.message_id) body.message_id = o.message_id;
    if (vipToken()) body.vip_token = vipToken();
    waitForTracker(3000).then(function () {
      return fetch("/demo/api/orders", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        credentials: "same-origin",
        body: JSON.stringify(body),
      });
    }).then(function (response) {
      return response.json().catch(function () { return null; }).then(function (answer) {
        if (!response.ok) {
          show("checkout-error", errorText(answer, response.status));
          button.disabled = false;
          return;
        }
        saveCart({});
        write(localStorage, OFFER_KEY, null);
        write(localStorage, CHECKOUT_KEY, null);
        write(sessionStorage, VIP_KEY, null);
        showOffers();
        button.hidden = true;
        $("checkout-items").hidden = true;
        $("checkout-who").hidden = true;
        show("vip-result", vipText(answer.vip));
        $("confirmation").textContent = "Thank you! Your order " + answer.order_id +
          " is placed: " + money(answer.total) + ".";
      });
    }, function () {
      show("checkout-error", "Your order was not placed: the shop did not answer. " +
        "Your cart is kept; please try again.");
      button.disabled = false;
    });
  }

  function render() {
    showCount();
    showBadge();
    showOffers();
    if ($("cart")) renderCart($("cart"), true);
    if ($("checkout-items")) {
      var lines = renderCart($("checkout-items"), false);
      var p = profile();
      $("checkout-who").textContent = p ? "Ordering as " + p.customer_id + "."
        : "You will be asked who you are.";
      $("place-order").disabled = !lines;
      return lines;
    }
    return 0;
  }

  if ($("checkout")) $("place-order").addEventListener("click", placeOrder);
  var lines = render();
  if ($("checkout") && lines) tracker.track("checkout_started", {});
  land().then(render);
})();

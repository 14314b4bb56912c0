/* The demo shop's own behaviour: a cart in localStorage, checkout, sign-in and consent.
 * Everything shown is set with textContent: nothing from storage or the URL is parsed as HTML. */
(function () {
  "use strict";
  var tracker = window.intentflow;
  var CART_KEY = "demo:cart";

  function cart() {
    try { return JSON.parse(localStorage.getItem(CART_KEY)) || {}; } catch (e) { return {}; }
  }
  function saveCart(items) {
    localStorage.setItem(CART_KEY, JSON.stringify(items));
    showCount();
  }
  function showCount() {
    var items = cart();
    var n = Object.keys(items).reduce(function (sum, id) { return sum + items[id].quantity; }, 0);
    var el = document.getElementById("cart-count");
    if (el) el.textContent = String(n);
  }
  function el(tag, text, attrs) {
    var node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    return node;
  }

  // Product page: the button's data-if-* attributes make the tracker send add_to_cart.
  var add = document.getElementById("add-to-cart");
  if (add) {
    add.addEventListener("click", function () {
      var items = cart();
      var id = add.getAttribute("data-if-prop-product_id");
      var line = items[id] || { quantity: 0, price: Number(add.getAttribute("data-if-prop-price")),
        name: add.getAttribute("data-name"), category: add.getAttribute("data-if-prop-category") };
      line.quantity += 1;
      items[id] = line;
      saveCart(items);
      document.getElementById("added").textContent = "Added to your cart.";
    });
  }

  function renderCart(container, editable) {
    var items = cart();
    container.textContent = "";
    var ids = Object.keys(items);
    if (!ids.length) {
      container.appendChild(el("p", "Your cart is empty."));
      return 0;
    }
    var table = el("table");
    var total = 0;
    ids.forEach(function (id) {
      var line = items[id];
      total += line.quantity * line.price;
      var row = el("tr", undefined, { "data-product-id": id });
      row.appendChild(el("td", line.name));
      row.appendChild(el("td", "× " + line.quantity));
      row.appendChild(el("td", (line.quantity * line.price).toFixed(2) + " EUR"));
      if (editable) {
        var cell = el("td");
        var remove = el("button", "Remove", { "class": "remove", "data-product-id": id });
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
    container.appendChild(el("p", "Total: " + total.toFixed(2) + " EUR", { id: "cart-total" }));
    return ids.length;
  }

  var cartView = document.getElementById("cart");
  if (cartView) renderCart(cartView, true);

  var checkoutView = document.getElementById("checkout");
  if (checkoutView) {
    var lines = renderCart(document.getElementById("checkout-items"), false);
    if (lines) tracker.track("checkout_started", {});
    document.getElementById("checkout-form").addEventListener("submit", function (e) {
      e.preventDefault();
      var customer = document.getElementById("customer-id").value.trim();
      var phone = document.getElementById("phone").value.trim();
      if (customer) tracker.identify(customer, { source: "checkout" });
      if (phone) {
        // One decision per channel and purpose: order updates (transactional) and offers
        // (marketing) are asked separately, and only offers allow nudges.
        [["whatsapp", "whatsapp", "transactional"], ["whatsapp-offers", "whatsapp", "marketing"],
         ["sms", "sms", "transactional"], ["sms-offers", "sms", "marketing"]].forEach(function (c) {
          tracker.consent(c[1], document.getElementById(c[0]).checked, phone, c[2]);
        });
      }
      // A real shop's backend would now send order_placed with its server key.
      saveCart({});
      tracker.flush();
      document.getElementById("checkout-form").hidden = true;
      document.getElementById("confirmation").textContent = "Thank you! Your order is placed.";
    });
  }
  showCount();
})();

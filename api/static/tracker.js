/* intentflow tracker: behavioural events from a storefront page to the collector.
 *
 * <script src="https://COLLECTOR/tracker.js" data-write-key="wk_..." defer></script>
 *
 * Script attributes (all optional but the key):
 *   data-write-key         the storefront's write key (public by design)
 *   data-api               collector base URL (default: where this script came from)
 *   data-product-selector  element naming the product shown (default [data-if-product-id])
 *   data-specs-selector    the product's specs element (default [data-if-specs])
 *   data-linger-ms         dwell over the specs that counts as a linger (default 3000)
 *   data-scroll-depths     deep-scroll thresholds in percent (default "50,75,90")
 *   data-flush-ms          how often the queue is sent (default 1000)
 * Declarative clicks: <button data-if-track="add_to_cart" data-if-prop-product_id="p1"
 *   data-if-prop-quantity="1" data-if-prop-price="9.99">. Buttons with an id are also
 *   reported as button_click when they carry data-if-click.
 * API: intentflow.track(name, props), .page(), .identify(userId, traits),
 *   .consent(channel, granted, phone, purpose), .flush(), .anonymousId(), .userId(),
 *   .uuid() (a random UUID, also where crypto.randomUUID is not: plain-http pages).
 *   purpose: "transactional" (order updates; the default) or "marketing" (offers).
 *
 * Privacy: a page's address is sent without a vip_token parameter (a single-use
 * discount token our VIP links carry: a bearer credential).
 *
 * Delivery: events queue in localStorage (bounded), are sent in batches with the
 * write key in the Authorization header, and are retried with exponential backoff
 * while the collector is unreachable or answers 429/503. When the page is hidden
 * the queue goes by navigator.sendBeacon, which cannot set headers: the write key
 * then travels in the URL (?write_key=), which the collector accepts for write keys
 * only, as text/plain so no CORS preflight is needed.
 */
(function () {
  "use strict";
  if (window.intentflow && window.intentflow.version) return;

  var script = document.currentScript;
  var attr = function (name, fallback) {
    var value = script && script.getAttribute(name);
    return value === null || value === undefined || value === "" ? fallback : value;
  };
  var WRITE_KEY = attr("data-write-key", "");
  var API = attr("data-api", script ? new URL(script.src, location.href).origin : location.origin);
  var PRODUCT_SELECTOR = attr("data-product-selector", "[data-if-product-id]");
  var SPECS_SELECTOR = attr("data-specs-selector", "[data-if-specs]");
  var LINGER_MS = parseInt(attr("data-linger-ms", "3000"), 10);
  var SCROLL_DEPTHS = attr("data-scroll-depths", "50,75,90").split(",").map(Number);
  var FLUSH_MS = parseInt(attr("data-flush-ms", "1000"), 10);

  var TRACK_URL = API.replace(/\/$/, "") + "/v1/track";
  var PREFIX = "intentflow:";
  var MAX_QUEUE = 1000; // events kept while the collector is away; the oldest go first
  var MAX_BATCH = 100;
  var BEACON_BYTES = 60000; // browsers cap beacons at 64 KiB in flight
  var SESSION_IDLE_MS = 30 * 60 * 1000;
  var MAX_BACKOFF_MS = 60000;

  // --- storage (the page keeps working when storage is blocked) ------------
  var memory = {};
  function load(key, fallback) {
    try {
      var raw = window.localStorage.getItem(PREFIX + key);
      return raw === null ? fallback : JSON.parse(raw);
    } catch (e) {
      return key in memory ? memory[key] : fallback;
    }
  }
  function save(key, value) {
    memory[key] = value;
    try {
      window.localStorage.setItem(PREFIX + key, JSON.stringify(value));
    } catch (e) {
      /* quota or privacy mode: the in-memory copy still works for this page */
    }
  }

  function uuid() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    var b = new Uint8Array(16);
    crypto.getRandomValues(b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    var h = Array.prototype.map.call(b, function (x) { return (x + 0x100).toString(16).slice(1); });
    return h.slice(0, 4).join("") + "-" + h.slice(4, 6).join("") + "-" + h.slice(6, 8).join("") +
      "-" + h.slice(8, 10).join("") + "-" + h.slice(10).join("");
  }

  // --- identity ------------------------------------------------------------
  var anonymousId = load("anonymous_id", null);
  if (!anonymousId) {
    anonymousId = uuid();
    save("anonymous_id", anonymousId);
  }
  function sessionId() {
    var now = Date.now();
    var session = load("session", null);
    if (!session || now - session.last > SESSION_IDLE_MS) session = { id: uuid(), last: now };
    session.last = now;
    save("session", session);
    return session.id;
  }

  // --- context -------------------------------------------------------------
  function campaign() {
    var params = new URLSearchParams(location.search);
    var fields = { source: "utm_source", medium: "utm_medium", name: "utm_campaign",
      term: "utm_term", content: "utm_content", utm_message_id: "utm_message_id" };
    var found = null;
    Object.keys(fields).forEach(function (field) {
      var value = params.get(fields[field]);
      if (value) {
        found = found || {};
        found[field] = value.slice(0, 256);
      }
    });
    if (found) save("campaign", found); // a landing's campaign lasts the session
    return found || load("campaign", null);
  }
  // A message's VIP link carries a single-use discount token (a bearer credential):
  // the page's address is sent without it.
  var SECRET_PARAMS = ["vip_token"];
  function pageUrl() {
    var url = new URL(location.href);
    SECRET_PARAMS.forEach(function (name) {
      if (url.searchParams.has(name)) url.searchParams.delete(name);
    });
    return url.href.slice(0, 4096);
  }
  function context() {
    var ctx = {
      page: { url: pageUrl(), path: location.pathname.slice(0, 2048),
        title: document.title.slice(0, 2048) },
      user_agent: navigator.userAgent.slice(0, 2048),
      locale: (navigator.language || "").slice(0, 256) || undefined,
    };
    if (document.referrer) ctx.page.referrer = document.referrer.slice(0, 2048);
    try {
      ctx.timezone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    } catch (e) { /* old browsers */ }
    var c = campaign();
    if (c) ctx.campaign = c;
    return ctx;
  }

  // --- the queue -----------------------------------------------------------
  var queue = load("queue", []);
  if (!Array.isArray(queue)) queue = [];
  var backoffMs = 0;
  var retryAt = 0;
  var sending = false;

  function enqueue(event) {
    queue.push(event);
    if (queue.length > MAX_QUEUE) queue.splice(0, queue.length - MAX_QUEUE);
    save("queue", queue);
    if (queue.length >= MAX_BATCH) flush();
  }

  function track(name, properties) {
    var event = {
      event_id: uuid(),
      name: name,
      timestamp: new Date().toISOString(),
      anonymous_id: anonymousId,
      session_id: sessionId(),
      properties: properties || {},
      context: context(),
    };
    var userId = load("user_id", null);
    if (userId) event.user_id = userId;
    enqueue(event);
    return event.event_id;
  }

  function drop(ids) {
    queue = load("queue", queue).filter(function (e) { return !ids[e.event_id]; });
    save("queue", queue);
  }

  function scheduleRetry(retryAfterS) {
    backoffMs = Math.min(MAX_BACKOFF_MS, backoffMs ? backoffMs * 2 : 1000);
    var wait = retryAfterS ? Math.max(retryAfterS * 1000, backoffMs) : backoffMs;
    retryAt = Date.now() + wait * (0.8 + Math.random() * 0.4);
  }

  function flush() {
    if (sending || !WRITE_KEY || Date.now() < retryAt) return;
    queue = load("queue", queue);
    if (!queue.length) return;
    var batch = queue.slice(0, MAX_BATCH);
    var ids = {};
    batch.forEach(function (e) { ids[e.event_id] = true; });
    sending = true;
    fetch(TRACK_URL, {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: "Bearer " + WRITE_KEY },
      body: JSON.stringify({ batch: batch }),
      keepalive: true,
      credentials: "omit",
    }).then(function (response) {
      if (response.status === 202) {
        backoffMs = 0;
        retryAt = 0;
        drop(ids); // accepted, or rejected for good (a resend would be rejected again)
        return response.json().then(function (body) {
          if (body.rejected && body.rejected.length && window.console) {
            console.warn("intentflow: events rejected", body.rejected);
          }
        });
      }
      if (response.status === 429 || response.status === 503 || response.status >= 500) {
        scheduleRetry(parseInt(response.headers.get("Retry-After") || "0", 10));
        return;
      }
      // 401, 413, 415, 422: resending the same batch cannot succeed.
      drop(ids);
      if (window.console) console.error("intentflow: collector answered " + response.status);
    }, function () {
      scheduleRetry(0); // unreachable
    }).then(function () {
      sending = false;
      if (!retryAt && load("queue", queue).length) setTimeout(flush, 0);
    });
  }

  // Page hidden or left: hand what is queued to the browser, which sends it even
  // after the page is gone. While the collector is failing, keep it for the next page.
  function flushByBeacon() {
    if (!WRITE_KEY || !navigator.sendBeacon || Date.now() < retryAt) return;
    queue = load("queue", queue);
    while (queue.length) {
      var batch = queue.slice(0, MAX_BATCH);
      var body = JSON.stringify({ batch: batch });
      while (body.length > BEACON_BYTES && batch.length > 1) {
        batch = batch.slice(0, Math.ceil(batch.length / 2));
        body = JSON.stringify({ batch: batch });
      }
      var url = TRACK_URL + "?write_key=" + encodeURIComponent(WRITE_KEY);
      var blob = new Blob([body], { type: "text/plain;charset=UTF-8" });
      if (!navigator.sendBeacon(url, blob)) return; // refused: stays queued
      queue = queue.slice(batch.length);
      save("queue", queue);
    }
  }

  // --- automatic events ----------------------------------------------------
  function num(value) {
    var n = Number(value);
    return value !== null && value !== "" && isFinite(n) ? n : value;
  }
  function productOnPage() {
    var el = document.querySelector(PRODUCT_SELECTOR);
    if (!el) return null;
    var product = { product_id: el.getAttribute("data-if-product-id") };
    var category = el.getAttribute("data-if-category");
    var price = el.getAttribute("data-if-price");
    if (category) product.category = category;
    if (price) product.price = num(price);
    return product.product_id ? product : null;
  }

  function page() {
    track("page_view", { url: pageUrl() });
    var product = productOnPage();
    if (product) track("product_view", product);
  }

  // Spec linger: the specs element visible for at least LINGER_MS at a stretch.
  function watchSpecs() {
    var specs = document.querySelector(SPECS_SELECTOR);
    var product = productOnPage();
    if (!specs || !product || !window.IntersectionObserver) return;
    var shownAt = 0;
    var reported = false;
    var timer = null;
    function stop() {
      if (!shownAt) return;
      var dwell = Date.now() - shownAt;
      shownAt = 0;
      clearTimeout(timer);
      if (!reported && dwell >= LINGER_MS) report(dwell);
    }
    function report(dwell) {
      reported = true;
      var props = { product_id: product.product_id, dwell_ms: Math.round(dwell) };
      if (product.category) props.category = product.category;
      track("spec_linger", props);
    }
    new IntersectionObserver(function (entries) {
      entries.forEach(function (entry) {
        if (entry.isIntersecting && entry.intersectionRatio >= 0.5 && !document.hidden) {
          if (!shownAt) {
            shownAt = Date.now();
            timer = setTimeout(function () {
              if (shownAt && !reported) report(Date.now() - shownAt);
            }, LINGER_MS);
          }
        } else {
          stop();
        }
      });
    }, { threshold: [0, 0.5, 1] }).observe(specs);
    document.addEventListener("visibilitychange", function () { if (document.hidden) stop(); });
  }

  function watchScroll() {
    var reached = {};
    var pending = false;
    function check() {
      pending = false;
      var doc = document.documentElement;
      var scrollable = doc.scrollHeight - window.innerHeight;
      if (scrollable <= 0) return;
      var percentage = Math.min(100, (window.scrollY / scrollable) * 100);
      SCROLL_DEPTHS.forEach(function (depth) {
        if (percentage >= depth && !reached[depth]) {
          reached[depth] = true;
          track("deep_scroll", { percentage: depth });
        }
      });
    }
    window.addEventListener("scroll", function () {
      if (!pending) {
        pending = true;
        window.requestAnimationFrame(check);
      }
    }, { passive: true });
  }

  // Exit intent: the pointer leaves the window through its top edge (towards tabs or
  // the address bar), once per page.
  function watchExit() {
    var fired = false;
    document.addEventListener("mouseout", function (e) {
      if (fired || e.relatedTarget || e.clientY > 0) return;
      fired = true;
      track("exit_intent", {});
      flush();
    });
  }

  function watchClicks() {
    document.addEventListener("click", function (e) {
      var el = e.target && e.target.closest && e.target.closest("[data-if-track],[data-if-click]");
      if (!el) return;
      var name = el.getAttribute("data-if-track");
      if (name) {
        var props = {};
        Array.prototype.forEach.call(el.attributes, function (a) {
          if (a.name.indexOf("data-if-prop-") === 0) props[a.name.slice(13)] = num(a.value);
        });
        track(name, props);
      } else if (el.id) {
        track("button_click", { element_id: el.id, text: (el.textContent || "").trim().slice(0, 2048) });
      }
    }, true);
  }

  // --- the public API ------------------------------------------------------
  var api = {
    version: "1",
    track: track,
    page: page,
    flush: flush,
    identify: function (userId, traits) {
      save("user_id", String(userId));
      return track("identify", { traits: traits || {} });
    },
    consent: function (channel, granted, phone, purpose) {
      var props = { channel: channel, granted: !!granted };
      if (phone) props.phone = phone;
      if (purpose) props.purpose = purpose;
      return track("consent", props);
    },
    reset: function () { // log-out: a new anonymous id, no user
      save("user_id", null);
      anonymousId = uuid();
      save("anonymous_id", anonymousId);
    },
    anonymousId: function () { return anonymousId; },
    uuid: uuid,
    userId: function () { return load("user_id", null); },
    queued: function () { return load("queue", queue).length; },
  };
  window.intentflow = api;

  if (!WRITE_KEY && window.console) console.error("intentflow: no data-write-key on the script tag");
  function start() {
    page();
    watchSpecs();
    watchScroll();
    watchExit();
    watchClicks();
    setInterval(flush, FLUSH_MS);
    flush();
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "hidden") flushByBeacon();
  });
  window.addEventListener("pagehide", flushByBeacon);
})();

// tokenbudget dashboard: keeps the server-rendered page fresh from /api/ (polling every 2 s).
"use strict";
(function () {
  var POLL_MS = 2000;

  function amount(unit, v) {
    if (unit === "usd") {
      var whole = Math.floor(v / 1e6), frac = String(v % 1e6);
      while (frac.length < 6) frac = "0" + frac;
      while (frac.length > 2 && frac.endsWith("0")) frac = frac.slice(0, -1);
      return "$" + whole + "." + frac;
    }
    return String(v).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  }
  function amountU(unit, v) { return unit === "usd" ? amount(unit, v) : amount(unit, v) + " tokens"; }
  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function pct(pm) { return (pm / 10).toFixed(1) + "%"; }
  function bar(b, row) {
    var d = el("div", { "class": "bar", title: "used " + row.used + ", held " + row.reserved + " of " + row.limit });
    d.appendChild(el("span", { "class": "used", style: "width: " + pct(b.used) }));
    d.appendChild(el("span", { "class": "held", style: "width: " + pct(b.held) }));
    return d;
  }
  function state(s) { return s.closed ? "closed" : s.exhausted ? "exhausted" : "open"; }
  function stamp() {
    var u = document.getElementById("updated");
    if (u) u.textContent = "updated " + new Date().toLocaleTimeString();
  }
  function getJSON(url) {
    return fetch(url, { credentials: "same-origin" }).then(function (r) {
      if (!r.ok) throw new Error(url + ": " + r.status);
      return r.json();
    });
  }
  async function allBudgets() {
    var rows = [], after = null;
    for (;;) {
      var page = await getJSON("/api/budgets" + (after ? "?after=" + encodeURIComponent(after) : ""));
      rows = rows.concat(page.budgets);
      if (!page.next) return rows;
      after = page.next;
    }
  }

  function renderTree(tbody, rows) {
    var out = document.createDocumentFragment();
    rows.forEach(function (r) {
      var tr = el("tr", { "data-id": r.id, "class": (r.closed ? "closed" : "") + (r.exhausted ? " exhausted" : "") });
      var name = el("td", { "class": "name", style: "padding-left: " + (r.depth * 16 + 4) + "px" });
      name.appendChild(el("a", { href: "/dashboard/budgets/" + encodeURIComponent(r.id) }, r.id));
      tr.appendChild(name);
      var b = el("td"); b.appendChild(bar(r.bar, { used: amount(r.unit, r.used), reserved: amount(r.unit, r.reserved), limit: amount(r.unit, r.limit) }));
      tr.appendChild(b);
      [["used", r.used], ["reserved", r.reserved], ["available", r.available], ["limit", r.limit]].forEach(function (c) {
        tr.appendChild(el("td", { "class": "num " + c[0] }, amount(r.unit, c[1])));
      });
      tr.appendChild(el("td", {}, r.period || ""));
      tr.appendChild(el("td", {}, r.resets_at || ""));
      tr.appendChild(el("td", { "class": "state" }, state(r)));
      out.appendChild(tr);
    });
    tbody.replaceChildren(out);
  }

  async function refreshTree(table) {
    renderTree(table.tBodies[0], await allBudgets());
    stamp();
  }

  async function refreshRefusals(table) {
    var page = await getJSON("/api/refusals?limit=20");
    var out = document.createDocumentFragment();
    page.refusals.forEach(function (n) {
      var tr = el("tr", { "data-seq": String(n.seq), "class": n.kind });
      tr.appendChild(el("td", {}, n.at));
      tr.appendChild(el("td", { "class": "kind" }, n.kind));
      var b = el("td", { "class": "budget" });
      b.appendChild(el("a", { href: "/dashboard/budgets/" + encodeURIComponent(n.budget_id) }, n.budget_id));
      tr.appendChild(b);
      tr.appendChild(el("td", { "class": "origin" }, n.origin));
      tr.appendChild(el("td", { "class": "num requested" }, amountU(n.unit, n.requested)));
      var left = n.reason === "closed" ? "closed"
        : n.available !== null ? amountU(n.unit, n.available) + " available"
        : n.granted !== null ? "held " + amountU(n.unit, n.granted) : "";
      tr.appendChild(el("td", { "class": "left" }, left));
      tr.appendChild(el("td", {}, n.model || ""));
      out.appendChild(tr);
    });
    table.tBodies[0].replaceChildren(out);
    var none = document.getElementById("no-refusals");
    if (none) none.hidden = page.refusals.length > 0;
  }

  async function refreshBudget(id) {
    var enc = encodeURIComponent(id);
    var s = await getJSON("/api/budgets/" + enc);
    ["limit", "used", "reserved", "available"].forEach(function (k) {
      var v = document.querySelector(".cards .value." + k);
      if (v) v.textContent = amount(s.unit, s[k]);
    });
    var st = document.querySelector(".cards .value.state");
    if (st) st.textContent = state(s);
    var held = await getJSON("/api/reservations?state=held&budget=" + enc);
    var out = document.createDocumentFragment();
    held.reservations.forEach(function (r) {
      var tr = el("tr");
      var c = el("td"); c.appendChild(el("code", {}, r.id)); tr.appendChild(c);
      tr.appendChild(el("td", {}, r.budget_id));
      tr.appendChild(el("td", { "class": "num" }, amount(s.unit, r.tokens)));
      tr.appendChild(el("td", {}, r.expires_at));
      tr.appendChild(el("td", {}, r.model || ""));
      out.appendChild(tr);
    });
    document.getElementById("held").tBodies[0].replaceChildren(out);
    stamp();
  }

  function moreEvents(id, button) {
    var tbody = document.getElementById("events").tBodies[0];
    var last = tbody.rows.length ? tbody.rows[tbody.rows.length - 1].cells[0].textContent : "0";
    getJSON("/api/budgets/" + encodeURIComponent(id) + "/events?after=" + last).then(function (page) {
      page.events.forEach(function (e) {
        var tr = el("tr");
        tr.appendChild(el("td", { "class": "num" }, String(e.seq)));
        tr.appendChild(el("td", {}, e.at));
        tr.appendChild(el("td", {}, e.type));
        var d = el("td"); d.appendChild(el("code", {}, JSON.stringify(e))); tr.appendChild(d);
        tbody.appendChild(tr);
      });
      if (!page.next) button.disabled = true;
    });
  }

  function every(f) {
    var run = function () { f().catch(function (e) { console.warn("refresh failed:", e.message); }); };
    setInterval(run, POLL_MS);
  }

  var tree = document.querySelector("table[data-live=tree]");
  if (tree) every(function () { return refreshTree(tree); });
  var refusals = document.querySelector("table[data-live=refusals]");
  if (refusals) every(function () { return refreshRefusals(refusals); });
  var budget = document.getElementById("budget");
  if (budget) {
    var id = budget.getAttribute("data-id");
    every(function () { return refreshBudget(id); });
    var more = document.getElementById("more-events");
    if (more) more.addEventListener("click", function () { moreEvents(id, more); });
  }
  window.tokenbudget = { amount: amount };
})();

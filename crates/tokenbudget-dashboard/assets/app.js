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

  // Usage history: /api/usage (days, models, the stacked chart), /api/usage/top, /api/usage/blocks.
  window.__charts = window.__charts || {};
  var COLORS = { input: "#3b6fd9", output: "#f0a33a", cache_write: "#8e44ad", cache_read: "#27ae60" };
  function usd(micros) { return "$" + (micros / 1e6).toFixed(2); }
  function fill(id, rows, cells) {
    var table = document.getElementById(id);
    if (!table) return;
    var out = document.createDocumentFragment();
    rows.forEach(function (r) {
      var tr = el("tr");
      cells(r).forEach(function (c) { tr.appendChild(el("td", c[1] ? { "class": c[1] } : {}, c[0])); });
      out.appendChild(tr);
    });
    table.tBodies[0].replaceChildren(out);
  }
  function drawUsage(box, chart) {
    var layers = chart.layers.slice().reverse();
    var data = [chart.x].concat(layers.map(function (l) { return l[1]; })).concat([chart.cost_usd]);
    var bars = uPlot.paths && uPlot.paths.bars ? uPlot.paths.bars({ size: [0.7, 60] }) : undefined;
    var series = [{}].concat(layers.map(function (l) {
      return { label: l[0].replace("_", " "), stroke: COLORS[l[0]], fill: COLORS[l[0]], paths: bars, points: { show: false } };
    })).concat([{ label: "cost", scale: "usd", stroke: "#c0392b", width: 2, value: function (u, v) { return v == null ? "" : "$" + v.toFixed(2); } }]);
    var old = window.__charts[box.id];
    if (old) old.destroy();
    var opts = {
      width: Math.max(box.clientWidth, 600), height: 260, series: series,
      scales: { x: { time: true } },
      axes: [{}, { label: "tokens", size: 70 }, { scale: "usd", side: 1, grid: { show: false }, label: "cost $", values: function (u, vs) { return vs.map(function (v) { return "$" + v; }); } }],
    };
    box.replaceChildren();
    window.__charts[box.id] = new uPlot(opts, data, box);
    box.setAttribute("data-points", String(chart.x.length));
  }
  async function loadUsage(section) {
    var form = document.getElementById("usage-range");
    var params = new URLSearchParams();
    ["range", "tz", "project", "model"].forEach(function (k) {
      var v = form.elements[k].value.trim();
      if (v) params.set(k, v);
    });
    var budget = section.getAttribute("data-budget");
    if (budget) params.set("budget", budget);
    var q = params.toString();
    var u = await getJSON("/api/usage?" + q);
    var t = u.total;
    var cards = document.getElementById("usage-total");
    cards.replaceChildren();
    [["Tokens", amount("tokens", t.total_tokens), "tokens"], ["Cost", usd(t.cost_micro_usd), "cost"], ["Responses", amount("tokens", t.responses), "responses"],
     ["Range", u.range.since + " to " + u.range.until + " (" + u.range.tz + ")", "range"]].forEach(function (c) {
      var d = el("div");
      d.appendChild(el("span", { "class": "label" }, c[0]));
      d.appendChild(el("span", { "class": "value " + c[2] }, c[1]));
      cards.appendChild(d);
    });
    drawUsage(document.getElementById("usage-chart"), u.chart);
    fill("usage-models", u.models, function (m) { return [[m.key], [amount("tokens", m.total_tokens), "num"], [usd(m.cost_micro_usd), "num"]]; });
    if (!document.getElementById("usage-sessions")) return;
    var sessions = await getJSON("/api/usage/top?by=session&limit=10&" + q);
    fill("usage-sessions", sessions.groups, function (g) { return [[g.key], [g.models.join(", ")], [amount("tokens", g.total_tokens), "num"], [usd(g.cost_micro_usd), "num"]]; });
    var projects = await getJSON("/api/usage/top?by=project&limit=10&" + q);
    fill("usage-projects", projects.groups, function (g) { return [[g.key], [amount("tokens", g.total_tokens), "num"], [usd(g.cost_micro_usd), "num"]]; });
    var blocks = await getJSON("/api/usage/blocks?" + q);
    var last = blocks.blocks.slice(-10).reverse();
    fill("usage-blocks", last, function (b) {
      var start = new Date(b.start * 1000).toISOString().slice(0, 16).replace("T", " ");
      return [[start], [b.models.join(", ")], [amount("tokens", b.total_tokens), "num"], [usd(b.cost_micro_usd), "num"]];
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
  var usageSection = document.getElementById("usage");
  if (usageSection) {
    var reload = function () { loadUsage(usageSection).catch(function (e) { console.warn("usage failed:", e.message); }); };
    reload();
    document.getElementById("usage-range").addEventListener("change", reload);
    setInterval(reload, 30000);
  }
  window.tokenbudget = { amount: amount };
})();

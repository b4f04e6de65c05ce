// wxcube dashboard: cohort triangles and retention curves over wxcube's public API.
// Plain script (no build step, no dependencies). Endpoints used:
//   POST /cgi-bin/stable_token {grant_type, appid, secret}             (sign in)
//   GET  /wxcube/v1/info?access_token=                                 (default ranges)
//   POST /wxcube/v1/retain?access_token=  {kind, begin_date, end_date} (one item per period)
"use strict";

(function () {
  const I18N = window.WXCUBE_I18N;
  const KEYS = { day: [0, 1, 2, 3, 4, 5, 6, 7, 14, 30], week: [0, 1, 2, 3, 4], month: [0, 1] };
  const DEFAULT_COUNT = { day: 30, week: 8, month: 6 };
  const KINDS = ["day", "week", "month"];
  const METRICS = ["visit_uv_new", "visit_uv"];
  const STORE_SESSION = "wxcube.session";
  const STORE_VIEW = "wxcube.view";
  const STORE_LANG = "wxcube.lang";
  const DAY_MS = 86400000;
  const SVG_NS = "http://www.w3.org/2000/svg";

  const $ = (id) => document.getElementById(id);

  const state = {
    lang: "zh",
    session: null, // {appid, token}
    info: null,
    kind: "day",
    metric: "visit_uv_new",
    ranges: {}, // kind -> {begin, last} (period starts, day numbers) chosen by the person
    data: null, // {kind, begin, end, items}
    cache: new Map(),
    seq: 0,
    error: null, // {text: key, params, detail, retry}
    empty: null, // i18n key of the empty-state message
  };

  // ---------------------------------------------------------------- storage (may be disabled)
  function storeGet(store, key) {
    try {
      const v = store.getItem(key);
      return v === null ? null : JSON.parse(v);
    } catch (_e) {
      return null;
    }
  }
  function storeSet(store, key, value) {
    try {
      if (value === null) store.removeItem(key);
      else store.setItem(key, JSON.stringify(value));
    } catch (_e) {
      /* storage unavailable: the page still works for this visit */
    }
  }

  // ---------------------------------------------------------------- i18n
  function t(key, params) {
    const table = I18N[state.lang] || I18N.zh;
    const v = key in table ? table[key] : I18N.zh[key];
    return typeof v === "function" ? v(params || {}) : v === undefined ? key : v;
  }

  function applyStatic() {
    document.documentElement.lang = t("htmlLang");
    document.title = t("docTitle");
    for (const el of document.querySelectorAll("[data-i18n]")) {
      el.textContent = t(el.getAttribute("data-i18n"));
    }
    const toggle = $("lang-toggle");
    toggle.textContent = t("langToggle");
    toggle.title = t("langToggleTitle");
  }

  // ---------------------------------------------------------------- dates as day numbers (UTC)
  function parseYmd(s) {
    return Date.UTC(+s.slice(0, 4), +s.slice(4, 6) - 1, +s.slice(6, 8)) / DAY_MS;
  }
  function parseIso(s) {
    const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(s || "");
    return m ? Date.UTC(+m[1], +m[2] - 1, +m[3]) / DAY_MS : null;
  }
  function parts(n) {
    const d = new Date(n * DAY_MS);
    return [d.getUTCFullYear(), d.getUTCMonth() + 1, d.getUTCDate(), d.getUTCDay()];
  }
  const pad = (x) => String(x).padStart(2, "0");
  function ymd(n) {
    const [y, m, d] = parts(n);
    return `${y}${pad(m)}${pad(d)}`;
  }
  function iso(n) {
    const [y, m, d] = parts(n);
    return `${y}-${pad(m)}-${pad(d)}`;
  }
  function startOf(kind, n) {
    if (kind === "day") return n;
    if (kind === "week") return n - ((((n + 3) % 7) + 7) % 7); // 1970-01-01 was a Thursday
    const [y, m] = parts(n);
    return Date.UTC(y, m - 1, 1) / DAY_MS;
  }
  function shift(kind, start, k) {
    if (kind === "day") return start + k;
    if (kind === "week") return start + 7 * k;
    const [y, m] = parts(start);
    return Date.UTC(y, m - 1 + k, 1) / DAY_MS;
  }
  const endOf = (kind, start) => shift(kind, start, 1) - 1;

  // ---------------------------------------------------------------- API
  class DashError extends Error {
    constructor(type, code, errmsg, status) {
      super(errmsg || type);
      this.type = type; // "network" | "http" | "api"
      this.code = code;
      this.errmsg = errmsg || "";
      this.status = status;
    }
  }

  async function api(path, options) {
    const opts = options || {};
    let url = path;
    if (opts.auth !== false) {
      url += (url.includes("?") ? "&" : "?") + "access_token=" + encodeURIComponent(state.session.token);
    }
    const init = { method: opts.body ? "POST" : "GET", cache: "no-store" };
    if (opts.body) {
      init.body = JSON.stringify(opts.body);
      init.headers = { "Content-Type": "application/json" };
    }
    let res;
    try {
      res = await fetch(url, init);
    } catch (_e) {
      throw new DashError("network");
    }
    let json = null;
    try {
      json = JSON.parse(await res.text());
    } catch (_e) {
      json = null;
    }
    if (json && typeof json === "object" && typeof json.errcode === "number" && json.errcode !== 0) {
      throw new DashError("api", json.errcode, String(json.errmsg || ""), res.status);
    }
    if (!res.ok || !json || typeof json !== "object") {
      throw new DashError("http", null, "", res.status);
    }
    return json;
  }

  // ---------------------------------------------------------------- errors and status
  function splitErrmsg(errmsg) {
    const m = /^(.*?)\s*rid:\s*([0-9a-f-]+)\s*$/.exec(errmsg || "");
    return m ? { text: m[1], rid: m[2] } : { text: errmsg || "", rid: "" };
  }

  // Turns an error into words; returns true when the session is gone (signed out).
  function report(err, context, retry) {
    if (!(err instanceof DashError)) {
      setError({ text: "errScript", detail: String(err && err.message ? err.message : err) });
      return false;
    }
    if (err.type === "network") {
      setError({ text: "errNetwork", retry });
      return false;
    }
    if (err.type === "http") {
      setError({ text: "errHttp", params: { status: err.status }, retry });
      return false;
    }
    const { text, rid } = splitErrmsg(err.errmsg);
    const detail = { code: err.code, rid, message: text };
    const c = err.code;
    if (context === "signin") {
      const key =
        c === 40001 || c === 40125 ? "errBadSecret" : c === 40013 ? "errBadAppid" : c === 41002 || c === 41004 ? "errMissing" : null;
      if (key) {
        setError({ text: key, detail });
        return false;
      }
    } else if (c === 40001 || c === 40014 || c === 41001 || c === 42001) {
      signOut({ text: c === 42001 ? "errExpired" : "errSignedOut", detail });
      return true;
    }
    const key =
      c === 45009 || c === 45011
        ? "errQuota"
        : c === 61503
          ? "errLoading"
          : c === 61500 || c === 61501
            ? "errDate"
            : c === -1
              ? "errSystem"
              : "errOther";
    setError({ text: key, detail, retry });
    return false;
  }

  function setError(error) {
    state.error = error;
    renderError();
  }
  function clearError() {
    state.error = null;
    renderError();
  }
  function renderError() {
    const box = $("error");
    const e = state.error;
    box.hidden = !e;
    if (!e) return;
    $("error-text").textContent = t(e.text, e.params);
    let detail = "";
    if (e.detail && typeof e.detail === "object") {
      const code = t("errDetail", { code: e.detail.code, rid: e.detail.rid });
      detail = e.detail.message ? `${e.detail.message} (${code})` : code;
    } else if (e.detail) {
      detail = e.detail;
    }
    $("error-detail").textContent = detail;
    $("error-detail").hidden = !detail;
    $("error-retry").hidden = !e.retry;
  }

  // ---------------------------------------------------------------- sign in / out
  function showSignin() {
    $("signin").hidden = false;
    $("dash").hidden = true;
    $("sign-out").hidden = true;
  }

  function signOut(error) {
    state.session = null;
    state.info = null;
    state.data = null;
    state.cache.clear();
    state.ranges = {};
    state.seq += 1; // drop answers still in flight
    storeSet(sessionStorage, STORE_SESSION, null);
    showSignin();
    if (error) setError(error);
    else clearError();
    const secret = $("secret");
    secret.value = "";
    ($("appid").value ? secret : $("appid")).focus();
  }

  async function onSignin(ev) {
    ev.preventDefault();
    const appid = $("appid").value.trim();
    const secret = $("secret").value.trim();
    if (!appid || !secret) {
      setError({ text: "errMissing" });
      return;
    }
    const button = $("signin-submit");
    button.disabled = true;
    button.textContent = t("signingIn");
    try {
      // stable_token, not /cgi-bin/token: a new /cgi-bin/token would retire the token the
      // app's own back end is using, and stable_token hands out the same token while valid.
      const body = { grant_type: "client_credential", appid, secret, force_refresh: false };
      const res = await api("/cgi-bin/stable_token", { auth: false, body });
      if (typeof res.access_token !== "string") throw new DashError("http", null, "", 200);
      state.session = { appid, token: res.access_token };
      storeSet(sessionStorage, STORE_SESSION, state.session);
      $("secret").value = "";
      clearError();
      await enterDashboard();
    } catch (err) {
      report(err, "signin", null);
    } finally {
      button.disabled = false;
      button.textContent = t("signin");
    }
  }

  async function enterDashboard() {
    $("signin").hidden = true;
    $("dash").hidden = false;
    $("sign-out").hidden = false;
    $("appid").value = state.session.appid;
    state.info = null;
    state.data = null;
    state.empty = null;
    $("results").hidden = true;
    $("empty").hidden = true;
    renderMeta();
    setStatus(t("loading"));
    const seq = ++state.seq;
    let info;
    try {
      info = await api("/wxcube/v1/info");
    } catch (err) {
      if (seq === state.seq && !report(err, "data", enterDashboard)) setStatus("");
      return;
    }
    if (seq !== state.seq) return;
    clearError();
    state.info = info;
    renderMeta();
    await loadData();
  }

  // ---------------------------------------------------------------- ranges
  function defaultRange(kind) {
    const info = state.info;
    if (!info || !info.first_day || !info.last_day || !info.as_of) return null;
    const asOf = parseYmd(info.as_of);
    const anchor = Math.min(asOf, parseYmd(info.last_day));
    let last = startOf(kind, anchor);
    if (endOf(kind, last) > asOf) last = shift(kind, last, -1);
    let begin = shift(kind, last, -(DEFAULT_COUNT[kind] - 1));
    const firstData = startOf(kind, parseYmd(info.first_day));
    if (begin < firstData) begin = firstData;
    return last < begin ? null : { begin, last };
  }

  function currentRange() {
    return state.ranges[state.kind] || defaultRange(state.kind);
  }

  function onRange(ev) {
    ev.preventDefault();
    if (!state.info) return;
    const kind = state.kind;
    const from = parseIso($("range-from").value);
    const to = parseIso($("range-to").value);
    if (from === null || to === null) {
      setError({ text: "errDate" });
      return;
    }
    const asOf = parseYmd(state.info.as_of);
    const begin = startOf(kind, Math.min(from, to));
    let last = startOf(kind, Math.max(from, to));
    if (endOf(kind, last) > asOf) last = startOf(kind, asOf);
    if (endOf(kind, last) > asOf) last = shift(kind, last, -1);
    if (last < begin) {
      setError({ text: "noPeriods" });
      return;
    }
    clearError();
    state.ranges[kind] = { begin, last };
    loadData();
  }

  function onLatest() {
    delete state.ranges[state.kind];
    clearError();
    loadData();
  }

  // ---------------------------------------------------------------- data
  async function loadData() {
    renderSwitches();
    if (!state.info) return;
    const kind = state.kind;
    if (!state.info.first_day) {
      showEmpty("noData");
      return;
    }
    const range = currentRange();
    if (!range) {
      showEmpty("noPeriods");
      return;
    }
    const begin = range.begin;
    const end = endOf(kind, range.last);
    $("range-from").value = iso(begin);
    $("range-to").value = iso(end);
    $("range-to").max = $("range-from").max = iso(parseYmd(state.info.as_of));
    const body = { kind, begin_date: ymd(begin), end_date: ymd(end) };
    const cacheKey = JSON.stringify(body);
    const seq = ++state.seq;
    let items = state.cache.get(cacheKey);
    if (!items) {
      setStatus(t("loading"));
      $("results").classList.add("busy");
      try {
        const res = await api("/wxcube/v1/retain", { body });
        items = Array.isArray(res.items) ? res.items : [];
        state.cache.set(cacheKey, items);
      } catch (err) {
        if (seq === state.seq) {
          $("results").classList.remove("busy");
          if (!report(err, "data", loadData)) setStatus("");
        }
        return;
      }
      if (seq !== state.seq) return;
      $("results").classList.remove("busy");
    }
    clearError();
    state.data = { kind, begin, end, items };
    if (!items.length) {
      showEmpty("noPeriods");
      return;
    }
    state.empty = null;
    renderData();
  }

  function showEmpty(key) {
    state.empty = key;
    state.data = null;
    setStatus("");
    renderData();
  }

  // value of key k of one item's metric, or null when the key is absent (not yet elapsed)
  function valueOf(item, metric, k) {
    const list = item[metric] || [];
    for (const e of list) if (e.key === k) return e.value;
    return null;
  }

  // ---------------------------------------------------------------- rendering
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else node.setAttribute(k, String(v));
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c);
    return node;
  }
  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    for (const c of children) if (c !== null && c !== undefined) node.append(c);
    return node;
  }

  const fmtInt = (n) => n.toLocaleString(state.lang === "zh" ? "zh-CN" : "en-US");
  // share v/base in per mille, rounded half up; (v * 1000) / base makes ties exact
  const permille = (v, base) => Math.round((v * 1000) / base);
  const fmtPermille = (m) => (m / 10).toFixed(1);
  const fmtPct = (p) => `${fmtPermille(Math.round(p * 1000))}%`;

  function setStatus(text) {
    $("status").textContent = text;
  }

  function renderSwitches() {
    for (const b of document.querySelectorAll("#kind-switch button")) {
      const on = b.dataset.kind === state.kind;
      b.classList.toggle("on", on);
      b.setAttribute("aria-pressed", String(on));
    }
    for (const b of document.querySelectorAll("#metric-switch button")) {
      const on = b.dataset.metric === state.metric;
      b.classList.toggle("on", on);
      b.setAttribute("aria-pressed", String(on));
    }
  }

  function renderMeta() {
    const info = state.info;
    $("app-name").textContent = info ? info.name || info.appid : state.session ? state.session.appid : "";
    if (!info) {
      $("app-meta").textContent = "";
      return;
    }
    const bits = [info.appid, t("timezone", { tz: info.timezone })];
    if (info.as_of) bits.push(t("asOf", { d: iso(parseYmd(info.as_of)) }));
    bits.push(t("users", { n: Number(info.users) || 0 }));
    $("app-meta").textContent = bits.join(" · ");
  }

  function periodLabel(kind, ref) {
    if (kind === "month") return { main: `${ref.slice(0, 4)}-${ref.slice(4, 6)}`, sub: "" };
    const start = parseYmd(ref.slice(0, 8));
    if (kind === "week") {
      const end = parseYmd(ref.slice(9, 17));
      return { main: iso(start), sub: `– ${iso(end).slice(5)}` };
    }
    return { main: iso(start), sub: t("weekdays")[parts(start)[3]] };
  }

  function renderData() {
    const d = state.data;
    const empty = $("empty");
    empty.hidden = !state.empty;
    empty.textContent = state.empty ? t(state.empty) : "";
    $("results").hidden = !d || !!state.empty;
    $("csv").disabled = !d || !!state.empty;
    if (!d || state.empty) return;
    setStatus(
      t("shown", {
        begin: iso(d.begin),
        end: iso(d.end),
        n: d.items.length,
        unit: t("unit_" + d.kind),
      }),
    );
    renderTable(d);
    renderChart(d);
  }

  function renderTable(d) {
    const keys = KEYS[d.kind];
    const metric = state.metric;
    const table = $("cohort");
    table.replaceChildren();
    table.dataset.kind = d.kind;
    table.dataset.metric = metric;
    // heat scale: relative to the largest share among keys >= 1 in what is shown
    let maxShare = 0;
    for (const item of d.items) {
      const base = valueOf(item, metric, 0);
      if (!base) continue;
      for (const k of keys.slice(1)) {
        const v = valueOf(item, metric, k);
        if (v !== null) maxShare = Math.max(maxShare, v / base);
      }
    }
    const head = el("tr", null, el("th", { class: "period-h", scope: "col" }, t("period")));
    for (const k of keys) head.append(el("th", { scope: "col", "data-key": k }, t("key_" + d.kind, { k })));
    table.append(el("thead", null, head));
    const tbody = el("tbody");
    for (const item of d.items) {
      const label = periodLabel(d.kind, item.ref_date);
      const row = el(
        "tr",
        { "data-period": item.ref_date },
        el("th", { scope: "row", class: "period" }, el("span", { class: "pm" }, label.main), label.sub ? el("span", { class: "ps" }, label.sub) : null),
      );
      const base = valueOf(item, metric, 0);
      for (const k of keys) {
        const v = valueOf(item, metric, k);
        const attrs = {
          class: "cell" + (k === 0 ? " k0" : "") + (v === null ? " empty" : ""),
          "data-testid": "cell",
          "data-period": item.ref_date,
          "data-key": k,
          "data-metric": metric,
          "data-value": v === null ? null : v,
        };
        const td = el("td", attrs);
        if (v !== null) {
          const share = base ? v / base : null;
          const shareText = share === null ? "—" : `${fmtPermille(permille(v, base))}%`;
          td.append(el("span", { class: "v" }, fmtInt(v)), el("span", { class: "p" }, shareText));
          if (k > 0 && share !== null && maxShare > 0) {
            const a = 0.06 + 0.84 * Math.min(1, share / maxShare);
            td.style.backgroundColor = `rgba(7, 193, 96, ${a.toFixed(3)})`;
            if (a > 0.55) td.classList.add("dark");
          }
          td.title = `${item.ref_date} · ${t("key_" + d.kind, { k })} · ${fmtInt(v)} · ${shareText}`;
        }
        row.append(td);
      }
      tbody.append(row);
    }
    table.append(tbody);
  }

  // average (pooled over cohorts that have the key) and latest cohort share per key
  function curves(d, metric) {
    const keys = KEYS[d.kind];
    const avg = [];
    const latest = [];
    for (const k of keys) {
      let num = 0;
      let den = 0;
      let last = null;
      for (const item of d.items) {
        const v = valueOf(item, metric, k);
        const base = valueOf(item, metric, 0);
        if (v === null || !base) continue;
        num += v;
        den += base;
        last = { share: v / base, ref: item.ref_date };
      }
      avg.push(den ? { k, share: num / den } : null);
      latest.push(last ? { k, share: last.share, ref: last.ref } : null);
    }
    return { keys, avg, latest };
  }

  function renderChart(d) {
    const box = $("chart");
    box.replaceChildren();
    const { keys, avg, latest } = curves(d, state.metric);
    const W = Math.max(280, Math.floor(box.clientWidth || 600));
    const narrow = W < 520;
    const H = narrow ? 200 : 280;
    const pad = { l: 42, r: narrow ? 16 : 28, t: 22, b: 26 };
    const pw = W - pad.l - pad.r;
    const ph = H - pad.t - pad.b;
    const x = (i) => pad.l + (keys.length === 1 ? pw / 2 : (pw * i) / (keys.length - 1));
    const y = (share) => pad.t + ph * (1 - Math.max(0, Math.min(1, share)));
    const root = svg("svg", {
      width: W,
      height: H,
      viewBox: `0 0 ${W} ${H}`,
      role: "img",
      "aria-label": t("curveTitle"),
      "data-testid": "curve-svg",
      class: narrow ? "narrow" : "",
    });
    for (const g of [0, 0.25, 0.5, 0.75, 1]) {
      root.append(svg("line", { x1: pad.l, x2: W - pad.r, y1: y(g), y2: y(g), class: g === 0 ? "axis" : "grid" }));
      root.append(svg("text", { x: pad.l - 6, y: y(g) + 4, class: "ylab", "text-anchor": "end" }, `${g * 100}%`));
    }
    keys.forEach((k, i) => {
      root.append(
        svg(
          "text",
          { x: x(i), y: H - 8, class: "xlab", "text-anchor": "middle" },
          t((narrow ? "short_" : "key_") + d.kind, { k }),
        ),
      );
    });
    const series = [
      { name: "latest", data: latest, label: t("latestCohort") },
      { name: "avg", data: avg, label: t("average") },
    ];
    for (const s of series) {
      const pts = [];
      s.data.forEach((p, i) => p && pts.push([x(i), y(p.share), p]));
      if (pts.length > 1) {
        root.append(svg("polyline", { points: pts.map((p) => `${p[0].toFixed(1)},${p[1].toFixed(1)}`).join(" "), class: "line " + s.name }));
      }
      for (const [px, py, p] of pts) {
        const title = svg("title", null, `${s.label} · ${t("key_" + d.kind, { k: p.k })} · ${fmtPct(p.share)}${p.ref ? " · " + p.ref : ""}`);
        root.append(svg("circle", { cx: px.toFixed(1), cy: py.toFixed(1), r: 3.5, class: "pt " + s.name, "data-series": s.name, "data-key": p.k, "data-share": p.share.toFixed(6) }, title));
        if (s.name === "avg" && !narrow && p.k > 0) {
          // label above-right of the point, or below-right when the line climbs to the right
          const next = s.data[keys.indexOf(p.k) + 1];
          const above = !next || y(next.share) >= py - 4;
          root.append(svg("text", { x: px + 4, y: above ? py - 9 : py + 17, class: "vlab", "text-anchor": "start" }, fmtPct(p.share)));
        }
      }
    }
    box.append(root);
  }

  // ---------------------------------------------------------------- CSV of what is shown
  function csvCell(v) {
    const s = v === null || v === undefined ? "" : String(v);
    return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  }

  function csvText() {
    const d = state.data;
    const keys = KEYS[d.kind];
    const metric = state.metric;
    const header = ["ref_date", "metric"];
    for (const k of keys) header.push(`key_${k}`, `key_${k}_pct`);
    const lines = [header.map(csvCell).join(",")];
    for (const item of d.items) {
      const base = valueOf(item, metric, 0);
      const row = [item.ref_date, metric];
      for (const k of keys) {
        const v = valueOf(item, metric, k);
        row.push(v, v === null || !base ? null : fmtPermille(permille(v, base)));
      }
      lines.push(row.map(csvCell).join(","));
    }
    return lines.join("\r\n") + "\r\n";
  }

  function onCsv() {
    const d = state.data;
    if (!d || state.empty) return;
    const blob = new Blob([csvText()], { type: "text/csv;charset=utf-8" });
    const url = URL.createObjectURL(blob);
    const appid = (state.info && state.info.appid) || "wxcube";
    const a = el("a", { href: url, download: `${appid}-${d.kind}-${state.metric}-${ymd(d.begin)}-${ymd(d.end)}.csv`, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  // ---------------------------------------------------------------- wiring
  function saveView() {
    storeSet(sessionStorage, STORE_VIEW, { kind: state.kind, metric: state.metric });
  }

  function init() {
    const lang = storeGet(localStorage, STORE_LANG);
    state.lang = lang === "en" ? "en" : "zh";
    const view = storeGet(sessionStorage, STORE_VIEW);
    if (view && KINDS.includes(view.kind)) state.kind = view.kind;
    if (view && METRICS.includes(view.metric)) state.metric = view.metric;
    applyStatic();
    renderSwitches();

    $("signin-form").addEventListener("submit", onSignin);
    $("sign-out").addEventListener("click", () => signOut(null));
    $("range-form").addEventListener("submit", onRange);
    $("range-latest").addEventListener("click", onLatest);
    $("csv").addEventListener("click", onCsv);
    $("error-retry").addEventListener("click", () => {
      const retry = state.error && state.error.retry;
      clearError();
      if (retry) retry();
    });
    $("lang-toggle").addEventListener("click", () => {
      state.lang = state.lang === "zh" ? "en" : "zh";
      storeSet(localStorage, STORE_LANG, state.lang);
      applyStatic();
      renderMeta();
      renderError();
      if (state.data || state.empty) renderData();
    });
    $("kind-switch").addEventListener("click", (ev) => {
      const b = ev.target.closest("button[data-kind]");
      if (!b || b.dataset.kind === state.kind) return;
      state.kind = b.dataset.kind;
      saveView();
      clearError();
      loadData();
    });
    $("metric-switch").addEventListener("click", (ev) => {
      const b = ev.target.closest("button[data-metric]");
      if (!b || b.dataset.metric === state.metric) return;
      state.metric = b.dataset.metric;
      saveView();
      renderSwitches();
      if (state.data && state.data.kind === state.kind) renderData();
    });
    let resizeTimer = 0;
    window.addEventListener("resize", () => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(() => state.data && !state.empty && renderChart(state.data), 150);
    });

    const saved = storeGet(sessionStorage, STORE_SESSION);
    if (saved && typeof saved.token === "string" && typeof saved.appid === "string") {
      state.session = saved;
      enterDashboard();
    } else {
      showSignin();
      $("appid").focus();
    }
  }

  window.addEventListener("error", () => setError({ text: "errScript" }));
  window.addEventListener("unhandledrejection", (ev) =>
    setError({ text: "errScript", detail: String(ev.reason && ev.reason.message ? ev.reason.message : ev.reason) }),
  );
  document.documentElement.classList.add("js");
  init();
})();

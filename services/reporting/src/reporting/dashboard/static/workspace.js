// What the workspace pages share: the key (as the dashboard keeps it), calls through
// reporting's /workspace/api/ pass-through, problem answers in words, and formatting.
(() => {
  "use strict";
  const $ = (id) => document.getElementById(id);

  // The key: from the URL fragment once (#key=...), then kept for this tab only.
  function apiKey() {
    const match = location.hash.match(/key=([^&]+)/);
    if (match) {
      sessionStorage.setItem("funnel-key", decodeURIComponent(match[1]));
      history.replaceState(null, "", location.pathname + location.search);
    }
    return sessionStorage.getItem("funnel-key");
  }

  // One call: { status, ok, body, etag }. A refused key shows the key prompt.
  async function call(method, path, { query, body, ifMatch } = {}) {
    const params = new URLSearchParams(
      Object.entries(query || {}).filter(([, v]) => v !== null && v !== undefined && v !== ""));
    const headers = { Authorization: `Bearer ${apiKey()}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (ifMatch) headers["If-Match"] = ifMatch;
    const url = params.toString() ? `${path}?${params}` : path;
    let response;
    try {
      response = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (err) {
      return { status: 0, ok: false, body: { detail: "the network failed; try again" }, etag: null };
    }
    const text = await response.text();
    let parsed = null;
    try { parsed = text ? JSON.parse(text) : null; } catch (err) { parsed = { detail: text.slice(0, 200) }; }
    if (response.status === 401) {
      sessionStorage.removeItem("funnel-key");
      showKeyPrompt();
    }
    return { status: response.status, ok: response.ok, body: parsed, etag: response.headers.get("ETag") };
  }

  const tracker = (path) => `/workspace/api/tracker${path}`;
  const intake = (path) => `/workspace/api/intake${path}`;
  const notifier = (path) => `/workspace/api/notifier${path}`;

  // A problem+json answer in words, for people.
  function problemText(answer) {
    const b = answer.body || {};
    const field = b.errors && b.errors[0] ? ` (${b.errors[0].field}: ${b.errors[0].message})` : "";
    if (answer.status === 0) return b.detail;
    if (answer.status === 403) return `Your key may not do this: ${b.detail || "a scope is missing"}.`;
    if (answer.status === 404 && !field) return "Not found.";
    if (answer.status === 503 || answer.status === 504 || answer.status === 502) {
      return `A service is not answering right now (${b.detail || answer.status}); try again shortly.`;
    }
    return `${b.detail || b.title || `error ${answer.status}`}${b.detail && field.includes(b.detail) ? "" : field}`;
  }

  function showKeyPrompt() {
    $("keyprompt").hidden = false;
    document.querySelector("main").hidden = true;
  }

  function initKeyPrompt(boot) {
    $("keyform").addEventListener("submit", (event) => {
      event.preventDefault();
      sessionStorage.setItem("funnel-key", $("key").value);
      $("keyprompt").hidden = true;
      document.querySelector("main").hidden = false;
      boot();
    });
  }

  let me = null;
  async function whoami() {
    if (me) return me;
    const answer = await call("GET", "/workspace/api/whoami");
    if (!answer.ok) throw new Error(problemText(answer));
    me = answer.body;
    $("whoami").textContent = `${me.name}`;
    $("whoami").title = me.scopes.join(", ");
    return me;
  }

  function escapeHtml(text) {
    const div = document.createElement("div");
    div.textContent = text === null || text === undefined ? "" : String(text);
    return div.innerHTML;
  }

  // "3 d 4 h", "5 h 12 min", "12 min", "now".
  function duration(ms) {
    const minutes = Math.max(0, Math.floor(ms / 60000));
    const d = Math.floor(minutes / 1440), h = Math.floor((minutes % 1440) / 60), m = minutes % 60;
    if (d) return h ? `${d} d ${h} h` : `${d} d`;
    if (h) return m ? `${h} h ${m} min` : `${h} h`;
    return m ? `${m} min` : "now";
  }

  function since(iso) {
    return iso ? duration(Date.now() - Date.parse(iso)) : "–";
  }

  function when(iso) {
    if (!iso) return "–";
    const d = new Date(iso);
    return d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
  }

  // Scores cool with time (fractional): shown whole.
  function score(value) {
    return value === null || value === undefined ? "–" : String(Math.round(Number(value)));
  }

  function temperature(t) {
    return t ? `<span class="temp temp-${escapeHtml(t)}">${escapeHtml(t)}</span>` : "–";
  }

  function showError(message) {
    $("error").hidden = !message;
    $("error").textContent = message || "";
  }

  window.Workspace = {
    $, apiKey, call, tracker, intake, notifier, problemText, showKeyPrompt, initKeyPrompt,
    whoami, escapeHtml, duration, since, when, score, temperature, showError,
  };
})();

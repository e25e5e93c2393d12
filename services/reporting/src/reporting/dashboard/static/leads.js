// A stage's leads: the tracker's list through reporting, filters kept in the URL, a cursor for
// more; each row named from lead-intake when the key may read personal data; a find box.
(() => {
  "use strict";
  const W = window.Workspace;
  const { $ } = W;
  const FILTERS = ["funnel_id", "stage", "temperature", "owner", "stalled", "sort"];
  // A page of the list: 50, or `limit` from the URL (1..200).
  const PAGE = Math.min(200, Math.max(1, Number(new URLSearchParams(location.search).get("limit")) || 50));
  let after = null;
  let loading = 0; // a newer load makes an older answer stale
  let me = null;

  function params() {
    return new URLSearchParams(location.search);
  }

  function fromUrl() {
    const url = params();
    for (const name of ["temperature", "owner", "stalled", "sort"]) {
      if (url.get(name) !== null) $(name).value = url.get(name);
    }
  }

  function toUrl() {
    const url = new URLSearchParams();
    for (const name of FILTERS) if ($(name).value) url.set(name, $(name).value);
    if (PAGE !== 50) url.set("limit", PAGE);
    history.replaceState(null, "", `${location.pathname}?${url}`);
  }

  async function loadFunnels() {
    const answer = await W.call("GET", "/v1/funnels");
    const funnels = answer.ok ? answer.body.funnels : [];
    const wanted = params().get("funnel_id");
    $("funnel_id").innerHTML = "";
    for (const f of funnels) $("funnel_id").add(new Option(f.funnel_id, f.funnel_id));
    if (wanted && !funnels.some((f) => f.funnel_id === wanted)) $("funnel_id").add(new Option(wanted, wanted));
    if (wanted) $("funnel_id").value = wanted;
    fillStages(funnels);
    $("funnel_id").addEventListener("change", () => { fillStages(funnels); });
  }

  function fillStages(funnels) {
    const funnel = funnels.find((f) => f.funnel_id === $("funnel_id").value);
    const stages = funnel ? funnel.stages.map((s) => (typeof s === "string" ? s : s.stage || s.name)) : [];
    const wanted = $("stage").value || params().get("stage");
    $("stage").innerHTML = "";
    $("stage").add(new Option("any stage", ""));
    for (const s of stages) $("stage").add(new Option(s, s));
    if (wanted && !stages.includes(wanted)) $("stage").add(new Option(wanted, wanted));
    $("stage").value = wanted || "";
  }

  function stalled(item) {
    if (typeof item.stalled === "boolean") return item.stalled;
    return Boolean(item.timer_due_at) && Date.parse(item.timer_due_at) <= Date.now();
  }

  function row(item) {
    const link = `/dashboard/lead?id=${encodeURIComponent(item.lead_id)}`;
    const stall = stalled(item)
      ? `<span class="badge stall">stalled</span>`
      : item.timer_due_at ? `<span class="muted">stalls in ${W.duration(Date.parse(item.timer_due_at) - Date.now())}</span>` : "–";
    return `<tr data-lead="${W.escapeHtml(item.lead_id)}" class="${stalled(item) ? "stalled" : ""}">
      <td><a class="lead-link" href="${link}">${W.escapeHtml(item.lead_id.slice(0, 8))}</a>${item.stage && !$("stage").value ? ` <span class="muted">${W.escapeHtml(item.stage)}</span>` : ""}<span class="sub muted"></span></td>
      <td class="score">${W.score(item.score)}</td>
      <td>${W.temperature(item.temperature)}</td>
      <td>${item.owner ? W.escapeHtml(item.owner) : '<span class="muted">nobody</span>'}</td>
      <td title="since ${W.escapeHtml(W.when(item.entered_at))}">${W.since(item.entered_at) === "now" ? "just entered" : W.since(item.entered_at)}</td>
      <td>${stall}</td></tr>`;
  }

  const mayReadPeople = () => Boolean(me && me.scopes.includes("pii:read"));

  // "Ada Lovelace", or the email when there is no name.
  function personName(p) {
    return [p.first_name, p.last_name].filter(Boolean).join(" ") || p.email || null;
  }

  // Name the rows of a page: who each lead is, from lead-intake in one call (the tracker
  // holds no personal data). Without pii:read, or if intake does not answer, the ids stay.
  async function nameRows(items) {
    if (!mayReadPeople() || !items.length) return;
    const query = new URLSearchParams(items.map((i) => ["id", i.lead_id]));
    query.set("limit", String(items.length));
    const answer = await W.call("GET", `${W.intake("/v1/leads")}?${query}`);
    if (!answer.ok) return;
    for (const p of answer.body.items) {
      const cell = $("leads").querySelector(`tr[data-lead="${CSS.escape(p.lead_id)}"] td`);
      const name = personName(p);
      if (!cell || !name) continue;
      cell.querySelector("a.lead-link").textContent = name;
      cell.querySelector(".sub").textContent = p.email && p.email !== name ? p.email : "";
    }
  }

  async function find(event) {
    event.preventDefault();
    const q = $("find-q").value.trim();
    const list = $("found");
    if (q.length < 2) {
      $("find-hint").textContent = "type 2 or more characters";
      list.hidden = true;
      return;
    }
    $("find-hint").textContent = "";
    const answer = await W.call("GET", W.intake("/v1/leads"), { query: { q, limit: 20 } });
    if (!answer.ok) { $("find-hint").textContent = W.problemText(answer); list.hidden = true; return; }
    const people = answer.body.items;
    list.innerHTML = people.map((p) => {
      const link = `/dashboard/lead?id=${encodeURIComponent(p.lead_id)}`;
      const name = personName(p) || p.lead_id.slice(0, 8);
      const email = p.email && p.email !== name ? ` <span class="muted">${W.escapeHtml(p.email)}</span>` : "";
      return `<li data-lead="${W.escapeHtml(p.lead_id)}"><span class="what"><a class="lead-link" href="${link}">${W.escapeHtml(name)}</a>${email}</span><time>captured ${W.escapeHtml(W.when(p.created_at))}</time></li>`;
    }).join("");
    list.hidden = people.length === 0;
    $("find-hint").textContent = people.length === 0 ? `nobody found for “${q}”`
      : `${people.length}${answer.body.next_after ? "+" : ""} found`
        + (mayReadPeople() ? "" : " · names need a key with pii:read");
    document.body.dataset.found = String(Number(document.body.dataset.found || 0) + 1);
  }

  async function load(more) {
    const mine = ++loading;
    if (!more) after = null;
    const query = { limit: PAGE, after };
    for (const name of FILTERS) query[name] = $(name).value;
    const answer = await W.call("GET", W.tracker("/v1/leads"), { query });
    if (mine !== loading) return;
    if (!answer.ok) { W.showError(`Could not load the leads: ${W.problemText(answer)}`); return; }
    W.showError(null);
    const body = answer.body;
    const tbody = $("leads").querySelector("tbody");
    const html = body.items.map(row).join("");
    if (more) tbody.insertAdjacentHTML("beforeend", html); else tbody.innerHTML = html;
    await nameRows(body.items);
    if (mine !== loading) return;
    after = body.next_after || null;
    $("more").hidden = !after;
    $("empty").hidden = tbody.children.length > 0;
    const stage = $("stage").value;
    $("title").firstChild.textContent = stage ? `Leads in ${stage} ` : "Leads ";
    $("hint").textContent = `${tbody.children.length} shown${after ? ", more below" : ""} · ${$("funnel_id").value}`;
    document.title = `Funnel · ${stage || "leads"}`;
    document.body.dataset.loaded = String(Number(document.body.dataset.loaded || 0) + 1);
  }

  async function boot() {
    if (!W.apiKey()) { W.showKeyPrompt(); return; }
    try {
      me = await W.whoami();
      $("owners").innerHTML = `<option value="${W.escapeHtml(me.name)}">`;
      await loadFunnels();
    } catch (err) {
      W.showError(`Could not open the list: ${err.message}`);
      return;
    }
    const back = new URLSearchParams({ funnel: $("funnel_id").value });
    $("home").href = `/dashboard?${back}`;
    await load(false);
  }

  fromUrl();
  $("filters").addEventListener("change", () => { toUrl(); load(false); });
  $("filters").addEventListener("submit", (event) => { event.preventDefault(); toUrl(); load(false); });
  $("more").addEventListener("click", () => load(true));
  $("find").addEventListener("submit", find);
  W.initKeyPrompt(boot);
  boot();
})();

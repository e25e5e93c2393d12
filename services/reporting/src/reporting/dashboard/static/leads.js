// A stage's leads: the tracker's list through reporting, filters kept in the URL, a cursor for more.
(() => {
  "use strict";
  const W = window.Workspace;
  const { $ } = W;
  const FILTERS = ["funnel_id", "stage", "temperature", "owner", "stalled", "sort"];
  // A page of the list: 50, or `limit` from the URL (1..200).
  const PAGE = Math.min(200, Math.max(1, Number(new URLSearchParams(location.search).get("limit")) || 50));
  let after = null;
  let loading = 0; // a newer load makes an older answer stale

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
      <td><a class="lead-link" href="${link}">${W.escapeHtml(item.lead_id.slice(0, 8))}</a>${item.stage && !$("stage").value ? ` <span class="muted">${W.escapeHtml(item.stage)}</span>` : ""}</td>
      <td class="score">${W.score(item.score)}</td>
      <td>${W.temperature(item.temperature)}</td>
      <td>${item.owner ? W.escapeHtml(item.owner) : '<span class="muted">nobody</span>'}</td>
      <td title="since ${W.escapeHtml(W.when(item.entered_at))}">${W.since(item.entered_at) === "now" ? "just entered" : W.since(item.entered_at)}</td>
      <td>${stall}</td></tr>`;
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
      const me = await W.whoami();
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
  W.initKeyPrompt(boot);
  boot();
})();

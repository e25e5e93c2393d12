// One lead: who (with pii:read), where from, stage and journey, timeline, open tasks; log a
// call, meeting or note, move the lead, take ownership, finish a task. Writes go through
// reporting's /workspace/api/ to the service that owns them, with the caller's key.
(() => {
  "use strict";
  const W = window.Workspace;
  const { $ } = W;
  const REFRESH_MS = 4000;
  const leadId = new URLSearchParams(location.search).get("id") || "";
  let journey = null; // the tracker's journey, and its ETag (the version a write must match)
  let etag = null;
  let timelineBefore = null;
  let timer = null;

  function result(id, ok, text) {
    $(id).hidden = false;
    $(id).className = `result ${ok ? "ok" : "bad"}`;
    $(id).textContent = text;
  }

  function stageOf(j) {
    return j.stage || j.current_stage;
  }

  // --- who and where from (lead-intake) --------------------------------------------------
  function touchpoint(t) {
    if (!t || typeof t !== "object") return "–";
    const utm = t.utm || {};
    const parts = [
      [utm.source, utm.medium].filter(Boolean).join(" / "),
      utm.campaign ? `campaign ${utm.campaign}` : "",
      t.form_id || t.form ? `form ${t.form_id || t.form}` : "",
      t.landing_page ? `on ${t.landing_page}` : "",
      t.referrer ? `from ${t.referrer}` : "",
      t.at || t.occurred_at || t.captured_at ? W.when(t.at || t.occurred_at || t.captured_at) : "",
    ].filter(Boolean);
    return parts.length ? parts.map(W.escapeHtml).join(" · ") : "direct";
  }

  async function loadPerson(me) {
    const answer = await W.call("GET", W.intake(`/v1/leads/${encodeURIComponent(leadId)}`));
    if (!answer.ok) {
      $("contact").textContent = `Person not available: ${W.problemText(answer)}`;
      return;
    }
    const p = answer.body.person || answer.body.lead || answer.body;
    const name = [p.first_name, p.last_name].filter(Boolean).join(" ");
    const mayRead = me.scopes.includes("pii:read");
    $("who").textContent = name || p.email || `Lead ${leadId.slice(0, 8)}`;
    $("test-lead").hidden = p.test !== true;
    const contact = [p.email, p.phone, p.company].filter(Boolean).map(W.escapeHtml);
    $("contact").innerHTML = contact.length ? contact.join(" · ")
      : mayRead ? "no contact details" : "contact details need a key with pii:read";
    const first = p.first_touch || p.first_touchpoint || (p.touchpoints && p.touchpoints.first);
    const last = p.last_touch || p.last_touchpoint || (p.touchpoints && p.touchpoints.last);
    const facts = [
      ["First touch", touchpoint(first)],
      ["Last touch", touchpoint(last)],
      ["Source", W.escapeHtml(p.source || "–")],
      ["Captured", W.escapeHtml(W.when(p.created_at || p.captured_at))],
    ];
    const subs = p.submissions;
    if (subs && subs.items) {
      const latest = subs.items[0];
      facts.push(["Submissions", W.escapeHtml(`${subs.count}${latest ? ` · latest on form ${latest.form_id}, ${W.when(latest.submitted_at)}` : ""}`)]);
    }
    const answers = Object.entries(p.qualification || {});
    if (answers.length) facts.push(["Answers", answers.map(([q, v]) => W.escapeHtml(`${q}: ${v}`)).join(" · ")]);
    const consent = Object.entries(p.consent || {});
    if (consent.length) facts.push(["Consent", consent.map(([c, v]) => W.escapeHtml(`${c} ${v.granted ? "yes" : "no"}`)).join(" · ")]);
    $("origin").innerHTML = facts.map(([k, v]) => `<dt>${k}</dt><dd>${v}</dd>`).join("");
  }

  // --- stage, score, owner, journey (stage-tracker) --------------------------------------
  async function loadJourney() {
    const answer = await W.call("GET", W.tracker(`/v1/leads/${encodeURIComponent(leadId)}/journey`));
    if (!answer.ok) { W.showError(`Could not load the lead: ${W.problemText(answer)}`); return false; }
    journey = answer.body;
    etag = answer.etag || (journey.version !== undefined ? `"${journey.version}"` : null);
    $("stage").textContent = stageOf(journey) || "–";
    const stay = W.since(journey.entered_at);
    $("stage-since").textContent = !journey.entered_at ? "" : stay === "now" ? "entered just now" : `for ${stay}`;
    $("score").textContent = W.score(journey.score);
    $("temperature").innerHTML = W.temperature(journey.temperature);
    $("owner").textContent = journey.owner || "nobody";
    const moves = journey.transitions || journey.moves || [];
    $("journey").innerHTML = moves.slice().reverse().map((m) => {
      const cause = m.actor ? `by ${m.actor}` : m.cause_event_type ? `on ${m.cause_event_type.replace(/^funnel\./, "")}` : "";
      return `<li><div class="what"><b>${W.escapeHtml(m.from_stage || "start")} → ${W.escapeHtml(m.to_stage)}</b>
        <span class="muted">${W.escapeHtml(cause)}</span></div>
        <div class="muted">${W.escapeHtml(m.reason || "")}</div>
        <time>${W.escapeHtml(W.when(m.occurred_at))}</time></li>`;
    }).join("");
    // The move's default: the stage after the current one, once the stages are known.
    const options = [...$("move-to").options].map((o) => o.value);
    const next = options[options.indexOf(stageOf(journey)) + 1];
    if (next && $("move-to").value === stageOf(journey)) $("move-to").value = next;
    const params = new URLSearchParams({ funnel_id: journey.funnel_id, stage: stageOf(journey) || "" });
    $("back").href = `/dashboard/leads?${params}`;
    $("home").href = `/dashboard?${new URLSearchParams({ funnel: journey.funnel_id })}`;
    return true;
  }

  async function loadStages() {
    const answer = await W.call("GET", W.tracker(`/v1/funnels/${encodeURIComponent(journey.funnel_id)}`));
    const stages = answer.ok ? answer.body.stages || [] : [];
    const exits = answer.ok ? answer.body.exits || [] : [];
    $("move-to").innerHTML = "";
    for (const s of [...stages, ...exits]) $("move-to").add(new Option(s, s));
    const next = stages[stages.indexOf(stageOf(journey)) + 1];
    if (next) $("move-to").value = next;
  }

  // --- timeline (reporting) -------------------------------------------------------------
  const KIND_WORDS = {
    lead_captured: "captured", lead_updated: "details updated", activity: "activity",
    stage_changed: "moved", touch_sent: "touch sent", touch_opened: "touch opened",
    touch_clicked: "touch clicked", task: "task", call_logged: "call", meeting_held: "meeting",
    event_attended: "event attended", note_added: "note", owner_changed: "owner changed",
  };

  function describe(item) {
    switch (item.kind) {
      case "stage_changed":
        return `${item.from_stage || "start"} → ${item.to_stage}${item.actor ? ` by ${item.actor}` : ""}${item.reason ? `: ${item.reason}` : ""}`;
      case "call_logged": case "meeting_held": case "event_attended": case "note_added":
        return [item.outcome ? item.outcome.replace(/_/g, " ") : "", item.text, item.actor ? `(${item.actor})` : ""].filter(Boolean).join(" · ");
      case "owner_changed":
        return `${item.previous_owner || "nobody"} → ${item.owner || "nobody"}${item.actor ? ` by ${item.actor}` : ""}`;
      case "task":
        return `${item.title || "task"}: ${item.status}${item.actor ? ` by ${item.actor}` : ""}`;
      case "activity":
        return [item.activity_type, item.page_path, item.amount ? `${item.amount} ${item.currency || ""}` : ""].filter(Boolean).join(" · ");
      case "touch_sent": case "touch_opened": case "touch_clicked":
        return [item.playbook, item.channel, item.url].filter(Boolean).join(" · ");
      case "lead_captured": case "lead_updated": {
        const utm = item.utm || {};
        return [item.source, item.form ? `form ${item.form}` : "", [utm.source, utm.medium, utm.campaign].filter(Boolean).join(" / ")].filter(Boolean).join(" · ");
      }
      default:
        return "";
    }
  }

  function timelineItem(item) {
    return `<li data-kind="${W.escapeHtml(item.kind)}"><div class="what"><b>${W.escapeHtml(KIND_WORDS[item.kind] || item.kind)}</b>
      <span>${W.escapeHtml(describe(item))}</span></div><time>${W.escapeHtml(W.when(item.at))}</time></li>`;
  }

  // The words of a call, meeting or note travel sealed ("*" in the timeline): lead-intake,
  // which holds the person's key, gives them (GET /v1/leads/{id}/notes), read again only
  // when the timeline shows one not read yet.
  const SEALED = "*";
  const OFFLINE = new Set(["call_logged", "meeting_held", "event_attended", "note_added"]);
  let noteWords = new Map();

  async function withNoteWords(items) {
    const sealed = items.filter((i) => OFFLINE.has(i.kind) && i.text === SEALED);
    if (sealed.some((i) => !noteWords.has(i.activity_id))) {
      const answer = await W.call("GET", W.intake(`/v1/leads/${encodeURIComponent(leadId)}/notes`));
      if (answer.ok) noteWords = new Map(answer.body.items.map((n) => [n.activity_id, n.text]));
    }
    return items.map((i) => (OFFLINE.has(i.kind) && i.text === SEALED ? { ...i, text: noteWords.get(i.activity_id) ?? "" } : i));
  }

  async function loadTimeline(older) {
    const query = { limit: 30, before: older ? timelineBefore : null };
    const answer = await W.call("GET", `/v1/leads/${encodeURIComponent(leadId)}/timeline`, { query });
    if (!answer.ok) {
      if (!older) $("timeline").innerHTML = `<li class="muted">${W.escapeHtml(W.problemText(answer))}</li>`;
      return;
    }
    const html = (await withNoteWords(answer.body.items)).map(timelineItem).join("");
    if (older) $("timeline").insertAdjacentHTML("beforeend", html);
    else $("timeline").innerHTML = html || '<li class="muted">nothing yet</li>';
    if (!older || answer.body.next_before) timelineBefore = answer.body.next_before;
    $("older").hidden = !timelineBefore;
  }

  // --- tasks (notifier) -----------------------------------------------------------------
  async function loadTasks() {
    const answer = await W.call("GET", W.notifier("/v1/tasks"), { query: { lead_id: leadId, status: "open" } });
    if (!answer.ok) {
      $("tasks").innerHTML = `<li class="muted">${W.escapeHtml(W.problemText(answer))}</li>`;
      return;
    }
    const tasks = answer.body.items || answer.body.tasks || [];
    $("tasks-empty").hidden = tasks.length > 0;
    $("tasks").innerHTML = tasks.map((t) => {
      const id = t.task_id || t.id;
      return `<li data-task="${W.escapeHtml(id)}"><div class="what"><b>${W.escapeHtml(t.title || "task")}</b>
        <span class="muted">${t.assignee ? `for ${W.escapeHtml(t.assignee)}` : "unassigned"}${t.due_at ? ` · due ${W.escapeHtml(W.when(t.due_at))}` : ""}</span></div>
        <button type="button" class="button secondary done" data-task="${W.escapeHtml(id)}" data-version="${W.escapeHtml(t.version)}">Done</button></li>`;
    }).join("");
  }

  async function finishTask(button) {
    button.disabled = true;
    const path = W.notifier(`/v1/tasks/${encodeURIComponent(button.dataset.task)}`);
    const version = button.dataset.version;
    const ifMatch = version && version !== "undefined" ? `"${version}"` : null;
    const answer = await W.call("PATCH", path, { body: { status: "done" }, ifMatch });
    await Promise.all([loadTasks(), loadTimeline(false)]);
    if (answer.ok) result("task-result", true, "Task done.");
    else if (answer.status === 412) result("task-result", false, "Someone changed this task meanwhile: here it is as it is now.");
    else result("task-result", false, `The task was not changed: ${W.problemText(answer)}`);
  }

  // --- actions --------------------------------------------------------------------------
  async function logActivity(event) {
    event.preventDefault();
    const activity = {
      type: $("log-type").value,
      occurred_at: new Date().toISOString(),
      lead_id: leadId,
      properties: { text: $("log-text").value.trim() },
    };
    if ($("log-outcome").value) activity.properties.outcome = $("log-outcome").value;
    if (window.crypto && crypto.randomUUID) activity.id = crypto.randomUUID(); // a retry counts once
    const answer = await W.call("POST", W.intake("/v1/activities"), { body: { activities: [activity] } });
    if (answer.ok) {
      result("log-result", true, `Logged: ${$("log-type").selectedOptions[0].textContent.toLowerCase()}. It shows in the timeline in a moment.`);
      $("log-text").value = "";
      setTimeout(() => loadTimeline(false), 800);
    } else {
      result("log-result", false, `Not logged: ${W.problemText(answer)}`);
    }
  }

  function refusedMove(answer) {
    const b = answer.body || {};
    if (answer.status === 409) return `This move is not allowed: ${(b.detail || "the funnel refuses it").replace(/\.$/, "")}.`;
    if (answer.status === 412) {
      const now = b.current_stage ? ` it is now in ${b.current_stage}` : "";
      return `Someone else changed this lead meanwhile:${now}. Nothing was moved; the page shows it as it is now, check and move again if still needed.`;
    }
    return `Not moved: ${W.problemText(answer)}`;
  }

  async function moveLead(event) {
    event.preventDefault();
    const body = { to_stage: $("move-to").value, reason: $("move-reason").value.trim() };
    const path = W.tracker(`/v1/leads/${encodeURIComponent(leadId)}/transitions`);
    const shown = stageOf(journey);
    let answer = await W.call("POST", path, { body, ifMatch: etag });
    // The version also moves with the score and the owner; what the user decided on is the
    // stage they saw. Still that stage: move from the current version. Another: say so.
    if (answer.status === 412 && answer.body && answer.body.current_stage === shown && answer.body.current_version !== undefined) {
      answer = await W.call("POST", path, { body, ifMatch: `"${answer.body.current_version}"` });
    }
    // The lead as it is now first, then the outcome in words.
    await refresh();
    if (answer.ok) {
      result("move-result", true, `Moved to ${body.to_stage}.`);
      $("move-reason").value = "";
    } else {
      result("move-result", false, refusedMove(answer));
    }
  }

  async function takeOwnership() {
    const me = await W.whoami();
    const path = W.tracker(`/v1/leads/${encodeURIComponent(leadId)}/owner`);
    const shown = journey.owner || null;
    let answer = await W.call("PUT", path, { body: { owner: me.name }, ifMatch: etag });
    let taken = null;
    // The version also moves with the score and the stage; what matters here is the owner the
    // user saw. Still that owner: take it from the current version. Another: say who.
    if (answer.status === 412 && (await loadJourney())) {
      if ((journey.owner || null) === shown) answer = await W.call("PUT", path, { body: { owner: me.name }, ifMatch: etag });
      else taken = journey.owner;
    }
    if (taken) {
      W.showError(`${taken} took this lead meanwhile: nothing was changed.`);
    } else if (answer.ok) {
      W.showError(null);
    } else if (answer.status === 412) {
      W.showError("Someone else changed this lead meanwhile: the page shows it as it is now; take it again if still needed.");
    } else {
      W.showError(`Ownership not taken: ${W.problemText(answer)}`);
    }
    await refresh();
  }

  // The journey (and so the version a write must match) is read again after each of the
  // user's own writes, not behind their back: a move by someone else meanwhile is a 412
  // shown in words, not a silent change of what they were looking at.
  async function refresh() {
    const ok = await loadJourney();
    if (ok) {
      const me = (await W.whoami()).name;
      $("take").hidden = journey.owner === me;
      $("take").textContent = journey.owner ? `Take over from ${journey.owner}` : "Take ownership";
    }
    await tick();
  }

  async function tick() {
    clearTimeout(timer);
    await Promise.all([loadTimeline(false), loadTasks()]);
    document.body.dataset.loaded = String(Number(document.body.dataset.loaded || 0) + 1);
    timer = setTimeout(tick, REFRESH_MS);
  }

  async function boot() {
    if (!W.apiKey()) { W.showKeyPrompt(); return; }
    if (!/^[0-9a-fA-F-]{36}$/.test(leadId)) { W.showError("No lead given: open this page from a lead list."); return; }
    let me;
    try {
      me = await W.whoami();
    } catch (err) {
      W.showError(`Could not open the lead: ${err.message}`);
      return;
    }
    if (!(await loadJourney())) return;
    await Promise.all([loadPerson(me), loadStages()]);
    await refresh();
  }

  $("log").addEventListener("submit", logActivity);
  $("move").addEventListener("submit", moveLead);
  $("take").addEventListener("click", takeOwnership);
  $("older").addEventListener("click", () => loadTimeline(true));
  $("tasks").addEventListener("click", (event) => {
    const button = event.target.closest("button.done");
    if (button) finishTask(button);
  });
  W.initKeyPrompt(boot);
  boot();
})();

// The reporting dashboard: reads the same JSON API as everyone else, with the caller's key.
(() => {
  "use strict";
  const REFRESH_MS = 5000;
  const palette = ["#4f46e5", "#06b6d4", "#8b5cf6", "#10b981", "#f59e0b", "#ef4444", "#64748b"];
  const $ = (id) => document.getElementById(id);
  const fmt = new Intl.NumberFormat();
  const pct = (x) => (x === null || x === undefined ? "–" : `${(x * 100).toFixed(1)}%`);
  const charts = {};
  let timer = null;
  // The browser's zone, whatever it is: every IANA zone's days are exact (India's +05:30 too).
  let tz = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  let tzNote = "";

  // The key: from the URL fragment once (#key=...), then kept for this tab only.
  function apiKey() {
    const match = location.hash.match(/key=([^&]+)/);
    if (match) {
      sessionStorage.setItem("funnel-key", decodeURIComponent(match[1]));
      history.replaceState(null, "", location.pathname + location.search);
    }
    return sessionStorage.getItem("funnel-key");
  }

  async function api(path, params) {
    const query = new URLSearchParams(Object.entries(params || {}).filter(([, v]) => v !== null && v !== ""));
    const response = await fetch(`${path}?${query}`, { headers: { Authorization: `Bearer ${apiKey()}` } });
    if (response.status === 401 || response.status === 403) {
      sessionStorage.removeItem("funnel-key");
      showKeyPrompt();
      throw new Error("the key was refused");
    }
    const body = await response.json();
    if (!response.ok) {
      const err = new Error(body.detail || body.title || response.statusText);
      err.field = body.errors && body.errors[0] && body.errors[0].field;
      throw err;
    }
    return body;
  }

  function showKeyPrompt() {
    $("keyprompt").hidden = false;
    document.querySelector("main").hidden = true;
  }

  function isoDay(d) {
    return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 10);
  }

  function initFilters() {
    const url = new URLSearchParams(location.search);
    const today = new Date();
    $("end").value = url.get("end") || isoDay(today);
    $("start").value = url.get("start") || isoDay(new Date(today.getTime() - 29 * 86400000));
    for (const name of ["window", "breakdown", "attribution", "compare"]) {
      if (url.get(name)) $(name).value = url.get(name);
    }
    if (url.get("tz")) tz = url.get("tz");
    $("filters").addEventListener("change", () => {
      const params = new URLSearchParams(location.search);
      for (const name of ["funnel", "start", "end", "window", "breakdown", "attribution", "compare"]) params.set(name, $(name).value);
      history.replaceState(null, "", `${location.pathname}?${params}`);
      refresh();
    });
  }

  async function loadFunnels() {
    const body = await api("/v1/funnels");
    const wanted = new URLSearchParams(location.search).get("funnel");
    $("funnel").innerHTML = "";
    for (const f of body.funnels) {
      const option = document.createElement("option");
      option.value = option.textContent = f.funnel_id;
      $("funnel").appendChild(option);
    }
    if (wanted && body.funnels.some((f) => f.funnel_id === wanted)) $("funnel").value = wanted;
  }

  function filters() {
    return { start: $("start").value, end: $("end").value, tz, window_days: $("window").value };
  }

  // Daily points are noise over a long period: weekly beyond six weeks.
  function interval(f) {
    return (new Date(f.end) - new Date(f.start)) / 86400000 > 42 ? "week" : "day";
  }

  function chart(id) {
    if (!charts[id]) {
      charts[id] = echarts.init($(id), null, { renderer: "canvas" });
      // A stage of the funnel (its bar or its name) opens that stage's lead list.
      if (id === "funnel-chart") {
        charts[id].on("click", (p) => { location.href = stageLink(p.name || p.value); });
      }
    }
    return charts[id];
  }

  function renderFunnel(body) {
    const group = body.groups[0];
    const steps = group ? group.steps : body.steps.map((stage) => ({ stage, leads: 0 }));
    const first = steps[0].leads;
    const stages = steps.map((s) => s.stage);
    const wide = (n) => n / Math.max(first, 1) >= 0.07;
    $("funnel-hint").textContent = `of ${fmt.format(first)} who entered ${stages[0]}, reached within ${body.window_days} days`;
    chart("funnel-chart").setOption({
      animationDuration: 400,
      grid: { left: 110, right: 170, top: 10, bottom: 10 },
      tooltip: { trigger: "axis", axisPointer: { type: "shadow" } },
      xAxis: { type: "value", show: false, max: Math.max(first, 1) },
      yAxis: { type: "category", inverse: true, data: stages, axisTick: { show: false }, triggerEvent: true,
               axisLine: { show: false }, axisLabel: { fontSize: 13, color: "#1d2433", fontWeight: 600 } },
      series: [
        { name: "reached", type: "bar", stack: "f", barWidth: "62%", data: steps.map((s) => s.leads),
          itemStyle: { borderRadius: [4, 0, 0, 4], color: new echarts.graphic.LinearGradient(0, 0, 1, 0,
            [{ offset: 0, color: "#4f46e5" }, { offset: 1, color: "#06b6d4" }]) },
          // The count inside the bar when it fits; a narrow bar has it on the right instead.
          label: { show: true, position: "insideLeft", color: "#fff", fontWeight: 700,
                   formatter: (p) => (wide(p.value) ? fmt.format(p.value) : "") } },
        { name: "dropped before", type: "bar", stack: "f", data: steps.map((s, i) => (i ? steps[i - 1].leads - s.leads > 0 ? steps[i - 1].leads - s.leads : 0 : 0)),
          itemStyle: { color: "rgba(249, 115, 22, 0.18)", borderRadius: [0, 4, 4, 0] },
          label: { show: true, position: "right", color: "#6b7385",
                   rich: { n: { color: "#1d2433", fontWeight: 700, fontSize: 13 } },
                   formatter: (p) => { const s = steps[p.dataIndex];
                     const count = wide(s.leads) ? "" : `{n|${fmt.format(s.leads)}}  `;
                     return p.dataIndex === 0 ? `${count}100%` :
                     `${count}${pct(s.conversion_from_previous)} of previous · −${fmt.format(Math.max(s.drop_off, 0))}`; } } },
      ],
    }, true);
    $("kpi-first-stage").textContent = stages[0];
    $("kpi-last-stage").textContent = stages[stages.length - 1];
    document.querySelector('[data-kpi="entered"]').textContent = fmt.format(first);
    document.querySelector('[data-kpi="converted"]').textContent = fmt.format(steps[steps.length - 1].leads);
    document.querySelector('[data-kpi="conversion"]').textContent = pct(group ? group.overall_conversion : null);
    // The step that loses the largest share, named with the step before it.
    const leaks = steps.map((s, i) => ({ ...s, from: stages[i - 1] })).slice(1).filter((s) => s.drop_off_rate !== null);
    const leak = leaks.sort((a, b) => b.drop_off_rate - a.drop_off_rate)[0];
    document.querySelector('[data-kpi="leak"]').textContent = leak ? `${leak.from} → ${leak.stage}  −${pct(leak.drop_off_rate)}` : "–";
  }

  // Per entry day: leads entering the first step (bars) and the share reaching each later
  // step within the window (lines).
  function renderOverTime(body) {
    const days = body.groups.map((g) => g.cohort);
    const later = body.steps.slice(1);
    $("time-hint").textContent = `by ${body.cohort} of entering ${body.steps[0]}, reached within ${body.window_days} days`;
    chart("time-chart").setOption({
      color: palette.slice(1),
      tooltip: { trigger: "axis", valueFormatter: (v) => (v === null || v === undefined ? "–" : v <= 1 && v % 1 ? pct(v) : fmt.format(v)) },
      legend: { top: 0, left: 0, itemWidth: 14, itemHeight: 8, textStyle: { fontSize: 11 } },
      grid: { left: 40, right: 44, top: 40, bottom: 28 },
      xAxis: { type: "category", data: days, axisTick: { show: false } },
      yAxis: [
        { type: "value", splitLine: { lineStyle: { color: "#eef0f5" } } },
        // Up to the highest rate drawn (not always 100%), so the lines use the chart's height.
        { type: "value", min: 0, max: (v) => Math.min(1, Math.max(0.1, Math.ceil(v.max * 10) / 10)),
          axisLabel: { formatter: (v) => `${Math.round(v * 100)}%` }, splitLine: { show: false } },
      ],
      series: [
        { name: `entered ${body.steps[0]}`, type: "bar", data: body.groups.map((g) => g.steps[0].leads), itemStyle: { color: "#c7d2fe", borderRadius: [3, 3, 0, 0] } },
        ...later.map((stage, i) => ({
          name: `→ ${stage}`, type: "line", yAxisIndex: 1, symbolSize: 6, connectNulls: true,
          data: body.groups.map((g) => g.steps[i + 1].conversion_from_first), lineStyle: { width: 2.5 },
        })),
      ],
    }, true);
  }

  // Net revenue per period (bars, one series per currency) with new and repeat customers.
  function renderRevenue(body) {
    const periods = [...new Set(body.series.map((p) => p.period))];
    const currencies = [...new Set(body.series.map((p) => p.currency))];
    const at = (period, currency) => body.series.find((p) => p.period === period && p.currency === currency);
    $("revenue-hint").textContent = `net of refunds, by ${body.interval}, ${body.time_zone}`;
    const perPeriod = (field) => periods.map((period) => body.series.filter((p) => p.period === period).reduce((n, p) => n + p[field], 0));
    chart("revenue-chart").setOption({
      tooltip: { trigger: "axis" },
      legend: { top: 0, left: 0, itemWidth: 14, itemHeight: 8, textStyle: { fontSize: 11 } },
      grid: { left: 56, right: 40, top: 40, bottom: 28 },
      xAxis: { type: "category", data: periods, axisTick: { show: false } },
      yAxis: [{ type: "value", splitLine: { lineStyle: { color: "#eef0f5" } } }, { type: "value", splitLine: { show: false } }],
      series: [
        ...currencies.map((c, i) => ({ name: `revenue ${c}`, type: "bar", stack: c, data: periods.map((p) => { const row = at(p, c); return row ? Number(row.revenue) : 0; }), itemStyle: { color: palette[i % palette.length], borderRadius: [3, 3, 0, 0] } })),
        { name: "new customers", type: "line", yAxisIndex: 1, data: perPeriod("new_customers"), symbolSize: 5 },
        { name: "repeat customers", type: "line", yAxisIndex: 1, data: perPeriod("repeat_customers"), symbolSize: 5 },
      ],
    }, true);
  }

  // MRR at the end of each period (bars) and churn (line), per currency.
  function renderSubscriptions(body) {
    const periods = [...new Set(body.series.map((p) => p.period))];
    const currencies = [...new Set(body.series.map((p) => p.currency))];
    const at = (period, currency) => body.series.find((p) => p.period === period && p.currency === currency);
    $("mrr-hint").textContent = body.series.length ? `MRR at each ${body.interval}'s end, and churn` : "no subscriptions in this funnel";
    chart("mrr-chart").setOption({
      tooltip: { trigger: "axis" },
      legend: { top: 0, left: 0, itemWidth: 14, itemHeight: 8, textStyle: { fontSize: 11 } },
      grid: { left: 56, right: 44, top: 40, bottom: 28 },
      xAxis: { type: "category", data: periods, axisTick: { show: false } },
      yAxis: [{ type: "value", splitLine: { lineStyle: { color: "#eef0f5" } } },
              { type: "value", min: 0, axisLabel: { formatter: (v) => `${Math.round(v * 100)}%` }, splitLine: { show: false } }],
      series: currencies.flatMap((c, i) => [
        { name: `MRR ${c}`, type: "bar", data: periods.map((p) => { const row = at(p, c); return row ? Number(row.mrr) : 0; }), itemStyle: { color: palette[(i + 3) % palette.length], borderRadius: [3, 3, 0, 0] } },
        { name: `churn ${c}`, type: "line", yAxisIndex: 1, connectNulls: true, data: periods.map((p) => { const row = at(p, c); return row ? row.churn_rate : null; }), symbolSize: 5 },
      ]),
    }, true);
  }

  const days = (hours) => (hours === null ? null : Math.round((hours / 24) * 10) / 10);

  function renderStays(body) {
    chart("stay-chart").setOption({
      tooltip: { trigger: "axis" },
      legend: { top: 0, right: 0 },
      grid: { left: 48, right: 16, top: 34, bottom: 28 },
      xAxis: { type: "category", data: body.stages.map((s) => s.stage), axisTick: { show: false } },
      yAxis: { type: "value", name: "days", nameTextStyle: { color: "#6b7385", align: "right" },
               splitLine: { lineStyle: { color: "#eef0f5" } } },
      series: [
        { name: "median", type: "bar", data: body.stages.map((s) => days(s.median_hours)), itemStyle: { color: "#4f46e5", borderRadius: [3, 3, 0, 0] } },
        { name: "p90", type: "bar", data: body.stages.map((s) => days(s.p90_hours)), itemStyle: { color: "#a5b4fc", borderRadius: [3, 3, 0, 0] } },
      ],
    }, true);
  }

  function renderBreakdown(body) {
    const stages = body.steps;
    const label = $("breakdown").selectedOptions[0].textContent.toLowerCase();
    $("breakdown-hint").textContent = `by ${label}, ${body.attribution}-touch`;
    const top = Math.max(1, ...body.groups.map((g) => g.steps[0].leads));
    const head = `<tr><th>${label}</th>${stages.map((s) => `<th>${s}</th>`).join("")}<th>overall</th></tr>`;
    const rows = body.groups.map((g) => {
      const cells = g.steps.map((s, i) => `<td data-stage="${s.stage}">${fmt.format(s.leads)}${i ? `<span class="pct">${pct(s.conversion_from_previous)}</span>` : `<span class="bar" style="width:${Math.round(60 * s.leads / top)}px"></span>`}</td>`).join("");
      return `<tr data-segment="${escapeHtml(g.segment)}"><td>${escapeHtml(g.segment)}</td>${cells}<td class="overall">${pct(g.overall_conversion)}</td></tr>`;
    });
    $("breakdown-table").innerHTML = `<thead>${head}</thead><tbody>${rows.join("")}</tbody>`;
  }

  // Leak alerts of the funnel (reporting's leak watch): open ones first, recent recoveries
  // struck through; the funnel chart marks each leaking step's stage with a warning sign.
  function renderLeaks(body) {
    const box = $("leak-alerts");
    const open = body.items.filter((l) => !l.resolved_at);
    const recent = body.items.filter((l) => l.resolved_at);
    box.hidden = body.items.length === 0;
    const item = (l) => `<span class="leak${l.resolved_at ? " resolved" : ""}" data-leak="${escapeHtml(l.leak_id)}" data-segment="${escapeHtml(l.segment)}">` +
      `${escapeHtml(l.from_stage)} → ${escapeHtml(l.to_stage)} · ${escapeHtml(l.segment)} · ${pct(l.baseline_rate)} → ${pct(l.current_rate)}` +
      ` · since ${escapeHtml(l.opened_at.slice(0, 10))}</span>`;
    box.innerHTML = `<span class="label">${open.length ? `⚠ ${open.length} leaking step${open.length > 1 ? "s" : ""}` : "Recovered"}</span>` +
      [...open, ...recent].map(item).join("");
    const leakingStages = new Set(open.map((l) => l.to_stage));
    const funnel = charts["funnel-chart"];
    if (funnel) {
      funnel.setOption({ yAxis: { axisLabel: { formatter: (s) => (leakingStages.has(s) ? `⚠ ${s}` : s) } } });
    }
  }

  // The period just before the chosen one, of the same length (whole days).
  function previousPeriod(f) {
    const day = 86400000;
    const start = new Date(`${f.start}T00:00:00Z`);
    const end = new Date(`${f.end}T00:00:00Z`);
    const days = Math.round((end - start) / day) + 1;
    const iso = (d) => d.toISOString().slice(0, 10);
    return { start: iso(new Date(start.getTime() - days * day)), end: iso(new Date(start.getTime() - day)) };
  }

  // KPI deltas against the compared period, and its funnel as markers on the bars.
  function renderComparison(current, previous, prev) {
    for (const name of ["entered", "converted", "conversion"]) {
      const el = document.querySelector(`[data-kpi-delta="${name}"]`);
      el.textContent = ""; el.className = "delta";
      if (!previous) continue;
      const now = current.groups[0], then = previous.groups[0];
      let text = "", diff = 0;
      if (name === "conversion") {
        const a = now ? now.overall_conversion : null, b = then ? then.overall_conversion : null;
        if (a === null || b === null) { text = "no earlier figure"; } else { diff = a - b; text = `${diff >= 0 ? "+" : "−"}${(Math.abs(diff) * 100).toFixed(1)} pts`; }
      } else {
        const pick = (g) => (g ? (name === "entered" ? g.steps[0].leads : g.steps[g.steps.length - 1].leads) : 0);
        diff = pick(now) - pick(then);
        text = `${diff >= 0 ? "+" : "−"}${fmt.format(Math.abs(diff))}`;
      }
      el.textContent = `${text} vs ${prev.start} – ${prev.end}`;
      el.dataset.diff = String(diff);
      el.classList.add(diff > 0 ? "up" : diff < 0 ? "down" : "same");
    }
    const chartFunnel = charts["funnel-chart"];
    if (!chartFunnel) return;
    const series = chartFunnel.getOption().series.filter((s) => s.name !== "previous period");
    if (previous) {
      const steps = previous.groups[0] ? previous.groups[0].steps : [];
      series.push({ name: "previous period", type: "scatter", symbol: "rect", symbolSize: [3, 26],
        itemStyle: { color: "#1d2433" }, z: 5, data: current.steps.map((stage) => { const s = steps.find((x) => x.stage === stage); return s ? s.leads : 0; }) });
    }
    chartFunnel.setOption({ series }, { replaceMerge: ["series"] });
  }

  // Cohort heat map: entry week (rows) x later step (columns), the share reaching it.
  function renderHeatmap(body) {
    const weeks = body.groups.map((g) => g.cohort);
    const later = body.steps.slice(1);
    const data = [];
    body.groups.forEach((g, y) => g.steps.slice(1).forEach((s, x) => data.push([x, y, s.conversion_from_first === null ? null : s.conversion_from_first])));
    chart("heatmap-chart").setOption({
      tooltip: { formatter: (p) => `${weeks[p.value[1]]} → ${later[p.value[0]]}: ${pct(p.value[2])}` },
      grid: { left: 90, right: 20, top: 10, bottom: 60 },
      xAxis: { type: "category", data: later, splitArea: { show: true } },
      yAxis: { type: "category", data: weeks, inverse: true, splitArea: { show: true } },
      visualMap: { min: 0, max: Math.max(0.05, ...data.map((d) => d[2] || 0)), calculable: false, orient: "horizontal", left: "center", bottom: 0,
                   inRange: { color: ["#eef2ff", "#4f46e5"] }, formatter: (v) => pct(v) },
      series: [{ name: "reached", type: "heatmap", data, label: { show: true, formatter: (p) => pct(p.value[2]) } }],
    }, true);
  }

  // Every view's request (to export its CSV) and its chart (to export its PNG).
  const views = {};

  function download(name, blob) {
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = name;
    document.body.appendChild(a);
    a.click();
    setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
  }

  // A table (the breakdown) drawn as an image: its text, row by row.
  function tablePng(table) {
    const rows = [...table.querySelectorAll("tr")].map((tr) => [...tr.children].map((td) => td.textContent.replace(/\s+/g, " ").trim()));
    const canvas = document.createElement("canvas");
    const colWidth = 150, rowHeight = 26;
    canvas.width = Math.max(1, (rows[0] || []).length) * colWidth;
    canvas.height = Math.max(1, rows.length) * rowHeight;
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.font = "13px sans-serif"; ctx.fillStyle = "#1d2433";
    rows.forEach((cells, y) => cells.forEach((text, x) => ctx.fillText(text, x * colWidth + 6, y * rowHeight + 18)));
    return canvas.toDataURL("image/png");
  }

  // A view is known once its first answer arrived: a click while it loads waits for it
  // (up to ten seconds) rather than doing nothing.
  async function loadedView(view) {
    for (let i = 0; i < 100 && !views[view]; i += 1) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    return views[view];
  }

  async function exportView(view, format) {
    const v = await loadedView(view);
    if (!v) return;
    const name = `${$("funnel").value}-${view}-${$("start").value}-${$("end").value}`;
    if (format === "csv") {
      const query = new URLSearchParams(Object.entries({ ...v.params, format: "csv" }).filter(([, x]) => x !== null && x !== ""));
      const response = await fetch(`${v.path}?${query}`, { headers: { Authorization: `Bearer ${apiKey()}` } });
      download(`${name}.csv`, await response.blob());
      return;
    }
    const url = v.chart ? charts[v.chart].getDataURL({ type: "png", pixelRatio: 2, backgroundColor: "#fff" }) : tablePng($("breakdown-table"));
    download(`${name}.png`, dataUrlBlob(url));
  }

  // A base64 data: URL as a Blob, decoded here (the page's policy lets it fetch its own
  // origin only).
  function dataUrlBlob(url) {
    const [head, data] = url.split(",", 2);
    const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
    return new Blob([bytes], { type: head.slice(5).split(";")[0] });
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest(".export button");
    if (button) exportView(button.parentElement.dataset.view, button.dataset.format);
  });

  // Where the leads are now, each stage a link to its lead list (as a click on its bar is).
  function stageLink(stage) {
    return `/dashboard/leads?${new URLSearchParams({ funnel_id: $("funnel").value, stage })}`;
  }

  function renderStagesNow(snapshot) {
    const links = snapshot.stages.map((s) => `<a href="${stageLink(s.stage)}" data-stage="${escapeHtml(s.stage)}">` +
      `${escapeHtml(s.stage)} <b data-count>${fmt.format(s.leads)}</b></a>`);
    $("stages-now").innerHTML = `<span class="label">Now in each stage · open its leads:</span>${links.join("")}`;
  }

  function escapeHtml(text) {
    const div = document.createElement("div");
    div.textContent = text === null ? "" : text;
    return div.innerHTML;
  }

  // The numbers of now, pushed by the server each time they change (the snapshot's live
  // stream, read with fetch so that the key goes in a header); the charts refresh every
  // REFRESH_MS. A dropped stream is opened again after STREAM_RETRY_MS.
  const STREAM_RETRY_MS = 2000;
  let stream = null;

  function showNow(snapshot) {
    document.querySelector('[data-kpi="now"]').textContent = fmt.format(snapshot.total);
    renderStagesNow(snapshot);
    document.body.dataset.pushed = String(Number(document.body.dataset.pushed || 0) + 1);
    document.body.dataset.pushedTotal = String(snapshot.total);
  }

  async function readStream(funnel, signal) {
    const response = await fetch(`/v1/funnels/${encodeURIComponent(funnel)}/snapshot/stream`, {
      headers: { Authorization: `Bearer ${apiKey()}`, Accept: "text/event-stream" },
      signal,
    });
    if (response.status === 401 || response.status === 403) return false; // refresh() asks
    if (!response.ok) throw new Error(response.statusText);
    document.body.dataset.stream = "open";
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return true;
      buffer += value.replace(/\r\n/g, "\n");
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim());
        if (data.length) showNow(JSON.parse(data.join("\n"))); // else a keep-alive comment
      }
    }
  }

  function stopWatching() {
    if (stream) stream.abort.abort();
    stream = null;
    document.body.dataset.stream = "closed"; // the next refresh reads the numbers itself
  }

  function watchNow(funnel) {
    if (stream && stream.funnel === funnel) return;
    stopWatching();
    const abort = new AbortController();
    stream = { funnel, abort };
    (async () => {
      while (!abort.signal.aborted) {
        let again = true;
        try {
          again = await readStream(funnel, abort.signal);
        } catch (err) {
          if (abort.signal.aborted) return;
          console.warn("the live numbers' stream broke; opening it again", err);
        }
        if (abort.signal.aborted) return;
        document.body.dataset.stream = "closed";
        if (!again) { stream = null; return; }
        await new Promise((resolve) => setTimeout(resolve, STREAM_RETRY_MS + Math.random() * 1000));
      }
    })();
  }

  // A hidden tab holds no stream (a browser allows only a few connections to one server
  // over HTTP/1.1); shown again, it reads everything at once and opens it again.
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) stopWatching();
    else if (stream === null && apiKey()) refresh();
  });

  async function refresh() {
    clearTimeout(timer);
    const funnel = $("funnel").value;
    if (!funnel) { $("updated").textContent = "no data yet"; timer = setTimeout(boot, REFRESH_MS); return; }
    if (!document.hidden) watchNow(funnel);
    const base = `/v1/funnels/${encodeURIComponent(funnel)}`;
    const f = filters();
    try {
      const period = { start: f.start, end: f.end, tz };
      const prev = $("compare").value === "previous" ? previousPeriod(f) : null;
      Object.assign(views, {
        funnel: { path: `${base}/conversion`, params: f, chart: "funnel-chart" },
        breakdown: { path: `${base}/conversion`, params: { ...f, breakdown: $("breakdown").value, attribution: $("attribution").value }, chart: null },
        time: { path: `${base}/conversion`, params: { ...f, cohort: interval(f) }, chart: "time-chart" },
        stays: { path: `${base}/time-in-stage`, params: period, chart: "stay-chart" },
        revenue: { path: `${base}/revenue`, params: { ...period, interval: interval(f) }, chart: "revenue-chart" },
        mrr: { path: `${base}/subscriptions`, params: { ...period, interval: interval(f) === "day" ? "week" : "month" }, chart: "mrr-chart" },
        heatmap: { path: `${base}/conversion`, params: { ...f, cohort: "week" }, chart: "heatmap-chart" },
      });
      // While the stream is open it has the numbers of now: no read of them here.
      const streaming = document.body.dataset.stream === "open";
      const [snapshot, conversion, breakdown, overTime, stays, revenue, subscriptions, leaks, weekly, previous] = await Promise.all([
        streaming ? Promise.resolve(null) : api(`${base}/snapshot`),
        api(views.funnel.path, views.funnel.params),
        api(views.breakdown.path, views.breakdown.params),
        api(views.time.path, views.time.params),
        api(views.stays.path, views.stays.params),
        api(views.revenue.path, views.revenue.params),
        api(views.mrr.path, views.mrr.params),
        api(`${base}/leaks`),
        api(views.heatmap.path, views.heatmap.params),
        prev ? api(`${base}/conversion`, { ...f, ...prev }) : Promise.resolve(null),
      ]);
      if (snapshot) {
        document.querySelector('[data-kpi="now"]').textContent = fmt.format(snapshot.total);
        renderStagesNow(snapshot);
      }
      renderFunnel(conversion);
      renderOverTime(overTime);
      renderStays(stays);
      renderBreakdown(breakdown);
      renderRevenue(revenue);
      renderSubscriptions(subscriptions);
      renderLeaks(leaks);
      renderHeatmap(weekly);
      renderComparison(conversion, previous, prev);
      $("error").hidden = true;
      $("live").classList.remove("stale");
      $("updated").textContent = `live · ${new Date().toLocaleTimeString()} · ${tz}${tzNote}`;
      document.body.dataset.tz = tz;
      document.body.dataset.loaded = String(Number(document.body.dataset.loaded || 0) + 1);
    } catch (err) {
      // Only a zone the server's time-zone database does not know falls back, and says so.
      if (err.field === "tz" && tz !== "UTC") { tzNote = ` (${tz} unknown to the server)`; tz = "UTC"; return refresh(); }
      $("live").classList.add("stale");
      $("error").hidden = false;
      $("error").textContent = `Could not load the numbers: ${err.message}`;
    }
    timer = setTimeout(refresh, REFRESH_MS);
  }

  async function boot() {
    if (!apiKey()) { showKeyPrompt(); return; }
    try {
      await loadFunnels();
    } catch (err) {
      $("error").hidden = false;
      $("error").textContent = `Could not load the funnels: ${err.message}`;
      return;
    }
    refresh();
  }

  $("keyform").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem("funnel-key", $("key").value);
    $("keyprompt").hidden = true;
    document.querySelector("main").hidden = false;
    boot();
  });
  window.addEventListener("resize", () => Object.values(charts).forEach((c) => c.resize()));
  initFilters();
  boot();
})();

/* Funnel form embed: add to a page with a plain <form data-funnel-form="FORM_ID">.
 * Fills hidden UTM, landing-page, referrer and visitor-id fields, reports the page view,
 * posts the form without leaving the page and shows the form's inline message.
 * Without JavaScript the same form still posts (the server answers 303 or a thank-you page).
 */
(function () {
  "use strict";
  var config = __FUNNEL_CONFIG__;
  var VISITOR_KEY = "funnel_visitor_id";
  var UTM_KEY = "funnel_utm";
  var FIRST_KEY = "funnel_first_touch";
  var DAY_MS = 86400000;
  var UTM = ["utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content"];

  function randomId() {
    if (window.crypto && window.crypto.randomUUID) return window.crypto.randomUUID();
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) {
      return ("0" + b.toString(16)).slice(-2);
    }).join("");
  }

  function stored(storage, key) {
    try { return window[storage].getItem(key); } catch (e) { return null; }
  }

  function store(storage, key, value) {
    try { window[storage].setItem(key, value); } catch (e) { /* private mode: no memory */ }
  }

  function visitorId() {
    var id = stored("localStorage", VISITOR_KEY);
    if (!id || !/^[A-Za-z0-9_-]{8,64}$/.test(id)) {
      id = randomId();
      store("localStorage", VISITOR_KEY, id);
    }
    return id;
  }

  /* The UTM tags of this visit: from the URL, else those the visit landed with. */
  function visitUtm() {
    var params = new URLSearchParams(window.location.search);
    var found = {};
    var any = false;
    UTM.forEach(function (name) {
      var value = params.get(name);
      if (value) { found[name] = value; any = true; }
    });
    if (any) {
      store("sessionStorage", UTM_KEY, JSON.stringify(found));
      return found;
    }
    try { return JSON.parse(stored("sessionStorage", UTM_KEY) || "{}"); } catch (e) { return {}; }
  }

  /* Consent to keep the first touch, when the form requires consent: the site's consent
   * manager sets window.funnelConsent = true, or the form's consent box is ticked. */
  function consented(form) {
    if (!config.consentRequired) return true;
    if (window.funnelConsent === true) return true;
    var box = form && form.elements.consent;
    return !!(box && box.checked);
  }

  function keptFirstTouch() {
    var kept = null;
    try { kept = JSON.parse(stored("localStorage", FIRST_KEY) || "null"); } catch (e) { kept = null; }
    if (!kept || !kept.utm || !kept.at) return null;
    if (Date.now() - kept.at > config.attributionDays * DAY_MS) {
      try { window.localStorage.removeItem(FIRST_KEY); } catch (e) { /* nothing kept */ }
      return null;
    }
    return kept.utm;
  }

  /* The first touch across visits: the UTM tags of the first tagged visit, kept in this
   * site's own storage for the form's attribution_days, and only with the consent the form
   * requires; without one kept, this visit's tags. */
  function firstTouch(utm, form) {
    var kept = keptFirstTouch();
    if (kept) return kept;
    var any = UTM.some(function (name) { return !!utm[name]; });
    if (any && config.attributionDays > 0 && consented(form)) {
      store("localStorage", FIRST_KEY, JSON.stringify({ utm: utm, at: Date.now() }));
    }
    return utm;
  }

  function hidden(form, name, value) {
    if (!value) return;
    var input = form.elements[name];
    if (!input) {
      input = document.createElement("input");
      input.type = "hidden";
      input.name = name;
      form.appendChild(input);
    }
    if (!input.value) input.value = value;
  }

  function honeypot(form) {
    if (form.elements[config.honeypot]) return;
    var input = document.createElement("input");
    input.type = "text";
    input.name = config.honeypot;
    input.tabIndex = -1;
    input.autocomplete = "off";
    input.setAttribute("aria-hidden", "true");
    input.style.cssText = "position:absolute;left:-10000px;width:1px;height:1px;overflow:hidden";
    form.appendChild(input);
  }

  function pageView(vid, utm) {
    if (!config.trackPageViews || !window.fetch) return;
    var tags = {};
    UTM.forEach(function (name) { if (utm[name]) tags[name.slice(4)] = utm[name]; });
    var activity = {
      type: "page_view",
      occurred_at: new Date().toISOString(),
      visitor_id: vid,
      page_url: window.location.href.slice(0, 2048),
      utm: tags
    };
    window.fetch(config.activitiesUrl + "?key=" + encodeURIComponent(config.publicKey), {
      method: "POST",
      mode: "cors",
      keepalive: true,
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ activities: [activity] })
    }).catch(function () { /* a lost page view must never break the page */ });
  }

  function showMessage(form, message) {
    var note = document.createElement("p");
    note.className = "funnel-thank-you";
    note.setAttribute("role", "status");
    note.textContent = message;
    form.parentNode.replaceChild(note, form);
  }

  function showProblem(form, problem) {
    var box = form.querySelector(".funnel-errors");
    if (!box) {
      box = document.createElement("div");
      box.className = "funnel-errors";
      box.setAttribute("role", "alert");
      form.insertBefore(box, form.firstChild);
    }
    var errors = (problem && problem.errors) || [];
    box.textContent = errors.length
      ? errors.map(function (e) { return e.field + ": " + e.message; }).join("; ")
      : (problem && problem.title) || "Something went wrong; please try again.";
    errors.forEach(function (e) {
      var input = form.elements[e.field];
      if (input && input.setAttribute) input.setAttribute("aria-invalid", "true");
    });
  }

  function onSubmit(event) {
    var form = event.target;
    event.preventDefault();
    if (form.getAttribute("data-funnel-busy")) return;
    form.setAttribute("data-funnel-busy", "1");
    /* One key per filled form: a retried post of the same answers is captured once. */
    var key = form.getAttribute("data-funnel-key") || randomId();
    form.setAttribute("data-funnel-key", key);
    window.fetch(config.submitUrl, {
      method: "POST",
      mode: "cors",
      headers: { "Accept": "application/json", "Idempotency-Key": key },
      body: new FormData(form)
    }).then(function (response) {
      return response.json().then(function (body) { return { ok: response.ok, body: body }; });
    }).then(function (result) {
      form.removeAttribute("data-funnel-busy");
      if (!result.ok) { form.removeAttribute("data-funnel-key"); showProblem(form, result.body); return; }
      if (result.body.redirect_url) { window.location.assign(result.body.redirect_url); return; }
      showMessage(form, result.body.message || config.message);
    }).catch(function () {
      form.removeAttribute("data-funnel-busy");
      showProblem(form, null);
    });
  }

  function start() {
    var vid = visitorId();
    var utm = visitUtm();
    var forms = document.querySelectorAll('form[data-funnel-form="' + config.formId + '"]');
    Array.prototype.forEach.call(forms, function (form) {
      var first = firstTouch(utm, form);
      UTM.forEach(function (name) { hidden(form, name, first[name]); });
      form.addEventListener("change", function () { firstTouch(utm, form); });
      hidden(form, "landing_page", window.location.href.slice(0, 2048));
      hidden(form, "referrer", document.referrer.slice(0, 2048));
      hidden(form, "visitor_id", vid);
      honeypot(form);
      if (!form.getAttribute("action")) form.setAttribute("action", config.submitUrl);
      form.setAttribute("method", "post");
      if (window.fetch && window.FormData) form.addEventListener("submit", onSubmit);
    });
    pageView(vid, utm);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();

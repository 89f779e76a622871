// The cohort page: one row per slide, sortable by any column, filtered by text.
"use strict";

let rows = [];
let sortKey = "slide_id";
let sortType = "text";
let sortDir = 1;

function statusText(r) {
  if (r.status === "failed") return `failed: ${r.error}`;
  if (r.reliability_note) return `${r.status}; ${r.reliability_note}`;
  if (r.slide_error) return `${r.status}; slide image unavailable: ${r.slide_error}`;
  return r.status;
}

function render() {
  const needle = document.getElementById("filter").value.trim().toLowerCase();
  const shown = rows.filter((r) =>
    !needle || [r.slide_id, r.category, statusText(r)].some((v) => String(v || "").toLowerCase().includes(needle)));
  shown.sort((a, b) => {
    const x = a[sortKey], y = b[sortKey];
    if (x === null || x === undefined) return 1;  // blanks last in either direction
    if (y === null || y === undefined) return -1;
    return sortDir * (sortType === "number" ? x - y : String(x).localeCompare(String(y)));
  });
  const body = document.querySelector("#cohort tbody");
  body.replaceChildren(...shown.map((r) => {
    const link = el("a", { href: `/slide/${encodeURIComponent(r.slide_id)}`, text: r.slide_id });
    const thumb = r.slide_error
      ? el("span", { class: "nothumb", text: "no image" })
      : el("img", { src: `/api/slide/${encodeURIComponent(r.slide_id)}/thumbnail.jpg`, loading: "lazy", alt: "" });
    if (thumb.tagName === "IMG") thumb.onerror = () => thumb.replaceWith(el("span", { class: "nothumb", text: "no image" }));
    const status = el("td", { class: r.status === "failed" || r.slide_error ? "status bad" : "status", text: statusText(r) });
    return el("tr", { "data-slide": r.slide_id },
      el("td", {}, el("a", { href: link.href }, thumb)), el("td", {}, link),
      el("td", { class: "n", text: fmt.pct(r.stroma_fraction) }), el("td", { class: "n", text: fmt.num(r.tsr) }),
      el("td", { text: fmt.text(r.category) }),
      el("td", { class: "n", text: fmt.pct(r.hotspot_stroma_fraction) }), el("td", { class: "n", text: fmt.num(r.hotspot_tsr) }),
      el("td", { class: "n", text: fmt.num(r.tissue_area_mm2) }), el("td", { class: "n", text: fmt.int(r.n_tiles) }),
      status);
  }));
  document.getElementById("count").textContent = `${shown.length} of ${rows.length} slides`;
  for (const th of document.querySelectorAll("#cohort th[data-key]")) {
    th.classList.toggle("sorted", th.dataset.key === sortKey);
    th.dataset.dir = th.dataset.key === sortKey ? (sortDir > 0 ? "▲" : "▼") : "";
  }
}

for (const th of document.querySelectorAll("#cohort th[data-key]")) {
  th.addEventListener("click", () => {
    sortDir = th.dataset.key === sortKey ? -sortDir : 1;
    sortKey = th.dataset.key;
    sortType = th.dataset.type;
    render();
  });
}
document.getElementById("filter").addEventListener("input", render);

getJSON("/api/cohort").then((data) => { rows = data; render(); }).catch((err) => {
  const box = document.getElementById("page-error");
  box.textContent = `cannot list the slides: ${err.message}`;
  box.hidden = false;
});

// The study section: shown when `ldcsf agreement` or `ldcsf survival` wrote results in this folder.
function pval(v) { return v === null || v === undefined ? "–" : v < 0.001 ? Number(v).toExponential(1) : Number(v).toFixed(3); }
function ci(v, lo, hi) { return v === null || v === undefined ? "–" : `${fmt.num(v)} (${fmt.num(lo)}–${fmt.num(hi)})`; }

function studyTable(header, rows) {
  return el("table", {}, el("tr", {}, ...header.map((h) => el("th", { text: h }))),
    ...rows.map((r) => el("tr", {}, ...r.map((c, i) => el("td", { class: i ? "n" : "", text: c })))));
}

function renderStudy(study) {
  const box = document.getElementById("study");
  const parts = [el("h2", { text: "Study" }), el("p", {}, el("a", { href: "/study/study.html", text: "study page (study.html)" }))];
  if (study.agreement) {
    const a = study.agreement;
    parts.push(el("h3", { text: `Agreement (${a.score} stroma, ${a.slides.matched} slides)` }),
      studyTable(["pair", "n", "ICC2 (95% CI)", "Spearman", "κ high/low", "bias (limits) %"], a.pairs.map((p) => [
        p.pair, String(p.n), ci(p.icc2, p.icc2_low, p.icc2_high), fmt.num(p.spearman), fmt.num(p.kappa_high_low),
        p.bias === undefined ? "–" : `${p.bias.toFixed(1)} (${p.loa_low.toFixed(1)} to ${p.loa_high.toFixed(1)})`])),
      el("img", { src: "/study/bland_altman.png", alt: "Bland–Altman plots", class: "study-figure" }));
  }
  if (study.survival) {
    const s = study.survival;
    const terms = s.cox.flatMap((m) => m.terms.filter((t) => t.term.startsWith("stroma")));
    parts.push(el("h3", { text: `Survival (${s.score} stroma, cut-off ${s.cutoff_pct} %): log-rank p ${pval(s.logrank.p)}` }),
      studyTable(["Cox model", "term", "HR (95% CI)", "p", "PH test p"], terms.map((t) => [
        t.model, t.term, ci(t.hr, t.hr_low, t.hr_high), pval(t.p), pval(t.ph_test_p)])),
      el("img", { src: "/study/km.png", alt: "Kaplan–Meier curves", class: "study-figure" }));
  }
  box.replaceChildren(...parts);
  box.hidden = false;
}

getJSON("/api/study").then((study) => { if (study.agreement || study.survival) renderStudy(study); }).catch(() => {});

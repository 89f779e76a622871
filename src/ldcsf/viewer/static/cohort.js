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

// The slide page: the slide in OpenSeadragon, map layers over it, hotspot, TSR, tile numbers, scale bar.
"use strict";

const slideId = decodeURIComponent(location.pathname.split("/").pop());
const enc = encodeURIComponent(slideId);
const state = { info: null, width: 1, layers: {}, hoverKey: null, pinned: false, tileCache: new Map() };
const DEFAULT_OPACITY = { classes: 0.45, heatmap: 0.6 };

function showError(message) {
  const box = document.getElementById("page-error");
  box.textContent = message;
  box.hidden = false;
}

const viewer = OpenSeadragon({
  id: "viewer",
  prefixUrl: "/static/openseadragon/images/",
  showNavigator: true,
  navigatorPosition: "TOP_RIGHT",
  maxZoomPixelRatio: 2,
  visibilityRatio: 0.5,
  crossOriginPolicy: false,
  gestureSettingsMouse: { clickToZoom: false },
  timeout: 60000,
  // The 2-D canvas drawer: works the same with or without a GPU (WebGL falls back to slow software).
  drawer: "canvas",
});
window.ldcsfViewer = viewer;  // for scripted checks and the browser console

function addImage(options) {
  return new Promise((resolve, reject) => {
    viewer.addTiledImage({ x: 0, y: 0, width: 1, ...options, success: (e) => resolve(e.item),
      error: (e) => reject(new Error(e.message || "cannot load")) });
  });
}

// -- TSR panel ------------------------------------------------------------------------------------
function renderTsr(info) {
  const whole = info.tsr_detail || {};
  const hot = info.hotspot || {};
  const rows = [
    ["stroma fraction", fmt.pct(whole.stroma_fraction ?? info.stroma_fraction), fmt.pct(hot.stroma_fraction)],
    ["TSR (tumour / stroma)", fmt.num(whole.tsr ?? info.tsr), fmt.num(hot.tsr)],
    ["category", fmt.text(whole.category ?? info.category), fmt.text(hot.category)],
    // 95 % intervals; tsr.json files written before them have none ("–")
    ["stroma 95 % interval", intervalText(whole), intervalText(hot)],
    ["near the cut-off", nearText(whole), nearText(hot)],
    ["stroma mm²", fmt.num(whole.stroma_area_mm2), fmt.num(hot.stroma_area_mm2)],
    ["tumour mm²", fmt.num(whole.tumor_area_mm2), fmt.num(hot.tumor_area_mm2)],
    ["tissue mm²", fmt.num(whole.tissue_area_mm2 ?? info.tissue_area_mm2), fmt.num(hot.tissue_area_mm2)],
    ["tiles", fmt.int(whole.n_tiles ?? info.n_tiles), fmt.int(hot.n_tiles)],
  ];
  document.querySelector("#tsr-table tbody").replaceChildren(...rows.map(([name, a, b]) =>
    el("tr", {}, el("th", { text: name }), el("td", { class: "n", text: a }), el("td", { class: "n", text: b }))));
  const note = info.hotspot
    ? `hotspot: the most stroma-rich ${info.hotspot.diameter_um / 1000} mm field with tumour at all four borders` +
      ` (${whole.weighting || "probability"} weighting)`
    : `no hotspot: ${info.hotspot_note || "no results"}`;
  document.getElementById("hotspot-note").textContent = note;
}

function intervalText(part) {
  const iv = part.stroma_fraction_interval;
  return Array.isArray(iv) && iv.length === 2 ? `${fmt.pct(iv[0])} – ${fmt.pct(iv[1])}` : "–";
}

function nearText(part) {
  if (part.near_cutoff === undefined || part.near_cutoff === null) return "–";
  return part.near_cutoff ? "yes: near the cut-off" : "no";
}

// -- layers ---------------------------------------------------------------------------------------
function layerRow(key, title, setOpacity, opacity, visible) {
  const box = el("input", { type: "checkbox", id: `layer-${key}`, "data-layer": key });
  box.checked = visible;
  const slider = el("input", { type: "range", min: "0", max: "100", value: String(Math.round(opacity * 100)),
    id: `opacity-${key}`, title: "opacity" });
  const apply = () => {
    setOpacity(box.checked ? slider.value / 100 : 0);
  };
  box.addEventListener("change", apply);
  slider.addEventListener("input", () => { box.checked = true; apply(); });
  apply();
  state.layers[key] = { box, slider };
  return el("div", { class: "layer" }, el("label", {}, box, " ", title), slider);
}

function renderLegend(info) {
  const classes = el("div", { class: "legend" }, el("span", { class: "note", text: "class map: " }),
    ...info.legend.map((l) => el("span", { class: "swatch-item" }, el("span", { class: "swatch", style: `background:${l.color}` }), l.label)));
  const ramp = `linear-gradient(to right, ${info.heatmap_colors.join(", ")})`;
  const heat = el("div", { class: "legend" }, el("span", { class: "note", text: "heatmaps: 0" }),
    el("span", { class: "ramp", style: `background:${ramp}` }), el("span", { class: "note", text: "1" }));
  document.getElementById("legend").replaceChildren(classes, heat);
}

async function addLayers(info) {
  // Requested together; OpenSeadragon stacks them in the order asked, whatever order they load in.
  const items = await Promise.all(info.layers.map((layer) =>
    addImage({ tileSource: `/dz/${enc}/${layer.key}.dzi`, opacity: 0, preload: false })));
  const rows = info.layers.map((layer, i) =>
    layerRow(layer.key, layer.title, (v) => items[i].setOpacity(v), DEFAULT_OPACITY[layer.kind], layer.key === "classes"));
  if (info.hotspot) rows.push(hotspotRow(info));
  document.getElementById("layers").replaceChildren(...rows);
  renderLegend(info);
}

function hotspotRow(info) {
  const h = info.hotspot;
  const W = state.width;
  const circle = el("div", { class: "hotspot", id: "hotspot" });
  viewer.addOverlay({ element: circle, location: new OpenSeadragon.Rect((h.x - h.radius_px) / W, (h.y - h.radius_px) / W,
    2 * h.radius_px / W, 2 * h.radius_px / W) });
  const label = el("div", { class: "hotspot-label", id: "hotspot-label",
    text: `hotspot ${h.diameter_um / 1000} mm: stroma ${fmt.pct(h.stroma_fraction)}, TSR ${fmt.num(h.tsr)} (${h.category})` });
  viewer.addOverlay({ element: label, location: new OpenSeadragon.Point(h.x / W, (h.y - h.radius_px) / W),
    placement: OpenSeadragon.Placement.BOTTOM, checkResize: false });
  const show = (v) => { circle.style.opacity = v; label.style.display = v > 0 ? "" : "none"; };
  return layerRow("hotspot", "hotspot field", show, 1, true);
}

// -- the tile under the pointer -------------------------------------------------------------------
const highlight = el("div", { class: "tile-highlight", id: "tile-highlight" });

function renderTile(tile) {
  const box = document.getElementById("tile-info");
  if (!tile) { box.replaceChildren(el("span", { class: "note", text: "no tile here (background or not predicted)" })); return; }
  const hasArea = tile.labels.some((l) => l.area !== null);
  const head = el("tr", {}, el("th", { text: "label" }), el("th", { text: "probability" }), el("th", { text: "decision" }),
    ...(hasArea ? [el("th", { text: "area" })] : []));
  const rows = tile.labels.map((l) => el("tr", { class: l.pred ? "positive" : "" },
    el("td", {}, el("span", { class: "swatch", style: `background:${l.color}` }), l.label),
    el("td", { class: "n prob", text: l.prob.toFixed(3) }),
    el("td", { class: "n", text: l.pred === null ? "–" : l.pred ? "yes" : "no" }),
    ...(hasArea ? [el("td", { class: "n", text: l.area === null ? "–" : fmt.pct(l.area) })] : [])));
  box.replaceChildren(
    el("p", { class: "note", text: `tile ${tile.tile_id} (row ${tile.row}, col ${tile.col}) at x ${tile.x}, y ${tile.y}; ` +
      `${tile.width} x ${tile.height} px; tissue ${fmt.pct(tile.tissue_fraction)}` }),
    el("table", { id: "tile-table" }, el("thead", {}, head), el("tbody", {}, ...rows)));
  const W = state.width;
  const rect = new OpenSeadragon.Rect(tile.cell.x / W, tile.cell.y / W, tile.cell.w / W, tile.cell.h / W);
  if (viewer.getOverlayById("tile-highlight")) viewer.updateOverlay(highlight, rect);
  else viewer.addOverlay({ element: highlight, location: rect });
}

async function showTileAt(imageX, imageY) {
  const g = state.info && state.info.grid;
  if (!g) return;
  const col = Math.floor((imageX - g.left) / g.stride_x);
  const row = Math.floor((imageY - g.top) / g.stride_y);
  const key = `${row},${col}`;
  if (key === state.hoverKey) return;
  state.hoverKey = key;
  let tile = state.tileCache.get(key);
  if (tile === undefined) {
    try {
      tile = (await getJSON(`/api/slide/${enc}/tile?x=${imageX.toFixed(1)}&y=${imageY.toFixed(1)}`)).tile;
    } catch (err) { return; }
    state.tileCache.set(key, tile);
  }
  if (state.hoverKey === key) renderTile(tile);
}

function imagePoint(position) {
  const p = viewer.viewport.pointFromPixel(position);
  return [p.x * state.width, p.y * state.width];
}

new OpenSeadragon.MouseTracker({
  element: viewer.canvas,
  moveHandler: (e) => { if (!state.pinned) showTileAt(...imagePoint(e.position)); },
});
viewer.addHandler("canvas-click", (e) => {
  if (!e.quick) return;
  state.pinned = !state.pinned;
  document.getElementById("tile-pin").textContent = state.pinned ? "(kept; click again to follow the pointer)" : "";
  state.hoverKey = null;
  showTileAt(...imagePoint(e.position));
});

// -- scale bar: a round length in µm, and the equivalent objective (0.25 µm per screen pixel ≈ 40x) ----
function updateScaleBar() {
  const mpp = state.info && (state.info.mpp || state.info.slide_mpp);
  const bar = document.getElementById("scalebar");
  if (!mpp || !viewer.world.getItemCount()) { bar.hidden = true; return; }
  const containerWidth = viewer.viewport.getContainerSize().x;
  const umPerScreenPx = (mpp * state.width) / (containerWidth * viewer.viewport.getZoom(true));
  let length = 1;
  for (const candidate of [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000]) {
    if (candidate / umPerScreenPx <= 160) length = candidate;
  }
  document.getElementById("scalebar-bar").style.width = `${length / umPerScreenPx}px`;
  const text = length >= 1000 ? `${length / 1000} mm` : `${length} µm`;
  document.getElementById("scalebar-text").textContent = `${text}  ·  ≈ ${(10 / umPerScreenPx).toFixed(umPerScreenPx > 2 ? 1 : 0)}x`;
  bar.hidden = false;
}
viewer.addHandler("animation", updateScaleBar);
viewer.addHandler("resize", updateScaleBar);

// -- start ------------------------------------------------------------------------------------------
async function start() {
  let info;
  try {
    info = await getJSON(`/api/slide/${enc}`);
  } catch (err) {
    showError(err.message);
    return;
  }
  state.info = info;
  document.title = `${info.slide_id}: ldcsf view`;
  document.getElementById("title").textContent = info.slide_id;
  const problems = [];
  if (info.status === "failed") problems.push(`the run failed on this slide: ${info.error}`);
  if (info.slide_error) problems.push(`slide image unavailable: ${info.slide_error}`);
  if (info.results_error) problems.push(info.results_error);
  if (info.reliability_note) problems.push(info.reliability_note);
  if (problems.length) showError(problems.join("\n"));
  renderTsr(info);
  if (!info.dimensions) return;
  state.width = info.dimensions[0];
  try {
    const base = info.has_image ? addImage({ tileSource: `/dz/${enc}/slide.dzi` }) : Promise.resolve();
    await Promise.all([base, info.layers ? addLayers(info) : Promise.resolve()]);
  } catch (err) {
    showError(`cannot show the slide: ${err.message}`);
  }
  viewer.viewport.goHome(true);
  updateScaleBar();
  document.body.dataset.ready = "1";
}
start();

// Shared by the cohort and slide pages: number formatting and JSON fetching.
"use strict";

const fmt = {
  pct: (v) => (v === null || v === undefined ? "–" : `${(100 * v).toFixed(0)} %`),
  num: (v, d = 2) => (v === null || v === undefined ? "–" : Number(v).toFixed(d)),
  int: (v) => (v === null || v === undefined ? "–" : String(Math.round(v))),
  text: (v) => (v === null || v === undefined || v === "" ? "–" : String(v)),
};

async function getJSON(url) {
  const response = await fetch(url);
  const body = await response.json().catch(() => ({ error: `${response.status} ${response.statusText}` }));
  if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
  return body;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

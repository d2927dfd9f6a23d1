// The onnx-tdb page: plain JavaScript over the /v1/ API, nothing fetched
// from elsewhere. Views appear only when their data source exists.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { caps: null, model: null, last: null, probs: null };

// A token for servers started with --token: open the page as /#token=...
(function keepToken() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) sessionStorage.setItem("onnx-tdb-token", decodeURIComponent(m[1]));
})();

async function api(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  const tok = sessionStorage.getItem("onnx-tdb-token");
  if (tok) headers["Authorization"] = "Bearer " + tok;
  const resp = await fetch("v1/" + path, { method, headers, body: body ? JSON.stringify(body) : undefined });
  const data = await resp.json().catch(() => ({ error: resp.statusText }));
  if (!resp.ok) throw new Error(data.error || resp.statusText);
  return data;
}

function status(msg, isError) {
  const s = $("status");
  s.textContent = msg;
  s.className = isError ? "error" : "";
}

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  if (text !== undefined) e.textContent = text;
  return e;
}

function option(sel, value, label) {
  sel.appendChild(el("option", { value }, label === undefined ? value : label));
}

function shown(s) { return JSON.stringify(s).slice(1, -1); }

async function init() {
  try {
    const info = await api("GET", "models");
    state.caps = info;
    for (const m of info.models) option($("model"), m.name);
    $("model").addEventListener("change", () => selectModel(info.models.find((m) => m.name === $("model").value)));
    selectModel(info.models[0]);
    if (info.saes.length) {
      $("sae-view").hidden = false;
      for (const a of info.saes) option($("sae-name"), a.name, `${a.name} (${a.n_inputs}→${a.n_latents})`);
    }
    if (info.records.length) {
      $("records-view").hidden = false;
      for (const r of info.records) option($("rec-set"), r);
    }
    if (info.workflows.includes("lens")) $("lens-view").hidden = false;
    status("ready");
    await runPrompt();
  } catch (e) {
    status(e.message, true);
  }
}

function selectModel(m) {
  state.model = m;
  const pts = $("abl-point");
  pts.textContent = "";
  for (const p of m.points) if (p !== "logits") option(pts, p);
  pts.value = m.points.includes("mlp.post_act") ? "mlp.post_act" : m.points[0];
  $("abl-layer").max = m.n_layers - 1;
  const layers = $("attn-layer"), heads = $("attn-head");
  layers.textContent = ""; heads.textContent = "";
  for (let l = 0; l < m.n_layers; l++) option(layers, l);
  for (let h = 0; h < m.n_heads; h++) option(heads, h);
}

function input() {
  const text = $("prompt").value;
  return state.model.tokenizer ? { prompts: [text] } : { tokens: [text.split(/[\s,]+/).filter(Boolean).map(Number)] };
}

async function runPrompt() {
  status("running…");
  try {
    const res = await api("POST", "forward", {
      model: state.model.name, ...input(), points: ["attn.qk_probs"], top: 10, logits_last: false,
    });
    state.last = res;
    showTokens(res);
    showTop($("top"), res.top[0]);
    showAttention();
    status(`ready: ${res.tokens[0].length} tokens`);
    if (!$("ablated-col").hidden) await runAblation();
    if (!$("lens-view").hidden) await runLens();
  } catch (e) {
    status(e.message, true);
  }
}

function showTokens(res) {
  const box = $("tokens");
  box.textContent = "";
  res.tokens[0].forEach((id, i) => {
    const s = res.strings ? res.strings[0][i] : String(id);
    box.appendChild(el("span", { class: "tok", title: `position ${i}, id ${id}` }, s));
  });
}

function showTop(list, top) {
  list.textContent = "";
  for (const t of top) {
    const li = el("li", { "data-id": t.id });
    li.appendChild(el("span", { class: "token" }, t.token !== undefined ? shown(t.token) : String(t.id)));
    li.appendChild(el("span", { class: "logit" }, t.logit.toFixed(4)));
    list.appendChild(li);
  }
}

function tokenLabel(i) {
  const r = state.last;
  return r.strings ? shown(r.strings[0][i]) : String(r.tokens[0][i]);
}

// The heatmap of attn.qk_probs [1, T, Tk, H] at the chosen layer and head.
function showAttention() {
  const r = state.last;
  if (!r) return;
  const layer = Number($("attn-layer").value), head = Number($("attn-head").value);
  const t = r.activations[`attn.qk_probs@${layer}`];
  const grid = $("attn");
  grid.textContent = "";
  if (!t) return;
  const [, T, Tk, H] = t.shape;
  grid.style.gridTemplateColumns = `90px repeat(${Tk}, 22px)`;
  grid.appendChild(el("div"));
  for (let k = 0; k < Tk; k++) grid.appendChild(el("div", { class: "label klabel" }, tokenLabel(k)));
  for (let q = 0; q < T; q++) {
    grid.appendChild(el("div", { class: "label" }, tokenLabel(q)));
    for (let k = 0; k < Tk; k++) {
      const v = t.data[(q * Tk + k) * H + head];
      const cell = el("div", { class: "cell", "data-q": q, "data-k": k, "data-value": v === null ? "" : String(v) });
      if (k > q) cell.classList.add("masked");
      else cell.style.background = `rgba(31, 58, 95, ${Math.max(0, Math.min(1, v))})`;
      const text = `query ${q} ${tokenLabel(q)} → key ${k} ${tokenLabel(k)}: ${v === null ? "-" : v.toFixed(4)}`;
      cell.title = text;
      cell.addEventListener("mouseenter", () => { $("attn-hover").textContent = text; });
      grid.appendChild(cell);
    }
  }
}

async function runAblation() {
  const point = $("abl-point").value;
  const perLayer = state.model.sites.some((s) => s.startsWith(point + "@"));
  let target = perLayer ? `${point}@${$("abl-layer").value}` : point;
  const idx = $("abl-index").value.trim();
  if (idx) target += ":" + idx.split(/[,:\s]+/).join(":");
  status("ablating…");
  try {
    const res = await api("POST", "forward", {
      model: state.model.name, ...input(), ablate: [target], top: 10, logits_last: false,
    });
    $("ablation-label").textContent = `ablate ${target}`;
    $("ablated-col").hidden = false;
    showTop($("abl-top"), res.top[0]);
    status(`ablated ${target}`);
  } catch (e) {
    status(e.message, true);
  }
}

async function runSAE() {
  status("encoding…");
  try {
    const res = await api("POST", "sae/top", {
      model: state.model.name, ...input(), sae: $("sae-name").value, at: $("sae-at").value, k: Number($("sae-k").value),
    });
    const tbl = $("sae-table");
    tbl.textContent = "";
    const head = el("tr");
    for (const h of ["pos", "token", "latents (index: value)"]) head.appendChild(el("th", {}, h));
    tbl.appendChild(head);
    for (const t of res.rows[0]) {
      const tr = el("tr");
      tr.appendChild(el("td", {}, t.position));
      tr.appendChild(el("td", {}, t.token !== undefined ? shown(t.token) : t.id));
      tr.appendChild(el("td", {}, t.latents.map((l) => `${l.latent}: ${l.value.toFixed(3)}`).join("  ") || "(none active)"));
      tbl.appendChild(tr);
    }
    status("encoded");
  } catch (e) {
    status(e.message, true);
  }
}

// A NeuronRecord: top examples with each token shaded by its activation
// relative to the record's largest, as TDB's neuron viewer shows them.
async function runRecord() {
  status("loading record…");
  const box = $("rec");
  box.textContent = "";
  try {
    const rec = await api("GET", `records/${encodeURIComponent($("rec-set").value)}/${$("rec-layer").value}/${$("rec-unit").value}`);
    const seqs = rec.most_positive_activation_records || [];
    let max = rec.max_activation || 0;
    for (const s of seqs) for (const a of s.activations) max = Math.max(max, a);
    box.appendChild(el("div", {}, `max activation ${max.toFixed(3)}; ${seqs.length} top examples`));
    for (const s of seqs) {
      const line = el("div", { class: "record" });
      s.tokens.forEach((tk, i) => {
        const a = s.activations[i];
        const span = el("span", { class: "tok", title: `activation ${a.toFixed(4)}` }, tk);
        span.style.background = `rgba(46, 160, 67, ${max > 0 ? Math.max(0, a) / max : 0})`;
        line.appendChild(span);
      });
      box.appendChild(line);
    }
    status("record shown");
  } catch (e) {
    box.appendChild(el("div", { class: "error" }, e.message));
    status(e.message, true);
  }
}

// The logit lens: {"layers": [names], "grid": [[{"token", "prob"}] per
// position] per layer}, from the workflows source.
async function runLens() {
  try {
    const res = await api("POST", "workflows/lens", { model: state.model.name, ...input() });
    const box = $("lens");
    box.textContent = "";
    const T = res.grid.length ? res.grid[0].length : 0;
    box.style.gridTemplateColumns = `70px repeat(${T}, minmax(60px, 1fr))`;
    box.appendChild(el("div"));
    for (let i = 0; i < T; i++) box.appendChild(el("div", { class: "label" }, tokenLabel(i)));
    res.grid.forEach((row, l) => {
      const full = res.layers ? String(res.layers[l]) : String(l);
      box.appendChild(el("div", { title: full }, l === 0 ? "embed" : `layer ${l - 1}`));
      for (const c of row) {
        const d = el("div", { title: `p = ${c.prob}` }, shown(c.token));
        d.style.background = `rgba(224, 17, 95, ${Math.min(1, c.prob)})`;
        box.appendChild(d);
      }
    });
  } catch (e) {
    $("lens").textContent = e.message;
  }
}

$("prompt-form").addEventListener("submit", (e) => { e.preventDefault(); runPrompt(); });
$("ablation-form").addEventListener("submit", (e) => { e.preventDefault(); runAblation(); });
$("abl-clear").addEventListener("click", () => { $("ablated-col").hidden = true; });
$("attn-layer").addEventListener("change", showAttention);
$("attn-head").addEventListener("change", showAttention);
$("sae-form").addEventListener("submit", (e) => { e.preventDefault(); runSAE(); });
$("records-form").addEventListener("submit", (e) => { e.preventDefault(); runRecord(); });
init();

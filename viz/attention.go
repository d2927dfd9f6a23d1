package viz

import (
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"math"
	"sort"

	"github.com/onnx-tdb/onnx-tdb/hooks"
)

// ErrShape is returned for tensors that are not attention patterns.
var ErrShape = errors.New("viz: not an attention pattern [B,T,Tk,H]")

// Attention is the attention view of one batch row: qk_probs per layer.
type Attention struct {
	Title  string
	Tokens []string              // the row's tokens as text, one per key position
	Row    int                   // batch row to draw
	Probs  map[int]*hooks.Tensor // layer -> attn.qk_probs [B,T,Tk,H]
}

// head is one layer's probabilities for the row, [H][T][Tk], in the JSON
// the page script reads.
type layerView struct {
	Layer int           `json:"layer"`
	Heads [][][]float32 `json:"heads"`
}

// headMatrix cuts the [T][Tk] matrix of one row and head out of probs.
func headMatrix(probs *hooks.Tensor, row, head int) ([][]float32, error) {
	if len(probs.Shape) != 4 || len(probs.Data) != probs.Numel() {
		return nil, fmt.Errorf("%w: shape %v", ErrShape, probs.Shape)
	}
	B, T, Tk, H := probs.Shape[0], probs.Shape[1], probs.Shape[2], probs.Shape[3]
	if row < 0 || row >= B {
		return nil, fmt.Errorf("viz: row %d out of range [0,%d)", row, B)
	}
	if head < 0 || head >= H {
		return nil, fmt.Errorf("viz: head %d out of range [0,%d)", head, H)
	}
	m := make([][]float32, T)
	for q := range m {
		m[q] = make([]float32, Tk)
		for k := range m[q] {
			v := probs.Data[((row*T+q)*Tk+k)*H+head]
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				v = 0
			}
			m[q][k] = v
		}
	}
	return m, nil
}

func (a Attention) layers() ([]layerView, error) {
	if len(a.Probs) == 0 {
		return nil, fmt.Errorf("%w: no layers given", ErrShape)
	}
	ls := make([]int, 0, len(a.Probs))
	for l := range a.Probs {
		ls = append(ls, l)
	}
	sort.Ints(ls)
	var out []layerView
	for _, l := range ls {
		p := a.Probs[l]
		if len(p.Shape) != 4 {
			return nil, fmt.Errorf("%w: layer %d has shape %v", ErrShape, l, p.Shape)
		}
		if len(a.Tokens) != p.Shape[2] {
			return nil, fmt.Errorf("viz: %d tokens for %d key positions", len(a.Tokens), p.Shape[2])
		}
		lv := layerView{Layer: l}
		for h := 0; h < p.Shape[3]; h++ {
			m, err := headMatrix(p, a.Row, h)
			if err != nil {
				return nil, err
			}
			lv.Heads = append(lv.Heads, m)
		}
		out = append(out, lv)
	}
	return out, nil
}

// WriteAttentionHTML writes a self-contained page: pick a layer and a
// head, see the query × key heatmap, hover a cell for its tokens and value.
func WriteAttentionHTML(w io.Writer, a Attention) error {
	ls, err := a.layers()
	if err != nil {
		return err
	}
	data, err := json.Marshal(map[string]any{"tokens": a.Tokens, "layers": ls})
	if err != nil {
		return fmt.Errorf("viz: %w", err)
	}
	title := a.Title
	if title == "" {
		title = "attention pattern"
	}
	return attentionPage.Execute(w, map[string]any{"Title": title, "Data": template.JS(data)})
}

var attentionPage = template.Must(template.New("attention").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}}</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1em; }
#grid { display: grid; gap: 1px; font: 11px ui-monospace, monospace; margin-top: .6em; }
.cell { width: 22px; height: 22px; }
.cell:hover { outline: 2px solid #e0115f; }
.masked { background: #f2f2f2; }
.label { white-space: pre; overflow: hidden; max-width: 100px; }
.k { writing-mode: vertical-rl; transform: rotate(180deg); max-height: 100px; }
#hover { font-family: ui-monospace, monospace; margin-left: 1em; }
</style></head><body>
<h1 style="font-size:1.1em">{{.Title}}</h1>
<label>layer <select id="layer"></select></label>
<label>head <select id="head"></select></label>
<span id="hover">hover a cell</span>
<div id="grid"></div>
<script>
"use strict";
const data = {{.Data}};
const $ = (id) => document.getElementById(id);
const q = (s) => JSON.stringify(s).slice(1, -1);
data.layers.forEach((l, i) => $("layer").add(new Option(l.layer, i)));
function heads() {
  const n = data.layers[$("layer").value].heads.length, h = $("head");
  const keep = h.value; h.textContent = "";
  for (let i = 0; i < n; i++) h.add(new Option(i, i));
  if (keep && keep < n) h.value = keep;
}
function draw() {
  const m = data.layers[$("layer").value].heads[$("head").value], g = $("grid"), T = data.tokens;
  g.textContent = "";
  g.style.gridTemplateColumns = "100px repeat(" + m[0].length + ", 22px)";
  g.appendChild(document.createElement("div"));
  for (const t of T) { const d = document.createElement("div"); d.className = "label k"; d.textContent = q(t); g.appendChild(d); }
  m.forEach((row, i) => {
    const lab = document.createElement("div"); lab.className = "label"; lab.textContent = q(T[T.length - m.length + i]); g.appendChild(lab);
    row.forEach((v, k) => {
      const c = document.createElement("div"); c.className = "cell";
      const qi = T.length - m.length + i;
      if (k > qi) c.classList.add("masked"); else c.style.background = "rgba(31,58,95," + v + ")";
      c.dataset.value = v;
      c.title = "query " + qi + " " + q(T[qi]) + " → key " + k + " " + q(T[k]) + ": " + v.toFixed(4);
      c.onmouseenter = () => { $("hover").textContent = c.title; };
      g.appendChild(c);
    });
  });
}
$("layer").onchange = () => { heads(); draw(); };
$("head").onchange = draw;
heads(); draw();
</script></body></html>
`))

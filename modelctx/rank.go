package modelctx

import (
	"fmt"
	"math"
	"sort"

	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/modelctx/tokenizer"
)

// TopK returns the indices of the k largest values, largest first (the
// lower index first on ties). k larger than len(v) gives every index; k < 0
// is treated as 0.
func TopK(v []float32, k int) []int {
	k = max(0, min(k, len(v)))
	if k > 64 { // a stable sort beats insertion into a long list
		all := make([]int, len(v))
		for i := range all {
			all[i] = i
		}
		sort.SliceStable(all, func(a, b int) bool { return v[all[a]] > v[all[b]] })
		return all[:k]
	}
	idx := make([]int, 0, k+1)
	for i, x := range v {
		if len(idx) == k && (k == 0 || x <= v[idx[k-1]]) {
			continue
		}
		j := sort.Search(len(idx), func(j int) bool { return v[idx[j]] < x })
		idx = append(idx, 0)
		copy(idx[j+1:], idx[j:])
		idx[j] = i
		if len(idx) > k {
			idx = idx[:k]
		}
	}
	return idx
}

// TopToken is one candidate next token.
type TopToken struct {
	ID    int     `json:"id"`
	Token string  `json:"token,omitempty"` // "" without a tokenizer
	Logit float32 `json:"logit"`
}

// RowTop is the top next tokens of one row, read at its last real position.
type RowTop struct {
	Position int        `json:"position"`
	Top      []TopToken `json:"top"`
}

// LastReal is the last position of row b that is not a pad (0 when the row
// is all pads).
func (o *Output) LastReal(b int) int {
	for t := len(o.Pad[b]) - 1; t >= 0; t-- {
		if !o.Pad[b][t] {
			return t
		}
	}
	return 0
}

// TopNextTokens ranks each row's logits at its last real position and
// returns the k most likely next tokens, decoded when tok is not nil.
func (o *Output) TopNextTokens(k int, tok tokenizer.Tokenizer) ([]RowTop, error) {
	if o.Logits == nil || len(o.Logits.Shape) != 3 {
		return nil, fmt.Errorf("top tokens: the output has no [B,T,V] logits")
	}
	if k < 0 {
		return nil, fmt.Errorf("top tokens: k = %d, want k >= 0", k)
	}
	T, V := o.Logits.Shape[1], o.Logits.Shape[2]
	out := make([]RowTop, o.Logits.Shape[0])
	for b := range out {
		pos := o.LastReal(b)
		lg := o.Logits.Data[(b*T+pos)*V : (b*T+pos+1)*V]
		out[b] = RowTop{Position: pos, Top: []TopToken{}}
		for _, id := range TopK(lg, k) {
			tt := TopToken{ID: id, Logit: lg[id]}
			if tok != nil {
				tt.Token, _ = tok.DecodeToken(id)
			}
			out[b].Top = append(out[b].Top, tt)
		}
	}
	return out, nil
}

// Attribution is one entry of activation × gradient.
type Attribution struct {
	Position    int     `json:"position"`
	TokenID     int     `json:"token_id"`
	Token       string  `json:"token,omitempty"`
	Index       []int   `json:"index"` // on the point's axes after batch and token
	Activation  float32 `json:"activation"`
	Gradient    float32 `json:"gradient"`
	Attribution float32 `json:"attribution"`
}

// RankAttributions returns row b's k entries of act × grad (a point's value
// and its gradient, [B,T,...]), largest first (by magnitude with abs), over
// the row's real positions and every index of the point's own axes.
func RankAttributions(act, grad *hooks.Tensor, batch Batch, b, k int, abs bool, tok tokenizer.Tokenizer) ([]Attribution, error) {
	if act == nil || grad == nil || len(act.Shape) < 2 || fmt.Sprint(act.Shape) != fmt.Sprint(grad.Shape) {
		return nil, fmt.Errorf("attributions: activation and gradient of different or too few axes")
	}
	if b < 0 || b >= act.Shape[0] || b >= len(batch.Pad) {
		return nil, fmt.Errorf("attributions: row %d out of range [0,%d)", b, act.Shape[0])
	}
	if k < 0 {
		return nil, fmt.Errorf("attributions: k = %d, want k >= 0", k)
	}
	T := act.Shape[1]
	per := act.Numel() / max(1, act.Shape[0]*T)
	type entry struct {
		off int
		val float32
	}
	var all []entry
	for t := 0; t < T; t++ {
		if batch.Pad[b][t] {
			continue
		}
		base := (b*T + t) * per
		for i := 0; i < per; i++ {
			all = append(all, entry{base + i, act.Data[base+i] * grad.Data[base+i]})
		}
	}
	key := func(e entry) float64 {
		if abs {
			return math.Abs(float64(e.val))
		}
		return float64(e.val)
	}
	sort.SliceStable(all, func(i, j int) bool { return key(all[i]) > key(all[j]) })
	if len(all) > k {
		all = all[:k]
	}
	out := []Attribution{}
	for _, e := range all {
		t := e.off/per - b*T
		rest := e.off % per
		idx := make([]int, len(act.Shape)-2)
		for a := len(idx) - 1; a >= 0; a-- {
			d := act.Shape[2+a]
			idx[a] = rest % d
			rest /= d
		}
		at := Attribution{Position: t, TokenID: batch.Tokens[b][t], Index: idx,
			Activation: act.Data[e.off], Gradient: grad.Data[e.off], Attribution: e.val}
		if tok != nil {
			at.Token, _ = tok.DecodeToken(at.TokenID)
		}
		out = append(out, at)
	}
	return out, nil
}

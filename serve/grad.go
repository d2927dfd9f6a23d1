package serve

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"sort"

	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
)

// gradRequest asks for d(loss)/d(value) at hook points. The loss is the
// logit of "target" (a token id or a text that is one token) at "row" and
// "position" (-1, the default, is the row's last real token); with
// "distractors" it is the target logit minus their mean (logit-diff,
// every row's last real token).
type gradRequest struct {
	inputRequest
	editRequest
	Target      json.RawMessage   `json:"target"`
	Distractors []json.RawMessage `json:"distractors,omitempty"`
	Row         int               `json:"row,omitempty"`
	Position    *int              `json:"position,omitempty"`
	Points      []string          `json:"points,omitempty"`
	// attribute only
	Point string `json:"point,omitempty"`
	K     int    `json:"k,omitempty"`
	Abs   bool   `json:"abs,omitempty"`
}

// tokenArg reads a token given as an id or as a text that is one token.
func tokenArg(raw json.RawMessage, m *modelctx.Transformer) (int, error) {
	var id int
	if err := json.Unmarshal(raw, &id); err == nil {
		if id < 0 || id >= m.Manifest().Config.NVocab {
			return 0, fmt.Errorf("%w: token %d, the vocabulary is [0,%d)", modelctx.ErrTokenOutOfRange, id, m.Manifest().Config.NVocab)
		}
		return id, nil
	}
	var text string
	if err := json.Unmarshal(raw, &text); err != nil {
		return 0, fmt.Errorf("token %s: want an id or a one-token text", raw)
	}
	tok, err := modelTokenizer(m)
	if err != nil {
		return 0, err
	}
	ids := tok.Encode(text)
	if len(ids) != 1 {
		return 0, fmt.Errorf("token %q is %d tokens, not one", text, len(ids))
	}
	return ids[0], nil
}

func (s *Server) gradLoss(req gradRequest, m *modelctx.Transformer, nRows int) (modelctx.Loss, error) {
	if len(req.Target) == 0 {
		return modelctx.Loss{}, badRequest(errors.New(`give "target": a token id or a one-token text`))
	}
	target, err := tokenArg(req.Target, m)
	if err != nil {
		return modelctx.Loss{}, badRequest(fmt.Errorf("target: %w", err))
	}
	if req.Row < 0 || req.Row >= nRows {
		return modelctx.Loss{}, badRequest(fmt.Errorf("row %d out of range [0,%d)", req.Row, nRows))
	}
	if len(req.Distractors) > 0 {
		var ds []int
		for _, raw := range req.Distractors {
			d, err := tokenArg(raw, m)
			if err != nil {
				return modelctx.Loss{}, badRequest(fmt.Errorf("distractors: %w", err))
			}
			ds = append(ds, d)
		}
		return modelctx.LogitDiffLoss([]int{target}, ds), nil
	}
	pos := -1
	if req.Position != nil {
		pos = *req.Position
	}
	return modelctx.LogitLoss(req.Row, pos, target), nil
}

// backward runs the request's backward pass with gradients (and, when
// capture, activations) at sites.
func (s *Server) backward(r *http.Request, req gradRequest, m *modelctx.Transformer, sites []hooks.Site, capture bool) (*modelctx.Grads, [][]int, error) {
	rows, _, err := s.rows(req.inputRequest, m)
	if err != nil {
		return nil, nil, err
	}
	side, err := padSide(req.Pad)
	if err != nil {
		return nil, nil, err
	}
	loss, err := s.gradLoss(req, m, len(rows))
	if err != nil {
		return nil, nil, err
	}
	ho, err := s.editHooks(req.editRequest, m)
	if err != nil {
		return nil, nil, err
	}
	opts := []modelctx.BackwardOption{modelctx.WithPad(side)}
	for _, o := range ho {
		opts = append(opts, o)
	}
	if len(sites) > 0 {
		f := filterOf(sites)
		opts = append(opts, modelctx.GradsAt(f))
		if capture {
			opts = append(opts, modelctx.Capture(f))
		}
	}
	var g *modelctx.Grads
	err = s.run(r.Context(), func() error {
		var err error
		g, err = m.Backward(r.Context(), rows, loss, opts...)
		return err
	})
	return g, rows, err
}

// filterOf is the smallest filter that covers sites.
func filterOf(sites []hooks.Site) *modelctx.Filter {
	f := &modelctx.Filter{}
	pts, layers := map[hooks.Point]bool{}, map[int]bool{}
	for _, st := range sites {
		if !pts[st.Point] {
			pts[st.Point] = true
			f.Points = append(f.Points, st.Point)
		}
		if st.Layer >= 0 && !layers[st.Layer] {
			layers[st.Layer] = true
			f.Layers = append(f.Layers, st.Layer)
		}
	}
	sort.Ints(f.Layers)
	return f
}

func (s *Server) handleGrad(w http.ResponseWriter, r *http.Request) error {
	var req gradRequest
	if err := s.decode(w, r, &req); err != nil {
		return err
	}
	m, _, err := s.model(req.Model)
	if err != nil {
		return err
	}
	sites, err := s.parsePoints(req.Points, m)
	if err != nil {
		return err
	}
	if len(sites) == 0 {
		return badRequest(errors.New(`give "points": the hook points whose gradient to return`))
	}
	g, _, err := s.backward(r, req, m, sites, false)
	if err != nil {
		return err
	}
	named := map[string]*hooks.Tensor{}
	for _, st := range sites {
		if t, ok := g.Grads[st]; ok {
			named[st.String()] = t
		}
	}
	if wantsNPY(r) {
		t, err := singleTensor(named)
		if err != nil {
			return err
		}
		return writeNPY(w, t)
	}
	grads := map[string]*tensorJSON{}
	for k, t := range named {
		grads[k] = tensorOf(t)
	}
	writeJSON(w, http.StatusOK, map[string]any{"loss": g.Loss, "grads": grads})
	return nil
}

type attribution struct {
	Position    int     `json:"position"`
	TokenID     int     `json:"token_id"`
	Token       string  `json:"token,omitempty"`
	Index       []int   `json:"index"`
	Activation  float32 `json:"activation"`
	Gradient    float32 `json:"gradient"`
	Attribution float32 `json:"attribution"`
}

// handleAttribute ranks activation × gradient at one point, per layer, for
// the target row (as the CLI's attribute).
func (s *Server) handleAttribute(w http.ResponseWriter, r *http.Request) error {
	var req gradRequest
	if err := s.decode(w, r, &req); err != nil {
		return err
	}
	m, _, err := s.model(req.Model)
	if err != nil {
		return err
	}
	if req.Point == "" {
		req.Point = "mlp.post_act"
	}
	if req.K == 0 {
		req.K = 10
	}
	if req.K < 0 {
		return badRequest(fmt.Errorf("k %d: want a positive count", req.K))
	}
	sites, err := s.parsePoints([]string{req.Point}, m)
	if err != nil {
		return err
	}
	if len(sites) > 0 && len(sites[0].Point.Shape()) < 3 {
		return badRequest(fmt.Errorf("point %s has no axes after batch and token", sites[0].Point))
	}
	g, rows, err := s.backward(r, req, m, sites, true)
	if err != nil {
		return err
	}
	side, _ := padSide(req.Pad)
	batch := modelctx.PadRows(rows, side)
	tok, _ := modelTokenizer(m)
	type layerAttr struct {
		Site string        `json:"site"`
		Top  []attribution `json:"top"`
	}
	var res []layerAttr
	for _, st := range sites {
		act, grad := g.Activations[st], g.Grads[st]
		if act == nil || grad == nil {
			continue
		}
		top := rankAttributions(act, grad, batch, req.Row, req.K, req.Abs)
		for i := range top {
			if tok != nil {
				top[i].Token, _ = tok.DecodeToken(top[i].TokenID)
			}
		}
		res = append(res, layerAttr{Site: st.String(), Top: top})
	}
	writeJSON(w, http.StatusOK, map[string]any{"loss": g.Loss, "row": req.Row, "layers": res})
	return nil
}

// rankAttributions returns row b's k entries of act × grad, largest first
// (by magnitude with abs), over its real positions and the point's axes.
func rankAttributions(act, grad *hooks.Tensor, batch modelctx.Batch, b, k int, abs bool) []attribution {
	T := act.Shape[1]
	per := act.Numel() / (act.Shape[0] * T)
	key := func(off int) float64 {
		v := float64(act.Data[off] * grad.Data[off])
		if abs {
			return math.Abs(v)
		}
		return v
	}
	var offs []int
	for t := 0; t < T; t++ {
		if batch.Pad[b][t] {
			continue
		}
		for i := 0; i < per; i++ {
			offs = append(offs, (b*T+t)*per+i)
		}
	}
	sort.SliceStable(offs, func(i, j int) bool { return key(offs[i]) > key(offs[j]) })
	if len(offs) > k {
		offs = offs[:k]
	}
	out := []attribution{}
	for _, off := range offs {
		t := off/per - b*T
		rest := off % per
		idx := make([]int, len(act.Shape)-2)
		for a := len(idx) - 1; a >= 0; a-- {
			d := act.Shape[2+a]
			idx[a] = rest % d
			rest /= d
		}
		out = append(out, attribution{Position: t, TokenID: batch.Tokens[b][t], Index: idx,
			Activation: act.Data[off], Gradient: grad.Data[off], Attribution: act.Data[off] * grad.Data[off]})
	}
	return out
}

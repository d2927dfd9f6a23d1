package serve

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
	"github.com/onnx-tdb/onnx-tdb/modelctx/tokenizer"
)

type forwardRequest struct {
	inputRequest
	editRequest
	Points     []string `json:"points,omitempty"`
	Top        *int     `json:"top,omitempty"`         // default 5
	LogitsLast *bool    `json:"logits_last,omitempty"` // default true
}

type topToken struct {
	ID    int     `json:"id"`
	Token string  `json:"token,omitempty"`
	Logit float32 `json:"logit"`
}

type forwardResponse struct {
	Model       string                 `json:"model"`
	Tokens      [][]int                `json:"tokens"`
	Strings     [][]string             `json:"strings,omitempty"`
	Positions   []int                  `json:"positions"` // each row's last real position
	Top         [][]topToken           `json:"top"`
	Activations map[string]*tensorJSON `json:"activations,omitempty"`
	LogitsLast  *tensorJSON            `json:"logits_last,omitempty"`
}

// run holds a run slot while fn runs.
func (s *Server) run(ctx context.Context, fn func() error) error {
	release, err := s.gate.acquire(ctx, s.limits.QueueTimeout)
	if err != nil {
		return err
	}
	defer release()
	return fn()
}

// parsePoints reads "points": "POINT@LAYER" is one site, a per-layer
// "POINT" every layer, a once point itself.
func (s *Server) parsePoints(pts []string, m *modelctx.Transformer) ([]hooks.Site, error) {
	if len(pts) > s.limits.Points {
		return nil, errorf(http.StatusRequestEntityTooLarge, "%v: %d points, over %d per request (limit points)", ErrTooLarge, len(pts), s.limits.Points)
	}
	var sites []hooks.Site
	seen := map[hooks.Site]bool{}
	add := func(st hooks.Site) {
		if !seen[st] {
			seen[st] = true
			sites = append(sites, st)
		}
	}
	for _, p := range pts {
		if strings.Contains(p, "@") {
			st, err := m.ParseSite(p)
			if err != nil {
				return nil, badRequest(fmt.Errorf("points: %w", err))
			}
			if st.Layer >= m.NLayers() {
				return nil, badRequest(fmt.Errorf("points: %s: layer %d out of range [0,%d)", p, st.Layer, m.NLayers()))
			}
			if !st.Point.IsSAE() && !m.HasSite(st) {
				return nil, badRequest(fmt.Errorf("points: %w: %s", modelctx.ErrNoPoint, st))
			}
			add(st)
			continue
		}
		pt, err := hooks.Parse(p)
		if err != nil {
			return nil, badRequest(fmt.Errorf("points: %w", err))
		}
		if !pt.PerLayer() {
			st := hooks.Site{Point: pt, Layer: -1}
			if !m.HasSite(st) {
				return nil, badRequest(fmt.Errorf("points: %w: %s", modelctx.ErrNoPoint, st))
			}
			add(st)
			continue
		}
		for l := 0; l < m.NLayers(); l++ {
			st := hooks.Site{Point: pt, Layer: l}
			if st.Point.IsSAE() || m.HasSite(st) {
				add(st)
			}
		}
	}
	return sites, nil
}

// captureHooks copies the values at sites into got as the pass goes by.
func captureHooks(sites []hooks.Site, got map[hooks.Site]*hooks.Tensor) *hooks.Hooks {
	h := hooks.New()
	for _, st := range sites {
		st := st
		opts := []hooks.Option{hooks.Trusted()} // it clones what it keeps
		if st.Point.PerLayer() {
			opts = append(opts, hooks.AtLayers(st.Layer))
		}
		h.Observe(st.Point, func(_ *hooks.Context, x *hooks.Tensor) error {
			got[st] = x.Clone()
			return nil
		}, opts...)
	}
	return h
}

func (s *Server) handleForward(w http.ResponseWriter, r *http.Request) error {
	var req forwardRequest
	if err := s.decode(w, r, &req); err != nil {
		return err
	}
	m, name, err := s.model(req.Model)
	if err != nil {
		return err
	}
	rows, _, err := s.rows(req.inputRequest, m)
	if err != nil {
		return err
	}
	side, err := padSide(req.Pad)
	if err != nil {
		return err
	}
	k := 5
	if req.Top != nil {
		k = *req.Top
	}
	if k < 0 || k > m.Manifest().Config.NVocab {
		return badRequest(fmt.Errorf("top %d: want 0..%d", k, m.Manifest().Config.NVocab))
	}
	sites, err := s.parsePoints(req.Points, m)
	if err != nil {
		return err
	}
	opts, err := s.editHooks(req.editRequest, m)
	if err != nil {
		return err
	}
	opts = append(opts, modelctx.WithPad(side))
	if s.testHooks != nil {
		opts = append(opts, modelctx.WithHooks(s.testHooks(r.Context())))
	}
	got := map[hooks.Site]*hooks.Tensor{}
	if len(sites) > 0 {
		opts = append(opts, modelctx.WithHooks(captureHooks(sites, got)))
	}
	var out *modelctx.Output
	err = s.run(r.Context(), func() error {
		var err error
		out, err = m.Forward(r.Context(), rows, opts...)
		return err
	})
	if err != nil {
		return err
	}
	tok, _ := modelTokenizer(m)
	res := forwardResponse{Model: name, Tokens: rows, Strings: tokenStrings(tok, rows)}
	last := lastLogits(out.Logits, rows, side)
	res.Positions = lastPositions(rows, side, out.Logits.Shape[1])
	res.Top = topTokens(last, k, tok)
	if len(sites) > 0 {
		res.Activations = map[string]*tensorJSON{}
		for st, t := range got {
			res.Activations[st.String()] = tensorOf(t)
		}
	}
	if req.LogitsLast == nil || *req.LogitsLast {
		res.LogitsLast = tensorOf(last)
	}
	if wantsNPY(r) {
		if len(sites) == 0 {
			return writeNPY(w, last)
		}
		named := map[string]*hooks.Tensor{}
		for st, t := range got {
			named[st.String()] = t
		}
		t, err := singleTensor(named)
		if err != nil {
			return err
		}
		return writeNPY(w, t)
	}
	return writeForward(w, res)
}

// writeForward writes the answer with its arrays appended directly.
func writeForward(w http.ResponseWriter, res forwardResponse) error {
	size := 1024
	if res.LogitsLast != nil {
		size += 12 * len(res.LogitsLast.Data)
	}
	o := newObject(size)
	if err := o.field("model", res.Model); err != nil {
		return err
	}
	if err := o.field("tokens", res.Tokens); err != nil {
		return err
	}
	if res.Strings != nil {
		if err := o.field("strings", res.Strings); err != nil {
			return err
		}
	}
	if err := o.field("positions", res.Positions); err != nil {
		return err
	}
	if err := o.field("top", res.Top); err != nil {
		return err
	}
	if res.Activations != nil {
		keys := make([]string, 0, len(res.Activations))
		for k := range res.Activations {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		o.tensors("activations", keys, res.Activations)
	}
	if res.LogitsLast != nil {
		o.tensor("logits_last", res.LogitsLast)
	}
	o.write(w, http.StatusOK)
	return nil
}

// lastPositions is each row's last real position in a batch of T.
func lastPositions(rows [][]int, side modelctx.PadSide, T int) []int {
	pos := make([]int, len(rows))
	for b, r := range rows {
		pos[b] = len(r) - 1
		if side == modelctx.PadLeft {
			pos[b] = T - 1
		}
	}
	return pos
}

// lastLogits gathers each row's logits at its last real position: [B,V].
func lastLogits(lg *hooks.Tensor, rows [][]int, side modelctx.PadSide) *hooks.Tensor {
	T, V := lg.Shape[1], lg.Shape[2]
	out := hooks.Zeros(len(rows), V)
	for b, p := range lastPositions(rows, side, T) {
		copy(out.Data[b*V:(b+1)*V], lg.Data[(b*T+p)*V:(b*T+p+1)*V])
	}
	return out
}

// topTokens ranks each row of last [B,V].
func topTokens(last *hooks.Tensor, k int, tok tokenizer.Tokenizer) [][]topToken {
	B, V := last.Shape[0], last.Shape[1]
	res := make([][]topToken, B)
	for b := 0; b < B; b++ {
		lg := last.Data[b*V : (b+1)*V]
		res[b] = []topToken{}
		for _, id := range modelctx.TopK(lg, k) {
			tt := topToken{ID: id, Logit: lg[id]}
			if tok != nil {
				tt.Token, _ = tok.DecodeToken(id)
			}
			res[b] = append(res[b], tt)
		}
	}
	return res
}

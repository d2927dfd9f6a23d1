package serve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/onnx-tdb/onnx-tdb/analysis"
	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
)

// AnalysisWorkflows serves the analysis package's workflows — patch, lens
// and dla — with the request and answer shapes of the CLI's --json (the
// lens adds a "grid" of each position's top token and its probability,
// which the page draws).
func AnalysisWorkflows() Workflows { return analysisWorkflows{} }

type analysisWorkflows struct{}

func (analysisWorkflows) Names() []string { return []string{"patch", "lens", "dla"} }

// workflowRequest is every field the three workflows read; a text prompt
// or a row of token ids gives each prompt.
type workflowRequest struct {
	Model      string   `json:"model"`
	Prompts    []string `json:"prompts"`
	Tokens     [][]int  `json:"tokens"`
	Clean      any      `json:"clean"`     // patch: text or ids
	Corrupted  any      `json:"corrupted"` // patch: text or ids
	Point      string   `json:"point"`
	Per        string   `json:"per"`
	Metric     string   `json:"metric"`
	Target     string   `json:"target"`
	Distractor string   `json:"distractor"`
	K          int      `json:"k"`
}

func (analysisWorkflows) Run(ctx context.Context, name string, m *modelctx.Transformer, body json.RawMessage) (any, error) {
	var req workflowRequest
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return nil, badRequest(fmt.Errorf("%s request: %w", name, err))
	}
	am, err := analysis.New(m)
	if err != nil {
		return nil, badRequest(err)
	}
	var out any
	switch name {
	case "lens":
		out, err = runLens(ctx, am, m, req)
	case "dla":
		out, err = runDLA(ctx, am, m, req)
	case "patch":
		out, err = runPatch(ctx, am, m, req)
	default:
		return nil, fmt.Errorf("%w: workflow %q", ErrNotFound, name)
	}
	for _, bad := range []error{analysis.ErrMetric, analysis.ErrMissingPoint, analysis.ErrLayer, analysis.ErrTokenLength,
		analysis.ErrNoHeadAxis, analysis.ErrUndefined, analysis.ErrToken} {
		if errors.Is(err, bad) {
			return nil, badRequest(err)
		}
	}
	return out, err
}

// prompt returns the one prompt of a request as token ids.
func prompt(m *modelctx.Transformer, req workflowRequest) ([]int, error) {
	switch {
	case len(req.Tokens) == 1 && len(req.Prompts) == 0:
		return req.Tokens[0], nil
	case len(req.Prompts) == 1 && len(req.Tokens) == 0:
		return encodeAny(m, req.Prompts[0])
	}
	return nil, badRequest(errors.New("give one prompt: \"prompts\": [TEXT] or \"tokens\": [[ids]]"))
}

// encodeAny reads a prompt given as text or as a list of token ids.
func encodeAny(m *modelctx.Transformer, v any) ([]int, error) {
	switch x := v.(type) {
	case string:
		tok, err := m.Tokenizer()
		if err != nil {
			return nil, badRequest(err)
		}
		return tok.Encode(x), nil
	case []any:
		ids := make([]int, len(x))
		for i, e := range x {
			f, ok := e.(float64)
			if !ok || f != float64(int(f)) {
				return nil, badRequest(fmt.Errorf("token %d of a prompt: %v is not an id", i, e))
			}
			ids[i] = int(f)
		}
		return ids, nil
	}
	return nil, badRequest(fmt.Errorf("a prompt is text or a list of token ids, not %T", v))
}

// token parses a target or distractor: a token's text or #ID.
func token(m *modelctx.Transformer, name, spec string) (int, error) {
	encode := func(s string) ([]int, error) {
		tok, err := m.Tokenizer()
		if err != nil {
			return nil, err
		}
		return tok.Encode(s), nil
	}
	id, err := analysis.ParseToken(spec, m.Manifest().Config.NVocab, encode)
	if err != nil {
		return 0, badRequest(fmt.Errorf("%s: %w", name, err))
	}
	return id, nil
}

type lensCell struct {
	ID    int     `json:"id"`
	Token string  `json:"token"`
	Prob  float64 `json:"prob"`
}

func runLens(ctx context.Context, am *analysis.Model, m *modelctx.Transformer, req workflowRequest) (any, error) {
	toks, err := prompt(m, req)
	if err != nil {
		return nil, err
	}
	opt := analysis.LensOptions{K: req.K}
	if opt.K == 0 {
		opt.K = 5
	}
	if opt.K < 0 || opt.K > 100 {
		return nil, badRequest(fmt.Errorf("k %d: want 1 to 100", req.K))
	}
	if req.Target != "" {
		if opt.Target, err = token(m, "target", req.Target); err != nil {
			return nil, err
		}
		opt.HasTarget = true
	}
	res, err := am.Lens(ctx, toks, opt)
	if err != nil {
		return nil, err
	}
	tok, _ := m.Tokenizer()
	grid := make([][]lensCell, len(res.TopIDs))
	for l, row := range res.TopIDs {
		for t, ids := range row {
			c := lensCell{ID: ids[0], Token: fmt.Sprintf("#%d", ids[0]), Prob: res.TopProbs[l][t][0]}
			if tok != nil {
				c.Token, _ = tok.DecodeToken(ids[0])
			}
			grid[l] = append(grid[l], c)
		}
	}
	out := map[string]any{"layers": res.Labels, "grid": grid, "tokens": toks,
		"top_ids": res.TopIDs, "best_values": res.TopLogits, "top_probs": res.TopProbs}
	if opt.HasTarget {
		out["target"] = opt.Target
		out["target_logit"], out["target_prob"], out["target_rank"] = res.TargetLogit, res.TargetProb, res.TargetRank
	}
	return out, nil
}

func runDLA(ctx context.Context, am *analysis.Model, m *modelctx.Transformer, req workflowRequest) (any, error) {
	toks, err := prompt(m, req)
	if err != nil {
		return nil, err
	}
	perName := req.Per
	if perName == "" {
		perName = "head"
	}
	per, err := analysis.ParsePer(perName)
	if err != nil || per == analysis.PerPosition {
		return nil, badRequest(fmt.Errorf("per %q: want head or layer", req.Per))
	}
	metric := analysis.Metric{Kind: analysis.Logit}
	if req.Target == "" {
		return nil, badRequest(errors.New("target is required"))
	}
	if metric.Target, err = token(m, "target", req.Target); err != nil {
		return nil, err
	}
	if req.Distractor != "" {
		metric.Kind = analysis.LogitDiff
		if metric.Distractor, err = token(m, "distractor", req.Distractor); err != nil {
			return nil, err
		}
	}
	cache, err := am.Run(ctx, [][]int{toks})
	if err != nil {
		return nil, err
	}
	dec, err := cache.DecomposeResid(ctx, per)
	if err != nil {
		return nil, err
	}
	attr, err := cache.LogitAttrs(dec, metric)
	if err != nil {
		return nil, err
	}
	T := len(toks)
	values := attr.At(0, T-1)
	comps := make([]map[string]any, len(values))
	total := 0.0
	for i, v := range values {
		comps[i] = map[string]any{"label": attr.Labels[i], "value": v}
		total += v
	}
	return map[string]any{"position": T - 1, "components": comps, "total": total,
		"actual": float64(attr.Actual.Data[T-1]), "decomposition_max_error": dec.MaxError}, nil
}

func runPatch(ctx context.Context, am *analysis.Model, m *modelctx.Transformer, req workflowRequest) (any, error) {
	if req.Clean == nil || req.Corrupted == nil || req.Point == "" || req.Target == "" {
		return nil, badRequest(errors.New("patch needs clean, corrupted, point and target"))
	}
	spec := analysis.PatchSpec{}
	var err error
	if spec.Clean, err = encodeAny(m, req.Clean); err != nil {
		return nil, err
	}
	if spec.Corrupted, err = encodeAny(m, req.Corrupted); err != nil {
		return nil, err
	}
	site, err := m.ParseSite(req.Point)
	if err != nil {
		if p, perr := hooks.Parse(req.Point); perr == nil {
			site = hooks.Site{Point: p, Layer: -1}
		} else {
			return nil, badRequest(err)
		}
	} else if site.Point.PerLayer() {
		spec.Layers = []int{site.Layer}
	}
	spec.Point = site.Point
	if req.Per != "" {
		if spec.Per, err = analysis.ParsePer(req.Per); err != nil {
			return nil, badRequest(err)
		}
	}
	spec.Metric.Kind = analysis.LogitDiff
	if req.Metric != "" {
		if spec.Metric.Kind, err = analysis.ParseMetricKind(req.Metric); err != nil {
			return nil, badRequest(err)
		}
	}
	if spec.Metric.Target, err = token(m, "target", req.Target); err != nil {
		return nil, err
	}
	if spec.Metric.Kind == analysis.LogitDiff {
		if req.Distractor == "" {
			return nil, badRequest(errors.New("metric logit-diff needs a distractor"))
		}
		if spec.Metric.Distractor, err = token(m, "distractor", req.Distractor); err != nil {
			return nil, err
		}
	}
	res, err := am.Patch(ctx, spec)
	if err != nil {
		return nil, err
	}
	return map[string]any{"point": res.Point.Path(), "layers": res.Layers, "cols": res.Cols,
		"table": res.Raw, "normalized": res.Normalized, "clean": res.Clean, "corrupted": res.Corrupted}, nil
}

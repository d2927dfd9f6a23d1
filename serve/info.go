package serve

import (
	"net/http"

	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
)

// modelInfo is one entry of GET /v1/models.
type modelInfo struct {
	Name         string   `json:"name"`
	Architecture string   `json:"architecture"`
	NLayers      int      `json:"n_layers"`
	DModel       int      `json:"d_model"`
	NHeads       int      `json:"n_heads"`
	DFF          int      `json:"d_ff"`
	NVocab       int      `json:"n_vocab"`
	NCtx         int      `json:"n_ctx"`
	Tokenizer    bool     `json:"tokenizer"`
	Points       []string `json:"points"` // dot paths the model has, in call order
	Sites        []string `json:"sites"`  // every POINT@LAYER / POINT, in call order
}

// describe reads what the page and clients need to know of a model; the
// one place that reads the manifest's configuration.
func describe(name string, m *modelctx.Transformer) modelInfo {
	man := m.Manifest()
	cfg := man.Config
	info := modelInfo{
		Name: name, Architecture: man.Architecture, NLayers: m.NLayers(),
		DModel: cfg.DModel, NHeads: cfg.NHeads, DFF: cfg.DFF, NVocab: cfg.NVocab, NCtx: cfg.NCtx,
		Tokenizer: man.Tokenizer != "", Points: []string{}, Sites: []string{},
	}
	seen := map[hooks.Point]bool{}
	for _, s := range m.Sites() {
		info.Sites = append(info.Sites, s.String())
		if !seen[s.Point] {
			seen[s.Point] = true
			info.Points = append(info.Points, s.Point.Path())
		}
	}
	return info
}

// pointWidth is the size of a point's last axis in the model (0: unknown).
func pointWidth(m *modelctx.Transformer, p hooks.Point) int {
	shape := p.Shape()
	switch last := shape[len(shape)-1]; last {
	case hooks.FF, hooks.Model, hooks.HeadDim:
		return m.Manifest().Config.Size(last)
	}
	return 0
}

type saeInfo struct {
	Name       string `json:"name"`
	NInputs    int    `json:"n_inputs"`
	NLatents   int    `json:"n_latents"`
	Activation string `json:"activation"`
	Source     string `json:"source"`
}

// capabilities says which data sources exist, so the page shows only the
// views it can fill.
type capabilities struct {
	Models    []string  `json:"models"`
	SAEs      []saeInfo `json:"saes"`
	Records   []string  `json:"records"`
	Workflows []string  `json:"workflows"`
	Auth      bool      `json:"auth"`
}

func (s *Server) capabilities() capabilities {
	c := capabilities{Models: s.modelNames, SAEs: []saeInfo{}, Records: []string{}, Workflows: []string{}, Auth: s.token != ""}
	for _, n := range s.saeNames {
		ae := s.saes[n]
		c.SAEs = append(c.SAEs, saeInfo{Name: n, NInputs: ae.NInputs, NLatents: ae.NLatents, Activation: ae.Activation.String(), Source: ae.Source})
	}
	c.Records = append(c.Records, s.recordNames...)
	if s.workflows != nil {
		c.Workflows = append(c.Workflows, s.workflows.Names()...)
	}
	return c
}

func (s *Server) handleModels(w http.ResponseWriter, r *http.Request) error {
	var out struct {
		Models []modelInfo `json:"models"`
		capabilities
	}
	for _, n := range s.modelNames {
		out.Models = append(out.Models, describe(n, s.models[n]))
	}
	out.capabilities = s.capabilities()
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) handleCapabilities(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, s.capabilities())
	return nil
}

package export

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/onnx-tdb/onnx-tdb/hooks"
)

// ErrHookMap is returned for a hook map that cannot be used.
var ErrHookMap = errors.New("bad hook map")

// HookMap is the JSON file that says where an ONNX transformer carries each
// hook point: for every point and layer, the name of the tensor that holds
// its value, and the permutation that turns that tensor into the reference
// layout when the graph's layout differs. Keys this package does not read
// are ignored, so a richer map (with provenance, tolerances, ...) is
// accepted as it is.
type HookMap struct {
	NLayers int             `json:"n_layers"`
	Inputs  []HookMapIO     `json:"inputs"`
	Outputs []HookMapIO     `json:"outputs"`
	Config  map[string]any  `json:"config"` // optional dimensions (vocab, d_model, n_heads, d_ff, n_ctx, ...)
	Points  []HookMapPoint  `json:"points"`
	Weights []HookMapWeight `json:"initializers"` // optional: the checkpoint key each initializer holds
}

// HookMapIO names a graph input or output.
type HookMapIO struct {
	Name  string `json:"name"`
	DType string `json:"dtype"`
	Shape []any  `json:"shape"`
}

// HookMapPoint is one entry of points[]: the point is named by "hook" (a TDB
// dot path) or "point" (the model's own name, resolved to a TDB point by
// ImportOptions.Map, its "tdb_analogue", or the names KnownPointNames
// lists).
type HookMapPoint struct {
	Hook        string `json:"hook"`
	Point       string `json:"point"`
	Layer       *int   `json:"layer"`
	Tensor      string `json:"tensor"`
	TDBAnalogue string `json:"tdb_analogue"`
	Layout      struct {
		Perm []int `json:"perm_onnx_to_reference"`
	} `json:"layout"`
}

// Name is the entry's point name ("hook" when present, else "point").
func (p HookMapPoint) Name() string {
	if p.Hook != "" {
		return p.Hook
	}
	return p.Point
}

// HookMapWeight says which checkpoint key an initializer holds.
type HookMapWeight struct {
	Initializer  string `json:"initializer"`
	StateDictKey string `json:"state_dict_key"`
	Transform    string `json:"transform"` // "none" or "transpose"
}

// ReadHookMap reads and checks a hook map file.
func ReadHookMap(path string) (*HookMap, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read hook map: %w", err)
	}
	var hm HookMap
	if err := json.Unmarshal(b, &hm); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrHookMap, path, err)
	}
	if len(hm.Points) == 0 {
		return nil, fmt.Errorf("%w: %s has no points[]", ErrHookMap, path)
	}
	for i, p := range hm.Points {
		switch {
		case p.Name() == "":
			return nil, fmt.Errorf("%w: %s: points[%d] names no point (\"hook\" or \"point\")", ErrHookMap, path, i)
		case p.Tensor == "":
			return nil, fmt.Errorf("%w: %s: points[%d] (%s) has no tensor", ErrHookMap, path, i, p.Name())
		case p.Layer != nil && *p.Layer < 0:
			return nil, fmt.Errorf("%w: %s: points[%d] (%s) has layer %d", ErrHookMap, path, i, p.Name(), *p.Layer)
		}
		if err := checkPerm(p.Layout.Perm); err != nil {
			return nil, fmt.Errorf("%w: %s: points[%d] (%s): %v", ErrHookMap, path, i, p.Name(), err)
		}
	}
	for _, w := range hm.Weights {
		if w.Transform != "" && w.Transform != "none" && w.Transform != "transpose" {
			return nil, fmt.Errorf("%w: %s: initializer %s has transform %q (want none or transpose)", ErrHookMap, path, w.Initializer, w.Transform)
		}
	}
	return &hm, nil
}

func checkPerm(perm []int) error {
	seen := make([]bool, len(perm))
	for _, p := range perm {
		if p < 0 || p >= len(perm) || seen[p] {
			return fmt.Errorf("perm_onnx_to_reference %v is not a permutation", perm)
		}
		seen[p] = true
	}
	return nil
}

// BlockInput is the target a model's own point name can map to when it
// names the input of a residual block: resid.post_emb at layer 0, and
// resid.torso.post_mlp of the layer before at every later layer.
const BlockInput = "block_input"

// KnownPointNames maps point names that hook maps commonly use to TDB dot
// paths (or BlockInput). An entry's own tdb_analogue and ImportOptions.Map
// come first.
var KnownPointNames = map[string]string{
	"resid_pre":  BlockInput,
	"attn_out":   "resid.torso.delta_attn",
	"resid_mid":  "resid.torso.post_attn",
	"mlp_hidden": "mlp.post_act",
	"mlp_out":    "resid.torso.delta_mlp",
	"resid_post": "resid.torso.post_mlp",
	"final_norm": "resid.post_ln_f",
	"logits":     "logits",
}

// resolvePoint finds the TDB site of a hook-map entry. ok is false when the
// entry has no TDB analogue (or the caller dropped it with "-").
func resolvePoint(p HookMapPoint, explicit map[string]string) (site hooks.Site, ok bool, err error) {
	name := p.Name()
	target, given := explicit[name]
	if !given {
		if _, err := hooks.Parse(name); err == nil {
			target = name
		} else if first := analogueHead(p.TDBAnalogue); first != "" {
			target = first
		} else {
			target = KnownPointNames[name]
		}
	}
	if target == "" || target == "-" {
		return hooks.Site{}, false, nil
	}
	if target == BlockInput {
		if p.Layer == nil {
			return hooks.Site{}, false, fmt.Errorf("%s maps to %s, which needs a layer", name, BlockInput)
		}
		return hooks.ResidualInto(*p.Layer), true, nil
	}
	pt, err := hooks.Parse(target)
	if err != nil {
		return hooks.Site{}, false, fmt.Errorf("%s maps to %q: %w", name, target, err)
	}
	if pt.IsSAE() {
		return hooks.Site{}, false, fmt.Errorf("%s maps to %s, an autoencoder point", name, pt)
	}
	if pt.PerLayer() != (p.Layer != nil) {
		if !given && target != name {
			// An analogue that does not fit (a once point for a per-layer
			// name, say) is no mapping at all.
			return hooks.Site{}, false, nil
		}
		return hooks.Site{}, false, fmt.Errorf("%s maps to %s (per layer: %v), but its entry has layer %v", name, pt, pt.PerLayer(), fmtLayer(p.Layer))
	}
	layer := -1
	if p.Layer != nil {
		layer = *p.Layer
	}
	return hooks.Site{Point: pt, Layer: layer}, true, nil
}

// analogueHead returns the TDB dot path a tdb_analogue text starts with
// ("mlp.post_act (here ...)" gives mlp.post_act), or "".
func analogueHead(s string) string {
	f := strings.Fields(s)
	if len(f) == 0 {
		return ""
	}
	if _, err := hooks.Parse(f[0]); err != nil {
		return ""
	}
	return f[0]
}

func fmtLayer(l *int) string {
	if l == nil {
		return "null"
	}
	return fmt.Sprint(*l)
}

package tlnames

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"sync"

	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/sae"
)

// Errors of resolving a name.
var (
	ErrUnknownName = errors.New("not a TransformerLens hook name of this model")
	ErrLayout      = errors.New("TransformerLens lays this hook out differently; not supported as a site")
)

// Weights reads the checkpoint tensors the maps need (b_V, W_V, ln_1's
// bias); modelctx.ONNXModelContext has it.
type Weights interface {
	Tensor(key string) (*hooks.Tensor, error)
}

// Model is what the resolver knows of the model.
type Model struct {
	NLayers, NHeads, DHead, DModel int
	Weights                        Weights
}

// Resolver is the sae.Resolver of a GPT-2 model: TL names with the given
// processing onto TDB sites and maps. Value-bias shifts are read once per
// layer and kept.
func Resolver(m Model) sae.Resolver {
	r := &resolver{m: m, bias: map[biasKey][]float32{}}
	return r.resolve
}

type resolver struct {
	m    Model
	mu   sync.Mutex
	bias map[biasKey][]float32
}

type biasKey struct {
	layer  int
	foldLN bool
}

var blockName = regexp.MustCompile(`^blocks\.(\d+)\.(.+)$`)

// IsName reports whether s looks like a TransformerLens hook name (so a
// caller can tell it from TDB's dot paths before resolving).
func IsName(s string) bool {
	if blockName.MatchString(s) {
		return true
	}
	switch s {
	case "ln_final.hook_scale", "ln_final.hook_normalized", "hook_embed", "hook_pos_embed":
		return true
	}
	return false
}

func (r *resolver) resolve(name string, p sae.Processing) (hooks.Site, *sae.SiteMap, error) {
	site := func(pt hooks.Point, l int) hooks.Site { return hooks.Site{Point: pt, Layer: l} }
	var centred *sae.SiteMap
	if p.CenterWritingWeights {
		centred = &sae.SiteMap{Center: true}
	}
	switch name {
	case "ln_final.hook_scale":
		return site(hooks.Resid.LnF.Scale, -1), nil, nil
	case "ln_final.hook_normalized":
		if p.FoldLN {
			return site(hooks.Resid.LnF.PostScale, -1), nil, nil
		}
		return site(hooks.Resid.PostLnF, -1), nil, nil
	}
	mt := blockName.FindStringSubmatch(name)
	if mt == nil {
		return hooks.Site{}, nil, fmt.Errorf("%w: %q", ErrUnknownName, name)
	}
	l, err := strconv.Atoi(mt[1])
	if err != nil || l < 0 || l >= r.m.NLayers {
		return hooks.Site{}, nil, fmt.Errorf("%w: %q (the model has layers 0..%d)", ErrUnknownName, name, r.m.NLayers-1)
	}
	switch mt[2] {
	case "hook_resid_pre":
		if l == 0 {
			return site(hooks.Resid.PostEmb, -1), centred, nil
		}
		return site(hooks.Resid.Torso.PostMLP, l-1), centred, nil
	case "ln1.hook_scale":
		return site(hooks.Resid.Torso.LnAttn.Scale, l), nil, nil
	case "ln1.hook_normalized":
		if p.FoldLN {
			return site(hooks.Resid.Torso.LnAttn.PostScale, l), nil, nil
		}
		return site(hooks.Resid.Torso.PostLnAttn, l), nil, nil
	case "attn.hook_q", "attn.hook_k":
		pt := hooks.Attn.Q
		if mt[2] == "attn.hook_k" {
			pt = hooks.Attn.K
		}
		// TDB scales q and k by d_head^(-1/4) each; TL scales the scores.
		return site(pt, l), &sae.SiteMap{Scale: float32(math.Pow(float64(r.m.DHead), 0.25))}, nil
	case "attn.hook_v", "attn.hook_z":
		pt := hooks.Attn.V
		if mt[2] == "attn.hook_z" {
			pt = hooks.Attn.VOut
		}
		if !p.FoldValueBiases {
			return site(pt, l), nil, nil
		}
		b, err := r.valueBias(l, p.FoldLN)
		if err != nil {
			return hooks.Site{}, nil, fmt.Errorf("%s: %w", name, err)
		}
		return site(pt, l), &sae.SiteMap{Shift: b}, nil
	case "attn.hook_attn_scores", "attn.hook_pattern":
		return hooks.Site{}, nil, fmt.Errorf("%w: %s is [B,H,Q,K] in TL, [B,Q,K,H] in TDB (use attn.qk_logits@%d / attn.qk_probs@%d)", ErrLayout, name, l, l)
	case "hook_attn_out":
		return site(hooks.Resid.Torso.DeltaAttn, l), centred, nil
	case "hook_resid_mid":
		return site(hooks.Resid.Torso.PostAttn, l), centred, nil
	case "ln2.hook_scale":
		return site(hooks.Resid.Torso.LnMLP.Scale, l), nil, nil
	case "ln2.hook_normalized", "mlp.hook_in":
		if p.FoldLN {
			return site(hooks.Resid.Torso.LnMLP.PostScale, l), nil, nil
		}
		return site(hooks.Resid.Torso.PostLnMLP, l), nil, nil
	case "mlp.hook_pre":
		return site(hooks.MLP.PreAct, l), nil, nil
	case "mlp.hook_post":
		return site(hooks.MLP.PostAct, l), nil, nil
	case "hook_mlp_out":
		return site(hooks.Resid.Torso.DeltaMLP, l), centred, nil
	case "hook_resid_post":
		return site(hooks.Resid.Torso.PostMLP, l), centred, nil
	}
	return hooks.Site{}, nil, fmt.Errorf("%w: %q", ErrUnknownName, name)
}

// valueBias is the value bias TL's fold_value_biases moves into b_O, per
// head, flattened to [H·dh]: b_V, plus W_V · ln_1.bias when fold_ln has
// folded ln_1's bias into b_V first.
func (r *resolver) valueBias(layer int, foldLN bool) ([]float32, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	key := biasKey{layer, foldLN}
	if b, ok := r.bias[key]; ok {
		return b, nil
	}
	if r.m.Weights == nil {
		return nil, errors.New("no model weights to read the value bias from")
	}
	pre := fmt.Sprintf("xf_layers.%d.", layer)
	bv, err := r.m.Weights.Tensor(pre + "attn.v_proj.bias")
	if err != nil {
		return nil, err
	}
	hd := r.m.NHeads * r.m.DHead
	if len(bv.Data) != hd {
		return nil, fmt.Errorf("value bias has %d values, want %d", len(bv.Data), hd)
	}
	out := append([]float32(nil), bv.Data...)
	if foldLN {
		w, err := r.m.Weights.Tensor(pre + "attn.v_proj.weight")
		if err != nil {
			return nil, err
		}
		lb, err := r.m.Weights.Tensor(pre + "ln_1.bias")
		if err != nil {
			return nil, err
		}
		d := len(lb.Data)
		if len(w.Data) != hd*d {
			return nil, fmt.Errorf("value weight has %d values, want %d×%d", len(w.Data), hd, d)
		}
		// nn.Linear layout [out, in].
		for o := 0; o < hd; o++ {
			var s float64
			for i, v := range lb.Data {
				s += float64(w.Data[o*d+i]) * float64(v)
			}
			out[o] += float32(s)
		}
	}
	r.bias[key] = out
	return out, nil
}

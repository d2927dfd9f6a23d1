// Package hooks is the hook tree of the original Transformer Debugger in Go
// terms: every hook location as a typed value with its dot path and its shape
// in dimension terms, and a registry of functions attached to those locations
// (writers that may edit a tensor, observers that only read it), with layer
// filters, bound context values and removal handles.
//
// The package knows nothing of ONNX Runtime: runtime/ asks a Hooks value which
// points are written and which are only read, plans its graphs accordingly, and
// calls back into it between graph segments.
package hooks

import (
	"errors"
	"fmt"
	"strings"
)

// ErrUnknownPoint is returned for a dot path that names no hook point.
var ErrUnknownPoint = errors.New("unknown hook point")

// Dim is a symbolic dimension of a hook point's tensor.
type Dim string

// The dimensions hook tensors are laid out in (spec §3.2).
const (
	Batch    Dim = "batch"
	Seq      Dim = "seq"       // query tokens of this call (T)
	Keys     Dim = "keys"      // attended-to tokens: cached + new (Tk)
	Model    Dim = "d_model"   // residual stream channels (D)
	Heads    Dim = "heads"     // attention heads (H)
	HeadDim  Dim = "d_head"    // channels per head (dh)
	FF       Dim = "d_ff"      // MLP neurons (F)
	Vocab    Dim = "vocab"     // vocabulary (V)
	One      Dim = "one"       // a singleton axis (LayerNorm scale, softmax denominator)
	Latents  Dim = "latents"   // SAE latents (N)
	SAEInput Dim = "sae_input" // the width of the SAE's input point (n)
)

// Point is one hook location of the tree. Its zero value is not a point.
type Point int

// Every hook point, in the order the original calls them within one forward
// pass (spec §3.3): the once point resid.post_emb, then per layer the 21 layer
// points, then the final LayerNorm points and the logits. The SAE points exist
// only where an autoencoder is spliced in; they run at the SAE's input point.
const (
	invalid Point = iota
	ResidPostEmb
	LnAttnPostMeanSubtraction
	LnAttnScale
	LnAttnPostScale
	PostLnAttn
	AttnQ
	AttnK
	AttnV
	AttnQKLogits
	AttnQKSoftmaxDenominator
	AttnQKProbs
	AttnVOut
	DeltaAttn
	PostAttn
	LnMLPPostMeanSubtraction
	LnMLPScale
	LnMLPPostScale
	PostLnMLP
	MLPPreAct
	MLPPostAct
	DeltaMLP
	PostMLP
	LnFPostMeanSubtraction
	LnFScale
	LnFPostScale
	PostLnF
	LogitsPoint
	SAELatents
	SAEReconstruction
	SAEError
	numPoints
)

type pointInfo struct {
	path     string
	perLayer bool
	shape    []Dim
	sae      bool
}

var infos = [numPoints]pointInfo{
	ResidPostEmb:              {"resid.post_emb", false, []Dim{Batch, Seq, Model}, false},
	LnAttnPostMeanSubtraction: {"resid.torso.ln_attn.post_mean_subtraction", true, []Dim{Batch, Seq, Model}, false},
	LnAttnScale:               {"resid.torso.ln_attn.scale", true, []Dim{Batch, Seq, One}, false},
	LnAttnPostScale:           {"resid.torso.ln_attn.post_scale", true, []Dim{Batch, Seq, Model}, false},
	PostLnAttn:                {"resid.torso.post_ln_attn", true, []Dim{Batch, Seq, Model}, false},
	AttnQ:                     {"attn.q", true, []Dim{Batch, Seq, Heads, HeadDim}, false},
	AttnK:                     {"attn.k", true, []Dim{Batch, Keys, Heads, HeadDim}, false},
	AttnV:                     {"attn.v", true, []Dim{Batch, Keys, Heads, HeadDim}, false},
	AttnQKLogits:              {"attn.qk_logits", true, []Dim{Batch, Seq, Keys, Heads}, false},
	AttnQKSoftmaxDenominator:  {"attn.qk_softmax_denominator", true, []Dim{Batch, Seq, One, Heads}, false},
	AttnQKProbs:               {"attn.qk_probs", true, []Dim{Batch, Seq, Keys, Heads}, false},
	AttnVOut:                  {"attn.v_out", true, []Dim{Batch, Seq, Heads, HeadDim}, false},
	DeltaAttn:                 {"resid.torso.delta_attn", true, []Dim{Batch, Seq, Model}, false},
	PostAttn:                  {"resid.torso.post_attn", true, []Dim{Batch, Seq, Model}, false},
	LnMLPPostMeanSubtraction:  {"resid.torso.ln_mlp.post_mean_subtraction", true, []Dim{Batch, Seq, Model}, false},
	LnMLPScale:                {"resid.torso.ln_mlp.scale", true, []Dim{Batch, Seq, One}, false},
	LnMLPPostScale:            {"resid.torso.ln_mlp.post_scale", true, []Dim{Batch, Seq, Model}, false},
	PostLnMLP:                 {"resid.torso.post_ln_mlp", true, []Dim{Batch, Seq, Model}, false},
	MLPPreAct:                 {"mlp.pre_act", true, []Dim{Batch, Seq, FF}, false},
	MLPPostAct:                {"mlp.post_act", true, []Dim{Batch, Seq, FF}, false},
	DeltaMLP:                  {"resid.torso.delta_mlp", true, []Dim{Batch, Seq, Model}, false},
	PostMLP:                   {"resid.torso.post_mlp", true, []Dim{Batch, Seq, Model}, false},
	LnFPostMeanSubtraction:    {"resid.ln_f.post_mean_subtraction", false, []Dim{Batch, Seq, Model}, false},
	LnFScale:                  {"resid.ln_f.scale", false, []Dim{Batch, Seq, One}, false},
	LnFPostScale:              {"resid.ln_f.post_scale", false, []Dim{Batch, Seq, Model}, false},
	PostLnF:                   {"resid.post_ln_f", false, []Dim{Batch, Seq, Model}, false},
	LogitsPoint:               {"logits", false, []Dim{Batch, Seq, Vocab}, false},
	SAELatents:                {"sae.latents", true, []Dim{Batch, Seq, Latents}, true},
	SAEReconstruction:         {"sae.reconstruction", true, []Dim{Batch, Seq, SAEInput}, true},
	SAEError:                  {"sae.error", true, []Dim{Batch, Seq, SAEInput}, true},
}

var byPath = func() map[string]Point {
	m := make(map[string]Point, numPoints)
	for p := Point(1); p < numPoints; p++ {
		m[infos[p].path] = p
	}
	return m
}()

// The tree of the original, for registration by value: hooks.MLP.PostAct,
// hooks.Attn.QKProbs, hooks.Resid.Torso.LnAttn.Scale, hooks.Logits.
var (
	Resid = struct {
		PostEmb Point
		Torso   struct {
			LnAttn     LayerNormPoints
			PostLnAttn Point
			DeltaAttn  Point
			PostAttn   Point
			LnMLP      LayerNormPoints
			PostLnMLP  Point
			DeltaMLP   Point
			PostMLP    Point
		}
		LnF     LayerNormPoints
		PostLnF Point
	}{
		PostEmb: ResidPostEmb,
		Torso: struct {
			LnAttn     LayerNormPoints
			PostLnAttn Point
			DeltaAttn  Point
			PostAttn   Point
			LnMLP      LayerNormPoints
			PostLnMLP  Point
			DeltaMLP   Point
			PostMLP    Point
		}{
			LnAttn:     LayerNormPoints{LnAttnPostMeanSubtraction, LnAttnScale, LnAttnPostScale},
			PostLnAttn: PostLnAttn,
			DeltaAttn:  DeltaAttn,
			PostAttn:   PostAttn,
			LnMLP:      LayerNormPoints{LnMLPPostMeanSubtraction, LnMLPScale, LnMLPPostScale},
			PostLnMLP:  PostLnMLP,
			DeltaMLP:   DeltaMLP,
			PostMLP:    PostMLP,
		},
		LnF:     LayerNormPoints{LnFPostMeanSubtraction, LnFScale, LnFPostScale},
		PostLnF: PostLnF,
	}
	Attn = struct {
		Q, K, V, QKLogits, QKSoftmaxDenominator, QKProbs, VOut Point
	}{AttnQ, AttnK, AttnV, AttnQKLogits, AttnQKSoftmaxDenominator, AttnQKProbs, AttnVOut}
	MLP = struct {
		PreAct, PostAct Point
	}{MLPPreAct, MLPPostAct}
	SAE = struct {
		Latents, Reconstruction, Error Point
	}{SAELatents, SAEReconstruction, SAEError}
	Logits = LogitsPoint
)

// LayerNormPoints are the three points inside one LayerNorm.
type LayerNormPoints struct {
	PostMeanSubtraction, Scale, PostScale Point
}

// Parse returns the point with this dot path ("mlp.post_act").
func Parse(path string) (Point, error) {
	if p, ok := byPath[path]; ok {
		return p, nil
	}
	return invalid, fmt.Errorf("%w %q (see hooks.Points for the list)", ErrUnknownPoint, path)
}

// Points lists the 27 points of the model, in call order (the SAE points are
// not included: they exist only where an autoencoder is spliced in).
func Points() []Point {
	ps := make([]Point, 0, LogitsPoint)
	for p := ResidPostEmb; p <= LogitsPoint; p++ {
		ps = append(ps, p)
	}
	return ps
}

// Valid reports whether p is a point of the tree.
func (p Point) Valid() bool { return p > invalid && p < numPoints }

// Path is the dot path of the original ("resid.torso.delta_mlp").
func (p Point) Path() string {
	if !p.Valid() {
		return fmt.Sprintf("hooks.Point(%d)", int(p))
	}
	return infos[p].path
}

// String is the dot path.
func (p Point) String() string { return p.Path() }

// PerLayer reports whether the point exists once per layer (true) or once per
// forward pass (false: resid.post_emb, resid.ln_f.*, resid.post_ln_f, logits).
func (p Point) PerLayer() bool { return p.Valid() && infos[p].perLayer }

// Shape is the point's tensor layout in dimension terms, batch first.
func (p Point) Shape() []Dim {
	if !p.Valid() {
		return nil
	}
	return append([]Dim(nil), infos[p].shape...)
}

// IsSAE reports whether the point belongs to a spliced autoencoder.
func (p Point) IsSAE() bool { return p.Valid() && infos[p].sae }

// FileName is the canonical activation file stem: "<dot path>.L<layer>" for
// per-layer points and "<dot path>" for once points.
func (p Point) FileName(layer int) string {
	if p.PerLayer() {
		return fmt.Sprintf("%s.L%d", p.Path(), layer)
	}
	return p.Path()
}

// Site is one point at one layer (Layer is -1 for once points).
type Site struct {
	Point Point
	Layer int
}

func (s Site) String() string {
	if s.Point.PerLayer() {
		return fmt.Sprintf("%s@%d", s.Point.Path(), s.Layer)
	}
	return s.Point.Path()
}

// Order is the position of the site in one forward pass of a model with
// nLayers layers: sites with a lower order are called first.
func (s Site) Order(nLayers int) int {
	const perLayer = int(numPoints)
	switch {
	case s.Point == ResidPostEmb:
		return 0
	case s.Point.PerLayer():
		return (1+s.Layer)*perLayer + int(s.Point)
	default:
		return (1+nLayers)*perLayer + int(s.Point)
	}
}

// ParseSite parses "POINT" or "POINT@LAYER" (the CLI form).
func ParseSite(s string) (Site, error) {
	path, layerStr, hasLayer := strings.Cut(s, "@")
	p, err := Parse(path)
	if err != nil {
		return Site{}, err
	}
	if !p.PerLayer() {
		if hasLayer {
			return Site{}, fmt.Errorf("hook point %s exists once per pass and takes no @layer", path)
		}
		return Site{Point: p, Layer: -1}, nil
	}
	if !hasLayer {
		return Site{}, fmt.Errorf("hook point %s is per layer: write %s@LAYER", path, path)
	}
	var layer int
	if _, err := fmt.Sscanf(layerStr, "%d", &layer); err != nil || layer < 0 || fmt.Sprint(layer) != layerStr {
		return Site{}, fmt.Errorf("hook point %s: bad layer %q", path, layerStr)
	}
	return Site{Point: p, Layer: layer}, nil
}

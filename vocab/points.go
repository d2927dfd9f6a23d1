package vocab

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// ErrUnknownPoint is returned for a dot path that names no hook point.
var ErrUnknownPoint = errors.New("unknown hook point")

// Dim is a symbolic dimension of a hook point's tensor.
type Dim string

// The dimensions hook tensors are laid out in (docs/behaviour.md §3.2).
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
// pass (docs/behaviour.md §3.3): the once point resid.post_emb, then per layer the 21 layer
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
	rank     float64 // call order within its part of the pass
}

var builtin = [numPoints]pointInfo{
	ResidPostEmb:              {"resid.post_emb", false, []Dim{Batch, Seq, Model}, false, 0},
	LnAttnPostMeanSubtraction: {"resid.torso.ln_attn.post_mean_subtraction", true, []Dim{Batch, Seq, Model}, false, 0},
	LnAttnScale:               {"resid.torso.ln_attn.scale", true, []Dim{Batch, Seq, One}, false, 0},
	LnAttnPostScale:           {"resid.torso.ln_attn.post_scale", true, []Dim{Batch, Seq, Model}, false, 0},
	PostLnAttn:                {"resid.torso.post_ln_attn", true, []Dim{Batch, Seq, Model}, false, 0},
	AttnQ:                     {"attn.q", true, []Dim{Batch, Seq, Heads, HeadDim}, false, 0},
	AttnK:                     {"attn.k", true, []Dim{Batch, Keys, Heads, HeadDim}, false, 0},
	AttnV:                     {"attn.v", true, []Dim{Batch, Keys, Heads, HeadDim}, false, 0},
	AttnQKLogits:              {"attn.qk_logits", true, []Dim{Batch, Seq, Keys, Heads}, false, 0},
	AttnQKSoftmaxDenominator:  {"attn.qk_softmax_denominator", true, []Dim{Batch, Seq, One, Heads}, false, 0},
	AttnQKProbs:               {"attn.qk_probs", true, []Dim{Batch, Seq, Keys, Heads}, false, 0},
	AttnVOut:                  {"attn.v_out", true, []Dim{Batch, Seq, Heads, HeadDim}, false, 0},
	DeltaAttn:                 {"resid.torso.delta_attn", true, []Dim{Batch, Seq, Model}, false, 0},
	PostAttn:                  {"resid.torso.post_attn", true, []Dim{Batch, Seq, Model}, false, 0},
	LnMLPPostMeanSubtraction:  {"resid.torso.ln_mlp.post_mean_subtraction", true, []Dim{Batch, Seq, Model}, false, 0},
	LnMLPScale:                {"resid.torso.ln_mlp.scale", true, []Dim{Batch, Seq, One}, false, 0},
	LnMLPPostScale:            {"resid.torso.ln_mlp.post_scale", true, []Dim{Batch, Seq, Model}, false, 0},
	PostLnMLP:                 {"resid.torso.post_ln_mlp", true, []Dim{Batch, Seq, Model}, false, 0},
	MLPPreAct:                 {"mlp.pre_act", true, []Dim{Batch, Seq, FF}, false, 0},
	MLPPostAct:                {"mlp.post_act", true, []Dim{Batch, Seq, FF}, false, 0},
	DeltaMLP:                  {"resid.torso.delta_mlp", true, []Dim{Batch, Seq, Model}, false, 0},
	PostMLP:                   {"resid.torso.post_mlp", true, []Dim{Batch, Seq, Model}, false, 0},
	LnFPostMeanSubtraction:    {"resid.ln_f.post_mean_subtraction", false, []Dim{Batch, Seq, Model}, false, 0},
	LnFScale:                  {"resid.ln_f.scale", false, []Dim{Batch, Seq, One}, false, 0},
	LnFPostScale:              {"resid.ln_f.post_scale", false, []Dim{Batch, Seq, Model}, false, 0},
	PostLnF:                   {"resid.post_ln_f", false, []Dim{Batch, Seq, Model}, false, 0},
	LogitsPoint:               {"logits", false, []Dim{Batch, Seq, Vocab}, false, 0},
	SAELatents:                {"sae.latents", true, []Dim{Batch, Seq, Latents}, true, 0},
	SAEReconstruction:         {"sae.reconstruction", true, []Dim{Batch, Seq, SAEInput}, true, 0},
	SAEError:                  {"sae.error", true, []Dim{Batch, Seq, SAEInput}, true, 0},
}

// pointTable is the immutable table of every point: the original's and those
// architectures registered. Registration swaps in a new table, so reading
// one needs no lock.
type pointTable struct {
	infos  []pointInfo
	byPath map[string]Point
	index  []int // position of each point in call order
}

var table atomic.Pointer[pointTable]

var registerMu sync.Mutex

func init() {
	infos := builtin[:]
	for p := range infos {
		infos[p].rank = float64(p)
	}
	table.Store(newTable(infos))
}

func newTable(infos []pointInfo) *pointTable {
	t := &pointTable{infos: infos, byPath: make(map[string]Point, len(infos)), index: make([]int, len(infos))}
	order := make([]int, 0, len(infos))
	for p := 1; p < len(infos); p++ {
		t.byPath[infos[p].path] = Point(p)
		order = append(order, p)
	}
	sort.SliceStable(order, func(i, j int) bool { return infos[order[i]].rank < infos[order[j]].rank })
	for i, p := range order {
		t.index[p] = i + 1
	}
	return t
}

// ErrPointExists is returned when an architecture registers a dot path that
// is taken.
var ErrPointExists = errors.New("hook point exists")

// PointSpec describes a point an architecture adds to the vocabulary, for
// what its graphs compute that has no point of the original.
type PointSpec struct {
	Path     string // dot path, e.g. "mlp.up"
	PerLayer bool
	Shape    []Dim // batch first
	// After is the point this one is called right after (in the same part of
	// the pass: per layer for per-layer points).
	After Point
}

// RegisterPoint adds a point to the vocabulary and returns it. Registering
// the same spec again returns the same point, so plugins may register in
// init and tests may run twice; another spec under a taken path, or any
// path of the original's points, is ErrPointExists.
func RegisterPoint(spec PointSpec) (Point, error) {
	registerMu.Lock()
	defer registerMu.Unlock()
	old := table.Load()
	if p, ok := old.byPath[spec.Path]; ok {
		in := old.infos[p]
		if p >= numPoints && in.perLayer == spec.PerLayer && fmt.Sprint(in.shape) == fmt.Sprint(spec.Shape) && !in.sae {
			return p, nil
		}
		return invalid, fmt.Errorf("%w: %s", ErrPointExists, spec.Path)
	}
	if spec.Path == "" || strings.ContainsAny(spec.Path, "@: ,;=") {
		return invalid, fmt.Errorf("register hook point %q: a dot path without @ : , ; = or spaces", spec.Path)
	}
	if !spec.After.Valid() || spec.After.PerLayer() != spec.PerLayer || spec.After.IsSAE() {
		return invalid, fmt.Errorf("register hook point %s: After must be a point of the same kind (per layer or once)", spec.Path)
	}
	if len(spec.Shape) < 2 || spec.Shape[0] != Batch {
		return invalid, fmt.Errorf("register hook point %s: shape %v must start with batch and a token axis", spec.Path, spec.Shape)
	}
	// Between After and the next point in call order.
	after := old.infos[spec.After].rank
	next := after + 1
	for _, in := range old.infos[1:] {
		if in.rank > after && in.rank < next {
			next = in.rank
		}
	}
	infos := append(append([]pointInfo(nil), old.infos...), pointInfo{
		path: spec.Path, perLayer: spec.PerLayer, shape: append([]Dim(nil), spec.Shape...), rank: (after + next) / 2,
	})
	table.Store(newTable(infos))
	return Point(len(infos) - 1), nil
}

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
	if p, ok := table.Load().byPath[path]; ok {
		return p, nil
	}
	return invalid, fmt.Errorf("%w %q (see hooks.Points for the list)", ErrUnknownPoint, path)
}

// TDBPoints lists the original's 27 points, in call order (the SAE points
// are not included: they exist only where an autoencoder is spliced in).
func TDBPoints() []Point {
	ps := make([]Point, 0, LogitsPoint)
	for p := ResidPostEmb; p <= LogitsPoint; p++ {
		ps = append(ps, p)
	}
	return ps
}

// Points lists every point of the vocabulary, the original's and those
// architectures registered, in call order, without the SAE points. A model
// has the ones its manifest maps.
func Points() []Point {
	t := table.Load()
	var ps []Point
	for p := 1; p < len(t.infos); p++ {
		if !t.infos[p].sae {
			ps = append(ps, Point(p))
		}
	}
	sort.SliceStable(ps, func(i, j int) bool { return t.index[ps[i]] < t.index[ps[j]] })
	return ps
}

// Valid reports whether p is a point of the vocabulary.
func (p Point) Valid() bool { return p > invalid && int(p) < len(table.Load().infos) }

func (p Point) info() (pointInfo, bool) {
	t := table.Load()
	if p <= invalid || int(p) >= len(t.infos) {
		return pointInfo{}, false
	}
	return t.infos[p], true
}

// Path is the dot path of the original ("resid.torso.delta_mlp").
func (p Point) Path() string {
	in, ok := p.info()
	if !ok {
		return fmt.Sprintf("hooks.Point(%d)", int(p))
	}
	return in.path
}

// String is the dot path.
func (p Point) String() string { return p.Path() }

// PerLayer reports whether the point exists once per layer (true) or once per
// forward pass (false: resid.post_emb, resid.ln_f.*, resid.post_ln_f, logits).
func (p Point) PerLayer() bool { in, ok := p.info(); return ok && in.perLayer }

// Shape is the point's tensor layout in dimension terms, batch first.
func (p Point) Shape() []Dim {
	in, ok := p.info()
	if !ok {
		return nil
	}
	return append([]Dim(nil), in.shape...)
}

// IsSAE reports whether the point belongs to a spliced autoencoder.
func (p Point) IsSAE() bool { in, ok := p.info(); return ok && in.sae }

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
	t := table.Load()
	if s.Point <= invalid || int(s.Point) >= len(t.infos) {
		return -1
	}
	n, idx := len(t.infos), t.index[s.Point]
	switch {
	case t.infos[s.Point].perLayer:
		return (1+s.Layer)*n + idx
	case t.infos[s.Point].rank < t.infos[LnAttnPostMeanSubtraction].rank:
		return idx // before the first layer, as resid.post_emb
	default:
		return (1+nLayers)*n + idx
	}
}

// ResidualInto is the site of the residual stream entering layer l:
// resid.post_emb for l = 0, else resid.torso.post_mlp of layer l-1 (for
// l = the number of layers, the final residual stream). Stage boundaries,
// partial runs and hook maps' "block input" names all mean this site.
func ResidualInto(l int) Site {
	if l <= 0 {
		return Site{Point: ResidPostEmb, Layer: -1}
	}
	return Site{Point: PostMLP, Layer: l - 1}
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

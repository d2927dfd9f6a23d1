package export

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"

	"github.com/onnx-tdb/onnx-tdb/graphs"
	"github.com/onnx-tdb/onnx-tdb/graphs/onnxpb"
	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/modelctx/tokenizer"
)

// Errors of Import.
var (
	ErrImport         = errors.New("cannot import onnx model")
	ErrPointConflict  = errors.New("two hook-map entries give one hook site different tensors")
	ErrUnknownTokName = errors.New("unknown tokenizer")
)

// ImportedGraphFile is the graph file of an imported model.
const ImportedGraphFile = "model.onnx"

// minExternal is the smallest float32 initializer (in elements) moved into
// the weights file; smaller ones (scalars, eps) stay inside the graph.
const minExternal = 16

// Alias is a model's own name for a hook site: an imported graph's hook map
// may name its points in its own terms (mlp_hidden, resid_mid). Point is
// the TDB dot path the name stands for, "" when it has none (the name is
// then listed but cannot be hooked).
type Alias struct {
	Name       string `json:"name"`
	Layer      *int   `json:"layer"`
	Point      string `json:"point,omitempty"`
	PointLayer *int   `json:"point_layer,omitempty"`
	Tensor     string `json:"tensor"`
}

// ImportOptions control Import.
type ImportOptions struct {
	Name      string // model name in the manifest (default: the output folder's name)
	Overwrite bool   // replace an existing exported folder
	// Tokenizer is "gpt2" when the model uses GPT-2's tokenizer, or "" for a
	// model that works on token ids only.
	Tokenizer string
	// Tokens and Logits name the graph's token input and logits output
	// (default: the hook map's inputs/outputs, else the graph's only int64
	// input and its float output).
	Tokens, Logits string
	// Config: non-zero fields override the dimensions Import infers.
	Config Dims
	// Map maps a model's own point names to TDB dot paths (or BlockInput, or
	// "-" to leave the name unmapped); it comes before the hook map's
	// tdb_analogue and KnownPointNames.
	Map map[string]string
	// Probe, when set, is called on the finished folder before it is renamed
	// into place, with the manifest already written; it may fill in
	// m.Config (modelctx.Import runs one small forward pass here to read the
	// dimensions off the hook points). The manifest is written again after.
	Probe func(dir string, m *Manifest) error
}

// Import turns an ONNX transformer (one .onnx file, weights inside or in
// external data beside it) and a hook map into an exported model directory:
// the graph with its float initializers moved into weights.bin (page-aligned,
// as WriteGPT2 writes them), and a manifest whose points are the hook map's.
// The runtime then cuts the graph at hooked points exactly as it cuts GPT-2.
func Import(onnxPath, hookmapPath, out string, o ImportOptions) (*Manifest, error) {
	man, err := importModel(onnxPath, hookmapPath, out, o)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", onnxPath, err)
	}
	return man, nil
}

func importModel(onnxPath, hookmapPath, out string, o ImportOptions) (*Manifest, error) {
	hm, err := ReadHookMap(hookmapPath)
	if err != nil {
		return nil, err
	}
	model, err := graphs.ReadModel(onnxPath)
	if err != nil {
		return nil, err
	}
	g := model.GetGraph()
	info := graphInfo(g)
	tokens, err := findTokens(g, info, hm, o.Tokens)
	if err != nil {
		return nil, err
	}
	logits, err := findLogits(g, hm, o.Logits)
	if err != nil {
		return nil, err
	}
	points, aliases, err := importPoints(hm, o.Map, info, logits)
	if err != nil {
		return nil, err
	}
	name := o.Name
	if name == "" {
		name = filepath.Base(filepath.Clean(out))
	}
	abs, _ := filepath.Abs(onnxPath)
	man := &Manifest{
		Format:       Format,
		Name:         name,
		Architecture: ImportedArchitecture,
		Source:       abs,
		Tokenizer:    o.Tokenizer,
		Inputs:       IO{Tokens: tokens, Logits: logits},
		Stages:       []Stage{{Name: "model", File: ImportedGraphFile}},
		Points:       points,
		Aliases:      aliases,
	}
	man.Config = inferConfig(g, hm, tokens, logits, points, o.Config)
	sortPoints(man.Points, man.Config.NLayers)
	if o.Tokenizer != "" {
		tok, err := tokenizer.Open(o.Tokenizer, "")
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrUnknownTokName, err)
		}
		if man.Config.NVocab != 0 && man.Config.NVocab < tok.NVocab() {
			return nil, fmt.Errorf("%w: tokenizer %s gives ids up to %d, the model's vocabulary has %d tokens", ErrImport, o.Tokenizer, tok.NVocab()-1, man.Config.NVocab)
		}
	}
	if err := constantsToInitializers(g); err != nil {
		return nil, err
	}
	sources := map[string]HookMapWeight{}
	for _, w := range hm.Weights {
		sources[w.Initializer] = w
	}
	srcDir := filepath.Dir(onnxPath)
	err = atomicDir(out, o.Overwrite, func(tmp string) error {
		if err := externalizeWeights(model, srcDir, tmp, sources, man); err != nil {
			return err
		}
		if err := writeModel(filepath.Join(tmp, ImportedGraphFile), model); err != nil {
			return fmt.Errorf("write %s: %w", ImportedGraphFile, err)
		}
		locateKeyedWeights(man)
		if err := writeJSON(filepath.Join(tmp, ManifestFile), man); err != nil {
			return err
		}
		if o.Probe == nil {
			return nil
		}
		if err := o.Probe(tmp, man); err != nil {
			return fmt.Errorf("probe: %w", err)
		}
		locateKeyedWeights(man)
		return writeJSON(filepath.Join(tmp, ManifestFile), man)
	})
	if err != nil {
		return nil, err
	}
	return man, nil
}

// tensorInfo is what the importer knows of a graph tensor.
type tensorInfo struct {
	produced bool // a node computes it
	input    bool // a graph input (not an initializer)
	init     bool
}

func graphInfo(g *onnxpb.GraphProto) map[string]tensorInfo {
	m := map[string]tensorInfo{}
	inits := map[string]bool{}
	for _, t := range g.GetInitializer() {
		inits[t.GetName()] = true
		m[t.GetName()] = tensorInfo{init: true}
	}
	for _, in := range g.GetInput() {
		if !inits[in.GetName()] {
			m[in.GetName()] = tensorInfo{input: true}
		}
	}
	for _, n := range g.GetNode() {
		for _, o := range n.GetOutput() {
			if o != "" {
				m[o] = tensorInfo{produced: true}
			}
		}
	}
	return m
}

// graphInputs lists the graph's inputs that are not initializers.
func graphInputs(g *onnxpb.GraphProto) []*onnxpb.ValueInfoProto {
	inits := map[string]bool{}
	for _, t := range g.GetInitializer() {
		inits[t.GetName()] = true
	}
	var out []*onnxpb.ValueInfoProto
	for _, in := range g.GetInput() {
		if !inits[in.GetName()] {
			out = append(out, in)
		}
	}
	return out
}

func elemType(v *onnxpb.ValueInfoProto) onnxpb.TensorProto_DataType {
	return onnxpb.TensorProto_DataType(v.GetType().GetTensorType().GetElemType())
}

// findTokens picks the token input: the one given, the hook map's integer
// input, or the graph's only int64 input. Every other input must be
// absent: the runtime feeds token ids only.
func findTokens(g *onnxpb.GraphProto, info map[string]tensorInfo, hm *HookMap, given string) (string, error) {
	ins := graphInputs(g)
	name := given
	if name == "" {
		for _, in := range hm.Inputs {
			if in.DType == "int64" || in.DType == "int32" || len(hm.Inputs) == 1 {
				name = in.Name
				break
			}
		}
	}
	if name == "" {
		for _, in := range ins {
			if elemType(in) == onnxpb.TensorProto_INT64 {
				if name != "" {
					return "", fmt.Errorf("%w: the graph has several int64 inputs (%s, %s): name the token input", ErrImport, name, in.GetName())
				}
				name = in.GetName()
			}
		}
	}
	if name == "" {
		return "", fmt.Errorf("%w: no int64 token input among the graph's inputs", ErrImport)
	}
	found := false
	for _, in := range ins {
		if in.GetName() == name {
			found = true
			if t := elemType(in); t != onnxpb.TensorProto_INT64 {
				return "", fmt.Errorf("%w: token input %s has element type %s, the runtime feeds int64", ErrImport, name, t)
			}
			continue
		}
		return "", fmt.Errorf("%w: the graph takes input %s besides the tokens %s; only token ids are fed (pad masks and KV caches of foreign graphs are not supported)", ErrImport, in.GetName(), name)
	}
	if !found {
		return "", fmt.Errorf("%w: %s is not an input of the graph", ErrImport, name)
	}
	return name, nil
}

// findLogits picks the logits output: the one given, the hook map's float
// output, or the graph's only float output.
func findLogits(g *onnxpb.GraphProto, hm *HookMap, given string) (string, error) {
	name := given
	if name == "" {
		for _, o := range hm.Outputs {
			if o.DType == "float32" || len(hm.Outputs) == 1 {
				name = o.Name
				break
			}
		}
	}
	if name == "" {
		for _, o := range g.GetOutput() {
			if elemType(o) == onnxpb.TensorProto_FLOAT {
				if name != "" {
					return "", fmt.Errorf("%w: the graph has several float outputs (%s, %s): name the logits", ErrImport, name, o.GetName())
				}
				name = o.GetName()
			}
		}
	}
	for _, o := range g.GetOutput() {
		if o.GetName() == name {
			if t := elemType(o); t != onnxpb.TensorProto_FLOAT && t != onnxpb.TensorProto_UNDEFINED {
				return "", fmt.Errorf("%w: logits output %s has element type %s, want float32", ErrImport, name, t)
			}
			return name, nil
		}
	}
	if name == "" {
		return "", fmt.Errorf("%w: no float32 logits output", ErrImport)
	}
	return "", fmt.Errorf("%w: %s is not an output of the graph", ErrImport, name)
}

// importPoints resolves the hook map's entries to TDB sites. Entries named
// in the model's own terms become aliases too; entries with no TDB
// analogue are kept as aliases without a point.
func importPoints(hm *HookMap, explicit map[string]string, info map[string]tensorInfo, logits string) ([]Point, []Alias, error) {
	type placed struct {
		tensor string
		perm   []int
		from   string
	}
	bySite := map[hooks.Site]placed{}
	var order []hooks.Site
	var aliases []Alias
	for _, e := range hm.Points {
		ti, ok := info[e.Tensor]
		if !ok || !(ti.produced || e.Tensor == logits) {
			return nil, nil, fmt.Errorf("%w: %s: tensor %q is not computed by the graph", ErrHookMap, entryName(e), e.Tensor)
		}
		site, ok, err := resolvePoint(e, explicit)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %v", ErrHookMap, err)
		}
		own := e.Hook == "" || site.Point.Path() != e.Hook
		if own {
			a := Alias{Name: e.Name(), Layer: e.Layer, Tensor: e.Tensor}
			if ok {
				a.Point = site.Point.Path()
				if site.Layer >= 0 {
					l := site.Layer
					a.PointLayer = &l
				}
			}
			aliases = append(aliases, a)
		}
		if !ok {
			continue
		}
		perm := e.Layout.Perm
		if isIdentityPerm(perm) {
			perm = nil
		}
		if prev, dup := bySite[site]; dup {
			if prev.tensor != e.Tensor || fmt.Sprint(prev.perm) != fmt.Sprint(perm) {
				return nil, nil, fmt.Errorf("%w: %s is %s (from %s) and %s (from %s); map one of them elsewhere or to \"-\"",
					ErrPointConflict, site, prev.tensor, prev.from, e.Tensor, entryName(e))
			}
			continue
		}
		bySite[site] = placed{tensor: e.Tensor, perm: perm, from: entryName(e)}
		order = append(order, site)
	}
	if len(order) == 0 {
		return nil, nil, fmt.Errorf("%w: no entry maps to a TDB hook point", ErrHookMap)
	}
	var points []Point
	for _, s := range order {
		p := Point{Point: s.Point.Path(), Tensor: bySite[s].tensor, Perm: bySite[s].perm}
		if s.Layer >= 0 {
			l := s.Layer
			p.Layer = &l
		}
		points = append(points, p)
	}
	return points, aliases, nil
}

func entryName(e HookMapPoint) string {
	if e.Layer == nil {
		return e.Name()
	}
	return fmt.Sprintf("%s@%d", e.Name(), *e.Layer)
}

func isIdentityPerm(perm []int) bool {
	for i, p := range perm {
		if p != i {
			return false
		}
	}
	return true
}

// inferConfig reads what it can of the model's dimensions: the layer count
// from the hook map, vocabulary and width from the token embedding (the
// Gather that reads the token input) and the logits' static shape, the
// context window from a position-embedding table, then the hook map's
// config, then the caller's overrides.
func inferConfig(g *onnxpb.GraphProto, hm *HookMap, tokens, logits string, points []Point, over Dims) Dims {
	var c Dims
	for _, p := range points {
		if p.Layer != nil && *p.Layer+1 > c.NLayers {
			c.NLayers = *p.Layer + 1
		}
	}
	for _, e := range hm.Points {
		if e.Layer != nil && *e.Layer+1 > c.NLayers {
			c.NLayers = *e.Layer + 1
		}
	}
	if hm.NLayers > 0 {
		c.NLayers = hm.NLayers
	}
	inits := map[string]*onnxpb.TensorProto{}
	for _, t := range g.GetInitializer() {
		inits[t.GetName()] = t
	}
	var posTables [][]int64
	for _, n := range g.GetNode() {
		if n.GetOpType() != "Gather" || len(n.GetInput()) < 2 {
			continue
		}
		t := inits[n.GetInput()[0]]
		if t == nil || len(t.GetDims()) != 2 || t.GetDataType() != int32(onnxpb.TensorProto_FLOAT) {
			continue
		}
		if n.GetInput()[1] == tokens {
			c.NVocab, c.DModel = int(t.GetDims()[0]), int(t.GetDims()[1])
		} else {
			posTables = append(posTables, t.GetDims())
		}
	}
	if len(posTables) == 1 && c.DModel != 0 && int(posTables[0][1]) == c.DModel {
		c.NCtx = int(posTables[0][0])
	}
	for _, o := range g.GetOutput() {
		if o.GetName() != logits {
			continue
		}
		dims := o.GetType().GetTensorType().GetShape().GetDim()
		if len(dims) == 3 && dims[2].GetDimValue() > 0 {
			c.NVocab = int(dims[2].GetDimValue())
		}
	}
	cfgInt := func(keys ...string) int {
		for _, k := range keys {
			if v, ok := hm.Config[k].(float64); ok && v > 0 && v == math.Trunc(v) {
				return int(v)
			}
		}
		return 0
	}
	set := func(dst *int, v int) {
		if v > 0 {
			*dst = v
		}
	}
	set(&c.NVocab, cfgInt("vocab", "n_vocab", "vocab_size"))
	set(&c.DModel, cfgInt("d_model", "hidden_size", "n_embd"))
	set(&c.NLayers, cfgInt("n_layers", "num_hidden_layers", "n_layer"))
	set(&c.NHeads, cfgInt("n_heads", "num_attention_heads", "n_head"))
	set(&c.DHead, cfgInt("d_head", "head_dim"))
	set(&c.DFF, cfgInt("d_ff", "intermediate_size", "n_inner"))
	set(&c.NCtx, cfgInt("n_ctx", "ctx_window", "max_position_embeddings", "n_positions"))
	if c.DHead == 0 && c.NHeads > 0 && c.DModel%c.NHeads == 0 {
		c.DHead = c.DModel / c.NHeads
	}
	set(&c.NLayers, over.NLayers)
	set(&c.DModel, over.DModel)
	set(&c.NHeads, over.NHeads)
	set(&c.DHead, over.DHead)
	set(&c.DFF, over.DFF)
	set(&c.NVocab, over.NVocab)
	set(&c.NCtx, over.NCtx)
	return c
}

// SiteAliases indexes a manifest's aliases: "name" or "name@layer" to the
// site it stands for. Aliases without a TDB point are left out.
func (m *Manifest) SiteAliases() (map[string]hooks.Site, error) {
	out := map[string]hooks.Site{}
	for _, a := range m.Aliases {
		if a.Point == "" {
			continue
		}
		p, err := hooks.Parse(a.Point)
		if err != nil {
			return nil, fmt.Errorf("alias %s: %w", a.Name, err)
		}
		s := hooks.Site{Point: p, Layer: -1}
		if a.PointLayer != nil {
			s.Layer = *a.PointLayer
		}
		key := a.Name
		if a.Layer != nil {
			key = fmt.Sprintf("%s@%d", a.Name, *a.Layer)
		}
		out[key] = s
	}
	return out, nil
}

package modelctx

import (
	"errors"
	"fmt"
	"sync"

	"github.com/onnx-tdb/onnx-tdb/export"
	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/modelctx/tokenizer"
	"github.com/onnx-tdb/onnx-tdb/runtime"
)

// Errors of ModelContext.
var (
	// ErrInvalidToken: a string given as one token encodes to another count
	// of tokens (the original's InvalidTokenException).
	ErrInvalidToken = tokenizer.ErrInvalidToken
	// ErrNotImplemented: a StubModelContext method other than DimSize.
	ErrNotImplemented = errors.New("not implemented by this model context")
)

// NormalizationEps is the floor of the L2 norm in Weight's normalisation
// (torch.nn.functional.normalize's eps).
const NormalizationEps = 1e-12

// ModelContext is the original's ModelContext (docs/behaviour.md §4.1) in Go terms: a
// model's name and device, its dimensions, its weights by standard
// location, its tokenizer, and the model itself, created on first use.
//
// Counts a model does not know (an imported graph may not say how many
// heads it has) are 0 from the n-helpers and ErrUnknownDimension from
// DimSize.
type ModelContext interface {
	// ModelName is the model's name; Device is "cpu" or "cuda:N".
	ModelName() string
	Device() string

	// DimSize is the size of a model-intrinsic dimension (get_dim_size).
	DimSize(d Dimension) (int, error)
	// ShapeFromSpec turns a shape spec into sizes, singleton as 1.
	ShapeFromSpec(spec []Dimension) ([]int, error)
	NLayers() int
	NVocab() int
	NAttentionHeads() int
	NNeurons() int
	NResidualStreamChannels() int
	NContext() int

	// Weight returns a weight in its standard shape (docs/behaviour.md §4.3); layer is
	// NoLayer for locations that exist once per model. The result is the
	// caller's own copy.
	Weight(loc WeightLocationType, layer int, opts ...WeightOption) (*hooks.Tensor, error)

	// Encoding is the tokenizer; the other tokenizer helpers return
	// ErrNoTokenizer where there is none.
	Encoding() (tokenizer.Tokenizer, error)
	Encode(s string) ([]int, error) // <|endoftext|> allowed
	Decode(ids []int) (string, error)
	DecodeToken(id int) (string, error)
	DecodeTokenList(ids []int) ([]string, error)
	EncodeTokenStr(s string) (int, error) // ErrInvalidToken unless s is one token
	EncodeTokenStrList(ss []string) ([]int, error)

	// Model is get_or_create_model: the first call opens the model, later
	// calls return the same one. The context owns it.
	Model() (*Transformer, error)
	// ModelConfig is get_model_config_as_dict.
	ModelConfig() (map[string]any, error)
}

// WeightOption configures one Weight call.
type WeightOption func(*weightConfig)

type weightConfig struct {
	normalize Dimension
}

// NormalizeDim L2-normalises the weight along the axis of d (which must
// occur once in the location's shape), with eps NormalizationEps.
func NormalizeDim(d Dimension) WeightOption { return func(c *weightConfig) { c.normalize = d } }

// ONNXModelContext is the ModelContext of an exported model directory. It
// reads weights straight from the weights file, with no ONNX Runtime
// session; the model itself opens on the first call to Model.
type ONNXModelContext struct {
	dir  string
	man  *export.Manifest
	opts []Option
	ro   runtime.Options
	wf   *weightFile

	mu     sync.Mutex
	model  *Transformer
	owns   bool
	closed bool
	tok    lazyTokenizer
}

var _ ModelContext = (*ONNXModelContext)(nil)

// NewModelContext opens the model context of an exported directory. The
// options are those of Open, used when Model first opens the model.
func NewModelContext(dir string, opts ...Option) (*ONNXModelContext, error) {
	man, err := export.ReadManifest(dir)
	if err != nil {
		return nil, err
	}
	wf, err := openWeights(dir, man)
	if err != nil {
		return nil, fmt.Errorf("model context %s: %w", dir, err)
	}
	c := &ONNXModelContext{dir: dir, man: man, opts: opts, wf: wf, owns: true}
	for _, o := range opts {
		o(&c.ro)
	}
	return c, nil
}

// ModelContext returns a model context over this open model; the context
// does not own it (closing the context leaves the model open).
func (t *Transformer) ModelContext() (*ONNXModelContext, error) {
	wf, err := openWeights(t.dir, t.man)
	if err != nil {
		return nil, fmt.Errorf("model context %s: %w", t.dir, err)
	}
	return &ONNXModelContext{dir: t.dir, man: t.man, ro: t.eng.Options(), wf: wf, model: t}, nil
}

// Close releases the weights file and the model, when the context opened it.
func (c *ONNXModelContext) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	err := c.wf.close()
	if c.owns && c.model != nil {
		err = errors.Join(err, c.model.Close())
	}
	c.model = nil
	return err
}

// Manifest describes the exported model.
func (c *ONNXModelContext) Manifest() *export.Manifest { return c.man }

// ModelName is the manifest's name.
func (c *ONNXModelContext) ModelName() string { return c.man.Name }

// Device is "cpu" or "cuda:N", as chosen by the options.
func (c *ONNXModelContext) Device() string {
	return c.ro.Provider.String()
}

// DimSize is the size of a model-intrinsic dimension: context window,
// d_model, vocabulary, heads, d_head (query/key and value), d_ff, layers.
// Other dimensions, and sizes the model does not record, give
// ErrUnknownDimension.
func (c *ONNXModelContext) DimSize(d Dimension) (int, error) {
	cfg := c.man.Config
	var v int
	switch d {
	case DimMaxContextLength:
		v = cfg.NCtx
	case DimResidualStreamChannels:
		v = cfg.DModel
	case DimVocabSize:
		v = cfg.NVocab
		if v == 0 {
			if tok, err := c.Encoding(); err == nil {
				v = tok.NVocab()
			}
		}
	case DimAttnHeads:
		v = cfg.NHeads
	case DimQueryAndKeyChannels, DimValueChannels:
		v = cfg.DHead
	case DimMLPActs:
		v = cfg.DFF
	case DimLayers:
		v = cfg.NLayers
	default:
		return 0, fmt.Errorf("%w: %s is not a size of the model", ErrUnknownDimension, d)
	}
	if v <= 0 {
		return 0, fmt.Errorf("%w: model %s does not record its %s", ErrUnknownDimension, c.man.Name, d)
	}
	return v, nil
}

// ShapeFromSpec turns a shape spec into sizes (get_shape_from_spec).
func (c *ONNXModelContext) ShapeFromSpec(spec []Dimension) ([]int, error) {
	return shapeFromSpec(c, spec)
}

func shapeFromSpec(mc interface {
	DimSize(Dimension) (int, error)
}, spec []Dimension) ([]int, error) {
	out := make([]int, len(spec))
	for i, d := range spec {
		if d == DimSingleton {
			out[i] = 1
			continue
		}
		v, err := mc.DimSize(d)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

func dimOr0(mc interface {
	DimSize(Dimension) (int, error)
}, d Dimension) int {
	v, err := mc.DimSize(d)
	if err != nil {
		return 0
	}
	return v
}

// NLayers is the number of layers.
func (c *ONNXModelContext) NLayers() int { return dimOr0(c, DimLayers) }

// NVocab is the vocabulary size.
func (c *ONNXModelContext) NVocab() int { return dimOr0(c, DimVocabSize) }

// NAttentionHeads is the number of attention heads per layer.
func (c *ONNXModelContext) NAttentionHeads() int { return dimOr0(c, DimAttnHeads) }

// NNeurons is the number of MLP neurons per layer.
func (c *ONNXModelContext) NNeurons() int { return dimOr0(c, DimMLPActs) }

// NResidualStreamChannels is d_model.
func (c *ONNXModelContext) NResidualStreamChannels() int { return dimOr0(c, DimResidualStreamChannels) }

// NContext is the context window.
func (c *ONNXModelContext) NContext() int { return dimOr0(c, DimMaxContextLength) }

// Weight returns the weight at a location in its standard shape, read from
// the weights file (stored transposes undone), with the original's head
// split and axis order, optionally L2-normalised along one dimension, and
// checked against the location's shape spec. Models whose checkpoint keys
// are not TDB's give ErrNoWeight.
func (c *ONNXModelContext) Weight(loc WeightLocationType, layer int, opts ...WeightOption) (*hooks.Tensor, error) {
	var cfg weightConfig
	for _, o := range opts {
		o(&cfg)
	}
	if _, err := ParseWeightLocationType(string(loc)); err != nil {
		return nil, err
	}
	if err := checkLayer(loc, layer, c.NLayers()); err != nil {
		return nil, err
	}
	r, ok := findWeightLocation(c.man, loc, layer)
	if !ok {
		return nil, fmt.Errorf("%w: model %s (%s) has no %s", ErrNoWeight, c.man.Name, c.man.Architecture, describeLoc(loc, layer))
	}
	want, err := c.ShapeFromSpec(loc.ShapeSpec())
	if err != nil {
		return nil, fmt.Errorf("weight %s: %w", loc, err)
	}
	v, err := c.wf.piece(r.Source)
	if err != nil {
		return nil, fmt.Errorf("weight %s: %w", describeLoc(loc, layer), err)
	}
	if r.Split != nil {
		heads := r.Heads
		if heads == 0 {
			heads = c.NAttentionHeads()
		}
		if v, err = v.split(*r.Split, heads); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrWeightShape, describeLoc(loc, layer), err)
		}
	}
	if r.Perm != nil {
		if !isPerm(r.Perm, len(v.shape)) {
			return nil, fmt.Errorf("%w: %s: %s has shape %v, the manifest permutes it by %v", ErrWeightShape, describeLoc(loc, layer), r.Source, v.shape, r.Perm)
		}
		v = v.permute(r.Perm)
	}
	t := v.tensor()
	if r.Broadcast && len(t.Data) == 1 && len(want) == 1 {
		full := make([]float32, want[0])
		for i := range full {
			full[i] = t.Data[0]
		}
		t = &hooks.Tensor{Shape: []int{want[0]}, Data: full}
	}
	if cfg.normalize != "" {
		ax, err := loc.DimensionIndex(cfg.normalize)
		if err != nil {
			return nil, fmt.Errorf("weight %s: normalize: %w", loc, err)
		}
		if ax < len(t.Shape) {
			normalizeAxis(t, ax, NormalizationEps)
		}
	}
	if fmt.Sprint(t.Shape) != fmt.Sprint(want) {
		return nil, fmt.Errorf("%w: %s is %v, expected %v", ErrWeightShape, describeLoc(loc, layer), t.Shape, want)
	}
	return t, nil
}

func checkLayer(loc WeightLocationType, layer, nLayers int) error {
	if loc.HasNoLayers() {
		if layer != NoLayer {
			return fmt.Errorf("%w: %s exists once per model and takes no layer (NoLayer), got %d", ErrLayer, loc, layer)
		}
		return nil
	}
	if layer < 0 || (nLayers > 0 && layer >= nLayers) {
		return fmt.Errorf("%w: %s needs a layer in [0,%d), got %d", ErrLayer, loc, nLayers, layer)
	}
	return nil
}

func describeLoc(loc WeightLocationType, layer int) string {
	if layer == NoLayer {
		return string(loc)
	}
	return fmt.Sprintf("%s layer %d", loc, layer)
}

// Encoding is the model's tokenizer, or ErrNoTokenizer.
func (c *ONNXModelContext) Encoding() (tokenizer.Tokenizer, error) {
	return c.tok.get(c.dir, c.man)
}

// Encode tokenizes s; the text <|endoftext|> becomes its special token.
func (c *ONNXModelContext) Encode(s string) ([]int, error) { return encode(c, s) }

// Decode turns token ids into text (invalid UTF-8 as U+FFFD).
func (c *ONNXModelContext) Decode(ids []int) (string, error) { return decode(c, ids) }

// DecodeToken is Decode of one token.
func (c *ONNXModelContext) DecodeToken(id int) (string, error) { return decode(c, []int{id}) }

// DecodeTokenList decodes each token on its own.
func (c *ONNXModelContext) DecodeTokenList(ids []int) ([]string, error) {
	return decodeTokenList(c, ids)
}

// EncodeTokenStr returns the id of a string that is exactly one token, or
// ErrInvalidToken.
func (c *ONNXModelContext) EncodeTokenStr(s string) (int, error) { return encodeTokenStr(c, s) }

// EncodeTokenStrList is EncodeTokenStr of each string.
func (c *ONNXModelContext) EncodeTokenStrList(ss []string) ([]int, error) {
	return encodeTokenStrList(c, ss)
}

type encoder interface {
	Encoding() (tokenizer.Tokenizer, error)
}

func encode(e encoder, s string) ([]int, error) {
	tok, err := e.Encoding()
	if err != nil {
		return nil, err
	}
	return tok.Encode(s), nil
}

func decode(e encoder, ids []int) (string, error) {
	tok, err := e.Encoding()
	if err != nil {
		return "", err
	}
	return tok.Decode(ids)
}

func decodeTokenList(e encoder, ids []int) ([]string, error) {
	tok, err := e.Encoding()
	if err != nil {
		return nil, err
	}
	return tok.DecodeTokens(ids)
}

func encodeTokenStr(e encoder, s string) (int, error) {
	tok, err := e.Encoding()
	if err != nil {
		return 0, err
	}
	return tok.EncodeSingleToken(s)
}

func encodeTokenStrList(e encoder, ss []string) ([]int, error) {
	tok, err := e.Encoding()
	if err != nil {
		return nil, err
	}
	return tok.EncodeSingleTokens(ss)
}

// Model opens the model on first use with the context's options and
// returns the same Transformer after (get_or_create_model).
func (c *ONNXModelContext) Model() (*Transformer, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, runtime.ErrClosed
	}
	if c.model == nil {
		m, err := Open(c.dir, c.opts...)
		if err != nil {
			return nil, err
		}
		c.model = m
	}
	return c.model, nil
}

// ModelConfig returns the model's configuration with the original's keys
// (enc, ctx_window, d_model, n_layers, m_attn, n_heads, m_mlp) where the
// model records them, plus d_head, d_ff, n_vocab and architecture.
func (c *ONNXModelContext) ModelConfig() (map[string]any, error) {
	cfg := c.man.Config
	m := map[string]any{"architecture": c.man.Architecture}
	put := func(k string, v int) {
		if v > 0 {
			m[k] = v
		}
	}
	if c.man.Tokenizer != "" {
		m["enc"] = c.man.Tokenizer
	}
	put("ctx_window", cfg.NCtx)
	put("d_model", cfg.DModel)
	put("n_layers", cfg.NLayers)
	put("n_heads", cfg.NHeads)
	put("d_head", cfg.DHead)
	put("d_ff", cfg.DFF)
	put("n_vocab", cfg.NVocab)
	if cfg.DModel > 0 && cfg.NHeads > 0 && cfg.DHead > 0 {
		m["m_attn"] = float64(cfg.NHeads*cfg.DHead) / float64(cfg.DModel)
	}
	if cfg.DModel > 0 && cfg.DFF > 0 {
		m["m_mlp"] = float64(cfg.DFF) / float64(cfg.DModel)
	}
	return m, nil
}

// UnembeddingWithLnGain is the unembedding [d_model, vocab] with each row
// scaled by the final LayerNorm's gain (get_unembedding_with_ln_gain).
func UnembeddingWithLnGain(mc ModelContext) (*hooks.Tensor, error) {
	u, err := mc.Weight(WeightUnembedding, NoLayer)
	if err != nil {
		return nil, err
	}
	g, err := mc.Weight(WeightLayerNormGainFinal, NoLayer)
	if err != nil {
		return nil, err
	}
	D, V := u.Shape[0], u.Shape[1]
	if len(g.Data) != D {
		return nil, fmt.Errorf("%w: final gain has %d values, unembedding %d rows", ErrWeightShape, len(g.Data), D)
	}
	out := make([]float32, len(u.Data))
	for o := 0; o < D; o++ {
		for v := 0; v < V; v++ {
			out[o*V+v] = u.Data[o*V+v] * g.Data[o]
		}
	}
	return &hooks.Tensor{Shape: []int{D, V}, Data: out}, nil
}

// Embedding is the token embedding [vocab, d_model] (get_embedding); no
// LayerNorm lies between it and the residual stream.
func Embedding(mc ModelContext) (*hooks.Tensor, error) {
	return mc.Weight(WeightEmbedding, NoLayer)
}

// StubModelContext is the original's test stub: DimSize answers from a
// fixed table, every other method returns ErrNotImplemented.
type StubModelContext struct {
	Sizes map[Dimension]int
}

var _ ModelContext = StubModelContext{}

// ModelName is "stub".
func (s StubModelContext) ModelName() string { return "stub" }

// Device is "cpu".
func (s StubModelContext) Device() string { return string(runtime.CPU) }

// DimSize looks d up in Sizes.
func (s StubModelContext) DimSize(d Dimension) (int, error) {
	if v, ok := s.Sizes[d]; ok {
		return v, nil
	}
	return 0, fmt.Errorf("%w: stub has no size for %s", ErrNotImplemented, d)
}

// ShapeFromSpec turns a shape spec into sizes.
func (s StubModelContext) ShapeFromSpec(spec []Dimension) ([]int, error) {
	return shapeFromSpec(s, spec)
}

// NLayers and the other counts read Sizes (0 when absent).
func (s StubModelContext) NLayers() int                 { return dimOr0(s, DimLayers) }
func (s StubModelContext) NVocab() int                  { return dimOr0(s, DimVocabSize) }
func (s StubModelContext) NAttentionHeads() int         { return dimOr0(s, DimAttnHeads) }
func (s StubModelContext) NNeurons() int                { return dimOr0(s, DimMLPActs) }
func (s StubModelContext) NResidualStreamChannels() int { return dimOr0(s, DimResidualStreamChannels) }
func (s StubModelContext) NContext() int                { return dimOr0(s, DimMaxContextLength) }

// Weight is not implemented.
func (s StubModelContext) Weight(WeightLocationType, int, ...WeightOption) (*hooks.Tensor, error) {
	return nil, ErrNotImplemented
}

// Encoding is not implemented; neither are the other tokenizer helpers.
func (s StubModelContext) Encoding() (tokenizer.Tokenizer, error)  { return nil, ErrNotImplemented }
func (s StubModelContext) Encode(string) ([]int, error)            { return nil, ErrNotImplemented }
func (s StubModelContext) Decode([]int) (string, error)            { return "", ErrNotImplemented }
func (s StubModelContext) DecodeToken(int) (string, error)         { return "", ErrNotImplemented }
func (s StubModelContext) DecodeTokenList([]int) ([]string, error) { return nil, ErrNotImplemented }
func (s StubModelContext) EncodeTokenStr(string) (int, error)      { return 0, ErrNotImplemented }
func (s StubModelContext) EncodeTokenStrList([]string) ([]int, error) {
	return nil, ErrNotImplemented
}

// Model is not implemented.
func (s StubModelContext) Model() (*Transformer, error) { return nil, ErrNotImplemented }

// ModelConfig is not implemented.
func (s StubModelContext) ModelConfig() (map[string]any, error) { return nil, ErrNotImplemented }

// Tensor reads a weight by the checkpoint key it was exported from (the
// manifest's source, e.g. a bias that no WeightLocationType names), in the
// checkpoint's own layout. Architecture packages use it for the values
// their site transforms need.
func (c *ONNXModelContext) Tensor(key string) (*hooks.Tensor, error) {
	v, err := c.wf.piece(key)
	if err != nil {
		return nil, err
	}
	return v.tensor(), nil
}

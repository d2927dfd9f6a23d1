package modelctx

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"sync"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/export"
	"github.com/onnx-tdb/onnx-tdb/graphs"
	"github.com/onnx-tdb/onnx-tdb/graphs/onnxpb"
	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/internal/golden"
	"github.com/onnx-tdb/onnx-tdb/runtime"
	"google.golang.org/protobuf/proto"
)

// loadLlamaCases reads the reference data of foreign_llama (copied from
// the shared golden set): a Llama-style decoder with a hook map in its own point
// names, and torch's values at each point.
func loadLlamaCases(t testing.TB) *golden.LlamaCases {
	t.Helper()
	c := golden.LoadLlama(t)
	if len(c.Inputs) != 2 {
		t.Fatalf("%d inputs", len(c.Inputs))
	}
	return c
}

type importedModel struct {
	once sync.Once
	dir  string
	err  error
}

var importedLlama, importedForeign importedModel

// importOnce imports a foreign graph once per test binary.
func (m *importedModel) get(t testing.TB, src string, o export.ImportOptions) string {
	t.Helper()
	m.once.Do(func() {
		tmp, err := osMkdirTemp()
		if err != nil {
			m.err = err
			return
		}
		m.dir = filepath.Join(tmp, filepath.Base(src))
		_, m.err = Import(filepath.Join(src, "model.onnx"), filepath.Join(src, "hookmap.json"), m.dir, o)
	})
	if m.err != nil {
		t.Fatal(m.err)
	}
	return m.dir
}

func llamaModel(t testing.TB) string {
	return importedLlama.get(t, filepath.Join(golden.Dir(), "foreign_llama"), export.ImportOptions{})
}

func openLlama(t testing.TB) *Transformer {
	t.Helper()
	m, err := Open(llamaModel(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// foreignModel imports the shared golden set/foreign (GPT-2 exported whole by
// torch), or skips when the shared set is absent.
func foreignModel(t testing.TB) string {
	t.Helper()
	src := golden.RequireShared(t, "foreign")
	return importedForeign.get(t, src, export.ImportOptions{Tokenizer: "gpt2"})
}

func openForeign(t testing.TB) *Transformer {
	t.Helper()
	m, err := Open(foreignModel(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func aliasKey(name string, layer *int) string {
	if layer == nil {
		return name
	}
	return fmt.Sprintf("%s@%d", name, *layer)
}

func TestLlamaEveryMappedPointAndLogits(t *testing.T) {
	c := loadLlamaCases(t)
	m := openLlama(t)
	if m.Manifest().Config.DFF != 176 || m.Manifest().Config.NHeads != 4 {
		t.Fatalf("config %+v", m.Manifest().Config)
	}
	for _, in := range c.Inputs {
		t.Run(in.Name, func(t *testing.T) {
			out, err := m.Forward(context.Background(), in.Tokens, Capture(AllPoints))
			if err != nil {
				t.Fatal(err)
			}
			golden.Check(t, "logits", out.Logits.Data, in.Logits)
			if len(in.Activations) != 13 {
				t.Fatalf("%d reference activations", len(in.Activations))
			}
			for _, a := range in.Activations {
				name := aliasKey(a.Point, a.Layer)
				site, err := m.ParseSite(name)
				if err != nil {
					t.Fatal(err)
				}
				got, ok := out.Activations[site]
				if !ok {
					t.Fatalf("%s (%s) not captured", name, site)
				}
				if fmt.Sprint(got.Shape) != fmt.Sprint(a.Shape) {
					t.Fatalf("%s: shape %v, want %v", name, got.Shape, a.Shape)
				}
				golden.Check(t, name, got.Data, a.Tensor)
			}
		})
	}
}

func TestLlamaAblationMatchesTorchHook(t *testing.T) {
	c := loadLlamaCases(t)
	m := openLlama(t)
	for _, in := range c.Inputs {
		plain, err := m.Forward(context.Background(), in.Tokens)
		if err != nil {
			t.Fatal(err)
		}
		for _, iv := range in.Interventions {
			t.Run(in.Name+"/"+iv.Name, func(t *testing.T) {
				// Addressed by the model's own name, as the reference names it.
				site, err := m.ParseSite(fmt.Sprintf("mlp_hidden@%d", iv.Layer))
				if err != nil {
					t.Fatal(err)
				}
				if site != (hooks.Site{Point: hooks.MLPPostAct, Layer: iv.Layer}) {
					t.Fatalf("mlp_hidden@%d is %v", iv.Layer, site)
				}
				h := hooks.New()
				hooks.Edit{Site: site, Index: []int{iv.Unit}, Kind: hooks.Ablate}.Register(h)
				out, err := m.Forward(context.Background(), in.Tokens, WithHooks(h))
				if err != nil {
					t.Fatal(err)
				}
				golden.Check(t, iv.Name, out.Logits.Data, iv.Logits)
				if d := maxAbsDiff(out.Logits.Data, plain.Logits.Data); d < 0.05 {
					t.Fatalf("the ablation changed the logits by only %g", d)
				}
			})
		}
	}
}

func maxAbsDiff(a, b []float32) float64 {
	var d float64
	for i := range a {
		d = math.Max(d, math.Abs(float64(a[i])-float64(b[i])))
	}
	return d
}

// A writing hook that returns its input unchanged, at any site or at all
// sites at once, must leave the logits as they are: the graph is cut there
// and put back together.
func TestLlamaIdentityWritesAtEverySite(t *testing.T) {
	c := loadLlamaCases(t)
	m := openLlama(t)
	tokens := c.Inputs[1].Tokens
	plain, err := m.Forward(context.Background(), tokens)
	if err != nil {
		t.Fatal(err)
	}
	identity := func(_ *hooks.Context, x *hooks.Tensor) (*hooks.Tensor, error) { return x.Clone(), nil }
	register := func(h *hooks.Hooks, s hooks.Site) {
		var opts []hooks.Option
		if s.Point.PerLayer() {
			opts = append(opts, hooks.AtLayers(s.Layer))
		}
		h.Add(s.Point, identity, opts...)
	}
	all := hooks.New()
	for _, s := range m.Sites() {
		register(all, s)
		h := hooks.New()
		register(h, s)
		out, err := m.Forward(context.Background(), tokens, WithHooks(h))
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		if d := maxAbsDiff(out.Logits.Data, plain.Logits.Data); d > 1e-5 {
			t.Errorf("%s: identity write changed the logits by %g", s, d)
		}
	}
	out, err := m.Forward(context.Background(), tokens, WithHooks(all))
	if err != nil {
		t.Fatal(err)
	}
	if d := maxAbsDiff(out.Logits.Data, plain.Logits.Data); d > 1e-5 {
		t.Errorf("identity writes at all %d sites changed the logits by %g", len(m.Sites()), d)
	}
}

func TestLlamaReportsWhatItLacks(t *testing.T) {
	m := openLlama(t)
	ctx := context.Background()
	if _, err := m.Forward(ctx, [][]int{{1, 2, 3}}, Capture(&Filter{Points: []hooks.Point{hooks.AttnQ}})); !errors.Is(err, ErrNoPoint) {
		t.Errorf("capturing attn.q: %v", err)
	}
	h := hooks.New()
	h.Add(hooks.LnMLPScale, func(_ *hooks.Context, x *hooks.Tensor) (*hooks.Tensor, error) { return x, nil })
	if _, err := m.Forward(ctx, [][]int{{1, 2, 3}}, WithHooks(h)); !errors.Is(err, ErrNoPoint) {
		t.Errorf("hooking resid.torso.ln_mlp.scale: %v", err)
	}
	for _, s := range []string{"attn.q@0", "resid.ln_f.scale", "mlp.pre_act@1"} {
		if _, err := m.ParseSite(s); !errors.Is(err, ErrNoPoint) {
			t.Errorf("ParseSite(%s): %v", s, err)
		}
	}
	if _, err := m.ParseSite("mlp_hidden@7"); err == nil {
		t.Error("mlp_hidden@7 parsed")
	}
	if _, err := m.Forward(ctx, [][]int{{1, 2, 3}, {4}}); !errors.Is(err, ErrRagged) {
		t.Errorf("ragged batch: %v", err)
	}
	if _, err := m.Forward(ctx, [][]int{{1, 512}}); !errors.Is(err, ErrTokenOutOfRange) {
		t.Errorf("token 512 of a 512-token vocabulary: %v", err)
	}
	if _, err := m.Sample(ctx, TextPrompts("hello"), WithTemperature(0)); !errors.Is(err, ErrNoTokenizer) {
		t.Errorf("sampling from text: %v", err)
	}

	mc, err := m.ModelContext()
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Close()
	for name, err := range map[string]error{
		"Encode":             second(mc.Encode("hi")),
		"Decode":             second(mc.Decode([]int{1})),
		"DecodeToken":        second(mc.DecodeToken(1)),
		"DecodeTokenList":    second(mc.DecodeTokenList([]int{1})),
		"EncodeTokenStr":     second(mc.EncodeTokenStr("hi")),
		"EncodeTokenStrList": second(mc.EncodeTokenStrList([]string{"hi"})),
		"Encoding":           second(mc.Encoding()),
	} {
		if !errors.Is(err, ErrNoTokenizer) {
			t.Errorf("%s: %v, want ErrNoTokenizer", name, err)
		}
	}
	if _, err := mc.Weight(WeightMLPToHidden, 0); !errors.Is(err, ErrNoWeight) {
		t.Errorf("Weight on a model without TDB's checkpoint keys: %v", err)
	}
	if _, err := mc.DimSize(DimMaxContextLength); !errors.Is(err, ErrUnknownDimension) {
		t.Errorf("context window of a model that does not say: %v", err)
	}
	if mc.NLayers() != 2 || mc.NVocab() != 512 || mc.NNeurons() != 176 || mc.NResidualStreamChannels() != 64 || mc.NAttentionHeads() != 4 || mc.NContext() != 0 {
		t.Errorf("dims %d %d %d %d %d %d", mc.NLayers(), mc.NVocab(), mc.NNeurons(), mc.NResidualStreamChannels(), mc.NAttentionHeads(), mc.NContext())
	}
}

func second[T any](_ T, err error) error { return err }

func TestLlamaSamplesGreedilyWithoutACache(t *testing.T) {
	m := openLlama(t)
	ctx := context.Background()
	prompt := []int{0, 245, 388, 302}
	res, err := m.Sample(ctx, TokenPrompts(prompt), WithTemperature(0), WithNumTokens(4))
	if err != nil {
		t.Fatal(err)
	}
	row := append([]int{}, prompt...)
	for i := 0; i < 4; i++ {
		out, err := m.Forward(ctx, [][]int{row})
		if err != nil {
			t.Fatal(err)
		}
		V := out.Logits.Shape[2]
		last := out.Logits.Data[(len(row)-1)*V : len(row)*V]
		best := 0
		for j, v := range last {
			if v > last[best] {
				best = j
			}
		}
		row = append(row, best)
	}
	if fmt.Sprint(res.Tokens[0]) != fmt.Sprint(row[len(prompt):]) {
		t.Fatalf("sampled %v, forward argmax gives %v", res.Tokens[0], row[len(prompt):])
	}
}

func TestForeignGPT2EveryMappedPointAndLogits(t *testing.T) {
	m := openForeign(t)
	c := golden.Load(t)
	cfg := m.Manifest().Config
	if cfg.NHeads != 4 || cfg.DHead != 16 || cfg.DFF != 256 || cfg.NCtx != 64 || cfg.NVocab != 50257 {
		t.Fatalf("config %+v", cfg)
	}
	// foreign/ was traced without padding: only the unpadded inputs apply.
	for _, name := range []string{"prompt", "single"} {
		in := c.Input(name)
		t.Run(name, func(t *testing.T) {
			out, err := m.Forward(context.Background(), in.Rows, Capture(AllPoints))
			if err != nil {
				t.Fatal(err)
			}
			golden.Check(t, "logits", out.Logits.Data, *in.Logits)
			n := 0
			for _, a := range in.Activations {
				p, err := hooks.Parse(a.Hook)
				if err != nil {
					t.Fatal(err)
				}
				site := hooks.Site{Point: p, Layer: -1}
				if a.Layer != nil {
					site.Layer = *a.Layer
				}
				if !m.HasSite(site) {
					if p != hooks.AttnQKSoftmaxDenominator {
						t.Errorf("%s is not mapped", site)
					}
					continue
				}
				got := out.Activations[site]
				if got == nil || fmt.Sprint(got.Shape) != fmt.Sprint(a.Shape) {
					t.Fatalf("%s: got %v, want shape %v", site, got, a.Shape)
				}
				golden.Check(t, site.String(), got.Data, a.Tensor)
				n++
			}
			if n != 46 || len(m.Sites()) != 46 {
				t.Errorf("compared %d sites, model has %d", n, len(m.Sites()))
			}
		})
	}
}

// The cut check of foreign/README.md: mlp.post_act layer 1 neuron 7 set to
// 0, compared with the same hook on the GPT-2 export of ../model (which
// matches TDB's own ablate_mlp_neuron hook, see TestGoldenInterventions).
func TestForeignGPT2CutCheck(t *testing.T) {
	m := openForeign(t)
	ref := openGolden(t)
	in := golden.Load(t).Input("prompt")
	h := hooks.New()
	hooks.Edit{Site: hooks.Site{Point: hooks.MLPPostAct, Layer: 1}, Index: []int{7}, Kind: hooks.Ablate}.Register(h)
	ctx := context.Background()
	got, err := m.Forward(ctx, in.Rows, WithHooks(h))
	if err != nil {
		t.Fatal(err)
	}
	want, err := ref.Forward(ctx, in.Rows, WithHooks(h))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := m.Forward(ctx, in.Rows)
	if err != nil {
		t.Fatal(err)
	}
	if d := maxAbsDiff(got.Logits.Data, want.Logits.Data); d > golden.Tolerance(in.Logits.MaxAbs) {
		t.Fatalf("foreign vs GPT-2 export under the ablation: %g", d)
	}
	// hookmap.json checks.cut_check: ablation_effect_max_abs_logit_change 0.218.
	if effect := maxAbsDiff(got.Logits.Data, plain.Logits.Data); math.Abs(effect-0.218016117811203) > 1e-4 {
		t.Fatalf("ablation effect %g, the reference run saw 0.2180", effect)
	}
}

// Editing any mapped point of the foreign graph has the effect the same
// edit has on the GPT-2 export of the same checkpoint.
func TestForeignGPT2WritesAtEverySiteMatchExport(t *testing.T) {
	if testing.Short() {
		t.Skip("one plan per site on two models")
	}
	m := openForeign(t)
	ref := openGolden(t)
	in := golden.Load(t).Input("prompt")
	ctx := context.Background()
	for _, s := range m.Sites() {
		if s.Point == hooks.LogitsPoint {
			continue
		}
		h := hooks.New()
		hooks.Edit{Site: s, Index: []int{0}, Kind: hooks.SetTo, Value: 0.5}.Register(h)
		got, err := m.Forward(ctx, in.Rows, WithHooks(h))
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		want, err := ref.Forward(ctx, in.Rows, WithHooks(h))
		if err != nil {
			t.Fatalf("%s (export): %v", s, err)
		}
		if d := maxAbsDiff(got.Logits.Data, want.Logits.Data); d > golden.Tolerance(in.Logits.MaxAbs) {
			t.Errorf("%s: foreign and export differ by %g under the same edit", s, d)
		}
	}
}

// The golden greedy sample with the neuron ablation, on the foreign graph
// (no KV cache: every step re-runs the whole sequence).
func TestForeignGPT2SamplesTheGoldenTokens(t *testing.T) {
	m := openForeign(t)
	for _, sc := range golden.Load(t).Sampling {
		if len(sc.Prompts) != 1 {
			continue // left-padded batches need the pad input foreign/ lacks
		}
		t.Run(sc.Name, func(t *testing.T) {
			var opts []SampleOption
			if sc.Hooks != "" {
				h := hooks.New()
				hooks.Edit{Site: hooks.Site{Point: hooks.MLPPostAct, Layer: 1}, Index: []int{7}, Kind: hooks.Ablate}.Register(h)
				opts = append(opts, WithHooks(h))
			}
			opts = append(opts, WithTemperature(0), WithNumTokens(len(sc.Tokens[0])))
			res, err := m.Sample(context.Background(), TextPrompts(sc.Prompts...), opts...)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(res.Tokens) != fmt.Sprint(sc.Tokens) {
				t.Fatalf("tokens %v, want %v", res.Tokens, sc.Tokens)
			}
		})
	}
}

// foreign/'s hook map names which checkpoint key each initializer holds, so
// the ModelContext of the imported graph gives the same weights as the
// export of the checkpoint.
func TestForeignGPT2ModelContextWeightsEqualExport(t *testing.T) {
	fmc, err := NewModelContext(foreignModel(t))
	if err != nil {
		t.Fatal(err)
	}
	defer fmc.Close()
	gmc := mcGolden(t)
	for _, loc := range WeightLocationTypes() {
		for _, layer := range wltLayers(loc) {
			got, err := fmc.Weight(loc, layer)
			if err != nil {
				t.Fatalf("%s: %v", describeLoc(loc, layer), err)
			}
			want, err := gmc.Weight(loc, layer)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got.Shape) != fmt.Sprint(want.Shape) || maxAbsDiff(got.Data, want.Data) != 0 {
				t.Errorf("%s differs", describeLoc(loc, layer))
			}
		}
	}
	ids, err := fmc.Encode("Hello world")
	if err != nil || fmt.Sprint(ids) != "[15496 995]" {
		t.Fatalf("Encode: %v %v", ids, err)
	}
}

// Every tensor of the foreign graphs, exposed as an output typed by
// graphs.InferTypes (through an Unsqueeze, so scalars can leave): ONNX
// Runtime refuses a model whose declared output types are wrong, and the
// values it returns have the inferred types.
func TestInferTypesAgreesWithORTOnForeignGraphs(t *testing.T) {
	dirs := []string{llamaModel(t)}
	if _, ok := golden.SharedDir(); ok {
		dirs = append(dirs, foreignModel(t))
	}
	for _, dir := range dirs {
		man, err := export.ReadManifest(dir)
		if err != nil {
			t.Fatal(err)
		}
		model, err := export.LoadGraph(dir, man)
		if err != nil {
			t.Fatal(err)
		}
		types := graphs.InferTypes(model)
		g := model.GetGraph()
		axes := "unsqueeze_axes#test"
		g.Initializer = append(g.Initializer, &onnxpb.TensorProto{Name: proto.String(axes), Dims: []int64{1},
			DataType: proto.Int32(int32(onnxpb.TensorProto_INT64)), Int64Data: []int64{0}})
		var outs []string
		want := map[string]onnxpb.TensorProto_DataType{}
		for _, n := range append([]*onnxpb.NodeProto{}, g.GetNode()...) {
			for _, o := range n.GetOutput() {
				u := o + "#u"
				g.Node = append(g.Node, &onnxpb.NodeProto{OpType: proto.String("Unsqueeze"), Input: []string{o, axes}, Output: []string{u}})
				g.Output = append(g.Output, graphs.ValueInfo(u, types[o]))
				outs = append(outs, u)
				want[u] = types[o]
			}
		}
		eng, err := runtime.NewEngine(&runtime.Graph{Model: model, Dir: dir, NLayers: man.Config.NLayers}, runtime.Options{})
		if err != nil {
			t.Fatal(err)
		}
		res, err := eng.Run(context.Background(), runtime.Request{
			Inputs:  map[string]*runtime.Tensor{man.Inputs.Tokens: {Shape: []int64{1, 3}, I64: []int64{1, 2, 3}}},
			Outputs: outs,
		})
		eng.Close()
		if err != nil {
			t.Fatalf("%s: %v", man.Name, err)
		}
		for _, o := range outs {
			r := res[o]
			got := onnxpb.TensorProto_UNDEFINED
			switch {
			case r.F32 != nil:
				got = onnxpb.TensorProto_FLOAT
			case r.I64 != nil:
				got = onnxpb.TensorProto_INT64
			case r.Bool != nil:
				got = onnxpb.TensorProto_BOOL
			}
			if got != want[o] {
				t.Errorf("%s: %s is %s, inferred %s", man.Name, o, got, want[o])
			}
		}
		t.Logf("%s: %d tensors typed as ONNX Runtime computes them", man.Name, len(outs))
	}
}

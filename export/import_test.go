package export

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/graphs"
	"github.com/onnx-tdb/onnx-tdb/graphs/onnxpb"
	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/internal/golden"
)

func llamaPaths() (string, string) {
	d := filepath.Join(golden.Dir(), "foreign_llama")
	return filepath.Join(d, "model.onnx"), filepath.Join(d, "hookmap.json")
}

func intp(i int) *int { return &i }

func TestResolvePointNames(t *testing.T) {
	site := func(p hooks.Point, l int) hooks.Site { return hooks.Site{Point: p, Layer: l} }
	cases := []struct {
		name     string
		entry    HookMapPoint
		explicit map[string]string
		want     hooks.Site
		ok       bool
		err      bool
	}{
		{"tdb name", HookMapPoint{Hook: "mlp.post_act", Layer: intp(1)}, nil, site(hooks.MLPPostAct, 1), true, false},
		{"tdb once point", HookMapPoint{Hook: "resid.post_emb"}, nil, site(hooks.ResidPostEmb, -1), true, false},
		{"analogue head", HookMapPoint{Point: "tap", Layer: intp(0), TDBAnalogue: "mlp.post_act (here silu)"}, nil, site(hooks.MLPPostAct, 0), true, false},
		{"known name", HookMapPoint{Point: "mlp_out", Layer: intp(1)}, nil, site(hooks.DeltaMLP, 1), true, false},
		{"block input layer 0", HookMapPoint{Point: "resid_pre", Layer: intp(0), TDBAnalogue: "block input: ..."}, nil, site(hooks.ResidPostEmb, -1), true, false},
		{"block input layer 2", HookMapPoint{Point: "resid_pre", Layer: intp(2)}, nil, site(hooks.PostMLP, 1), true, false},
		{"final norm", HookMapPoint{Point: "final_norm"}, nil, site(hooks.PostLnF, -1), true, false},
		{"explicit wins", HookMapPoint{Point: "mlp_hidden", Layer: intp(0)}, map[string]string{"mlp_hidden": "mlp.pre_act"}, site(hooks.MLPPreAct, 0), true, false},
		{"explicit none", HookMapPoint{Point: "mlp_hidden", Layer: intp(0)}, map[string]string{"mlp_hidden": "-"}, hooks.Site{}, false, false},
		{"no analogue", HookMapPoint{Point: "rope_cos", Layer: intp(0)}, nil, hooks.Site{}, false, false},
		{"analogue of other arity", HookMapPoint{Point: "x", Layer: intp(0), TDBAnalogue: "logits"}, nil, hooks.Site{}, false, false},
		{"explicit unknown path", HookMapPoint{Point: "x", Layer: intp(0)}, map[string]string{"x": "mlp.nope"}, hooks.Site{}, false, true},
		{"explicit wrong arity", HookMapPoint{Point: "x"}, map[string]string{"x": "mlp.post_act"}, hooks.Site{}, false, true},
		{"tdb name wrong arity", HookMapPoint{Hook: "logits", Layer: intp(0)}, nil, hooks.Site{}, false, true},
		{"block input once", HookMapPoint{Point: "resid_pre"}, nil, hooks.Site{}, false, true},
		{"sae point", HookMapPoint{Point: "x", Layer: intp(0)}, map[string]string{"x": "sae.latents"}, hooks.Site{}, false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ok, err := resolvePoint(c.entry, c.explicit)
			if (err != nil) != c.err {
				t.Fatalf("err = %v, want error %v", err, c.err)
			}
			if ok != c.ok || (ok && got != c.want) {
				t.Fatalf("got %v %v, want %v %v", got, ok, c.want, c.ok)
			}
		})
	}
}

func TestReadHookMapAcceptsTheGoldenMaps(t *testing.T) {
	_, hmPath := llamaPaths()
	hm, err := ReadHookMap(hmPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(hm.Points) != 14 || hm.NLayers != 2 || len(hm.Weights) != 21 || hm.Inputs[0].Name != "tokens" || hm.Outputs[0].Name != "logits" {
		t.Fatalf("points %d, n_layers %d, initializers %d, io %+v %+v", len(hm.Points), hm.NLayers, len(hm.Weights), hm.Inputs, hm.Outputs)
	}
	if d, ok := golden.SharedDir(); ok {
		hm, err := ReadHookMap(filepath.Join(d, "foreign", "hookmap.json"))
		if err != nil {
			t.Fatal(err)
		}
		if len(hm.Points) != 46 || hm.Points[0].Hook != "resid.post_emb" || hm.Points[0].Layer != nil {
			t.Fatalf("foreign: %d points, first %+v", len(hm.Points), hm.Points[0])
		}
	}
}

func TestReadHookMapRejects(t *testing.T) {
	cases := map[string]string{
		"not json":       `{`,
		"no points":      `{"points": []}`,
		"no name":        `{"points": [{"layer": 0, "tensor": "x"}]}`,
		"no tensor":      `{"points": [{"hook": "mlp.post_act", "layer": 0}]}`,
		"negative layer": `{"points": [{"hook": "mlp.post_act", "layer": -1, "tensor": "x"}]}`,
		"bad perm":       `{"points": [{"hook": "mlp.post_act", "layer": 0, "tensor": "x", "layout": {"perm_onnx_to_reference": [0, 0, 2]}}]}`,
		"bad transform":  `{"points": [{"hook": "logits", "layer": null, "tensor": "x"}], "initializers": [{"initializer": "w", "transform": "flip"}]}`,
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "hm.json")
			if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := ReadHookMap(p); !errors.Is(err, ErrHookMap) {
				t.Fatalf("err = %v, want ErrHookMap", err)
			}
		})
	}
}

func readF32(t *testing.T, path string, off, length int64) []float32 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, length)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	out := make([]float32, length/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

func TestImportLlamaWritesAnExportedFolder(t *testing.T) {
	onnxPath, hmPath := llamaPaths()
	out := filepath.Join(t.TempDir(), "llama")
	man, err := Import(onnxPath, hmPath, out, ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if man.Architecture != "onnx" || man.Tokenizer != "" || man.Inputs.Tokens != "tokens" || man.Inputs.Logits != "logits" ||
		man.Inputs.Pad != "" || man.Inputs.PrevLens != "" || len(man.KVCache) != 0 || man.Name != "llama" {
		t.Fatalf("manifest %+v", man)
	}
	// What the graph and hook map show without running it.
	want := Dims{NLayers: 2, DModel: 64, NHeads: 4, DHead: 16, DFF: 176, NVocab: 512}
	if man.Config != want {
		t.Fatalf("config %+v, want %+v", man.Config, want)
	}
	// resid_pre@1 and resid_post@0 are one site.
	if len(man.Points) != 13 || len(man.Aliases) != 14 {
		t.Fatalf("%d points, %d aliases", len(man.Points), len(man.Aliases))
	}
	aliases, err := man.SiteAliases()
	if err != nil {
		t.Fatal(err)
	}
	for name, site := range map[string]hooks.Site{
		"resid_pre@0": {Point: hooks.ResidPostEmb, Layer: -1}, "resid_pre@1": {Point: hooks.PostMLP, Layer: 0},
		"mlp_hidden@1": {Point: hooks.MLPPostAct, Layer: 1}, "attn_out@0": {Point: hooks.DeltaAttn, Layer: 0},
		"final_norm": {Point: hooks.PostLnF, Layer: -1}, "logits": {Point: hooks.LogitsPoint, Layer: -1},
	} {
		if aliases[name] != site {
			t.Errorf("alias %s = %v, want %v", name, aliases[name], site)
		}
	}
	again, err := ReadManifest(out)
	if err != nil {
		t.Fatal(err)
	}
	if b1, _ := json.Marshal(man); string(b1) != string(mustJSON(t, again)) {
		t.Fatal("manifest on disk differs from the one returned")
	}

	// Every float initializer of 16+ values now lives page-aligned in
	// weights.bin, with the values it had, and the graph points there.
	src, err := graphs.ReadModel(onnxPath)
	if err != nil {
		t.Fatal(err)
	}
	orig := map[string]*onnxpb.TensorProto{}
	for _, tp := range src.GetGraph().GetInitializer() {
		orig[tp.GetName()] = tp
	}
	if len(man.Weights.Tensors) != 21 {
		t.Fatalf("%d weights", len(man.Weights.Tensors))
	}
	for _, w := range man.Weights.Tensors {
		if w.Offset%Alignment != 0 {
			t.Errorf("%s at offset %d", w.Name, w.Offset)
		}
		o := orig[w.Name]
		got := readF32(t, filepath.Join(out, WeightsFileName), w.Offset, w.Length)
		n := len(o.GetRawData()) / 4
		if n != len(got) {
			t.Fatalf("%s: %d values, want %d", w.Name, len(got), n)
		}
		for i := 0; i < n; i++ {
			if math.Float32frombits(binary.LittleEndian.Uint32(o.GetRawData()[4*i:])) != got[i] {
				t.Fatalf("%s[%d] differs", w.Name, i)
			}
		}
	}
	byName := map[string]Weight{}
	for _, w := range man.Weights.Tensors {
		byName[w.Name] = w
	}
	if w := byName["onnx::MatMul_350"]; w.Source != "lm_head.weight" || !w.Transposed {
		t.Errorf("lm_head: %+v", w)
	}
	if w := byName["norm.weight"]; w.Source != "norm.weight" || w.Transposed {
		t.Errorf("norm: %+v", w)
	}
	g, err := graphs.ReadModel(filepath.Join(out, ImportedGraphFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, tp := range g.GetGraph().GetInitializer() {
		if tp.GetDataType() == int32(onnxpb.TensorProto_FLOAT) && len(tp.GetRawData())+4*len(tp.GetFloatData()) >= 4*minExternal {
			t.Errorf("initializer %s still holds %d bytes inline", tp.GetName(), len(tp.GetRawData()))
		}
	}
	for _, n := range g.GetGraph().GetNode() {
		if n.GetOpType() == "Constant" {
			t.Fatalf("Constant node %s left in the graph", n.GetName())
		}
	}
	if st, err := os.Stat(filepath.Join(out, ImportedGraphFile)); err != nil || st.Size() > 200<<10 {
		t.Fatalf("graph file: %v, %v", st, err)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestImportErrorsLeaveNothing(t *testing.T) {
	onnxPath, hmPath := llamaPaths()
	dir := t.TempDir()
	cases := []struct {
		name string
		o    ImportOptions
		hm   string
		want error
	}{
		{"gpt2 tokenizer on a 512-token vocabulary", ImportOptions{Tokenizer: "gpt2"}, hmPath, ErrImport},
		{"unknown tokenizer", ImportOptions{Tokenizer: "llama"}, hmPath, ErrUnknownTokName},
		{"token input that is not an input", ImportOptions{Tokens: "nope"}, hmPath, ErrImport},
		{"logits output that is not an output", ImportOptions{Logits: "nope"}, hmPath, ErrImport},
		{"two tensors for one site", ImportOptions{Map: map[string]string{"attn_out": "resid.torso.post_attn"}}, hmPath, ErrPointConflict},
		{"unknown point", ImportOptions{Map: map[string]string{"attn_out": "attn.nope"}}, hmPath, ErrHookMap},
		{"tensor not in the graph", ImportOptions{}, writeMap(t, dir, `{"points": [{"hook": "logits", "layer": null, "tensor": "nope"}]}`), ErrHookMap},
		{"nothing maps", ImportOptions{}, writeMap(t, dir, `{"points": [{"point": "rope", "layer": 0, "tensor": "/Cos_output_0"}]}`), ErrHookMap},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "m")
			_, err := Import(onnxPath, c.hm, out, c.o)
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			if ents, _ := os.ReadDir(filepath.Dir(out)); len(ents) != 0 {
				t.Fatalf("left behind: %v", ents)
			}
		})
	}
	out := filepath.Join(t.TempDir(), "m")
	if _, err := Import(onnxPath, hmPath, out, ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := Import(onnxPath, hmPath, out, ImportOptions{}); !errors.Is(err, ErrExists) {
		t.Fatalf("second import: %v, want ErrExists", err)
	}
	if _, err := Import(onnxPath, hmPath, out, ImportOptions{Overwrite: true, Name: "again"}); err != nil {
		t.Fatal(err)
	}
	probeErr := errors.New("probe says no")
	out2 := filepath.Join(t.TempDir(), "m")
	if _, err := Import(onnxPath, hmPath, out2, ImportOptions{Probe: func(string, *Manifest) error { return probeErr }}); !errors.Is(err, probeErr) {
		t.Fatalf("probe error: %v", err)
	}
	if _, err := os.Stat(out2); !os.IsNotExist(err) {
		t.Fatalf("a failed probe left %s", out2)
	}
}

func writeMap(t *testing.T, dir, body string) string {
	t.Helper()
	f, err := os.CreateTemp(dir, "hm-*.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(body); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

func TestImportForeignGPT2KeepsCheckpointKeys(t *testing.T) {
	d := golden.RequireShared(t, "foreign")
	out := filepath.Join(t.TempDir(), "foreign")
	man, err := Import(filepath.Join(d, "model.onnx"), filepath.Join(d, "hookmap.json"), out, ImportOptions{Tokenizer: "gpt2"})
	if err != nil {
		t.Fatal(err)
	}
	want := Dims{NLayers: 2, DModel: 64, NVocab: 50257, NCtx: 64}
	if man.Config != want {
		t.Fatalf("config %+v, want %+v (heads, d_head and d_ff are read by modelctx.Import's forward pass)", man.Config, want)
	}
	if len(man.Points) != 46 || len(man.Aliases) != 0 || man.Tokenizer != "gpt2" {
		t.Fatalf("%d points, %d aliases, tokenizer %q", len(man.Points), len(man.Aliases), man.Tokenizer)
	}
	keys := map[string]bool{}
	for _, w := range man.Weights.Tensors {
		keys[w.Source] = w.Transposed
	}
	c := golden.Load(t)
	for key := range c.Model.StateDict {
		tr, ok := keys[key]
		if !ok {
			t.Errorf("no weight holds %s", key)
		}
		if tr != (len(c.Model.StateDict[key]) == 2 && key != "tok_embed.weight" && key != "pos_embed.weight") {
			t.Errorf("%s: transposed %v", key, tr)
		}
	}
}

package torchpt

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/internal/golden"
)

func piecePath(dir, key string) string {
	return filepath.Join(dir, "model_pieces", key+".pt")
}

func TestModelPiecesLoadWithCasesShapes(t *testing.T) {
	c := golden.Load(t)
	if len(c.Model.StateDict) != 37 {
		t.Fatalf("cases.json lists %d state dict keys, want 37", len(c.Model.StateDict))
	}
	files, err := filepath.Glob(filepath.Join(golden.ModelDir(), "model_pieces", "*.pt"))
	if err != nil || len(files) != len(c.Model.StateDict) {
		t.Fatalf("%d piece files (err %v), want %d", len(files), err, len(c.Model.StateDict))
	}
	for key, shape := range c.Model.StateDict {
		got, err := LoadTensor(piecePath(golden.ModelDir(), key))
		if err != nil {
			t.Errorf("%s: %v", key, err)
			continue
		}
		if got.DType != "float32" || !reflect.DeepEqual(got.Shape, shape) || len(got.F32) != golden.Numel(shape) || got.I64 != nil {
			t.Errorf("%s: dtype %s shape %v with %d values, want float32 %v", key, got.DType, got.Shape, len(got.F32), shape)
		}
	}
}

// The norms of an untrained-looking random model are not all ones: check a
// few values are finite and not all equal, so a reader returning zeros fails.
func TestModelPieceValuesAreNotDegenerate(t *testing.T) {
	got, err := LoadTensor(piecePath(golden.ModelDir(), "xf_layers.0.attn.q_proj.weight"))
	if err != nil {
		t.Fatal(err)
	}
	distinct := map[float32]bool{}
	for _, v := range got.F32 {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			t.Fatalf("non-finite weight %v", v)
		}
		distinct[v] = true
	}
	if len(distinct) < len(got.F32)/2 {
		t.Fatalf("only %d distinct values in %d", len(distinct), len(got.F32))
	}
}

// model_views holds the same values saved as strided views with storage
// offsets (q/k/v share one fused storage); a reader that assumes contiguity
// or offset 0 gets different matrices.
func TestModelViewsEqualModelForAllKeys(t *testing.T) {
	dir := golden.RequireShared(t, "model_views")
	c := golden.Load(t)
	var views struct {
		Pieces map[string]struct {
			Stride        []int `json:"stride"`
			StorageOffset int   `json:"storage_offset"`
			Contiguous    bool  `json:"contiguous"`
			StorageNumel  int   `json:"storage_numel"`
			Shape         []int `json:"shape"`
		} `json:"pieces"`
	}
	readJSON(t, filepath.Join(dir, "views.json"), &views)
	nonTrivial := 0
	for key := range c.Model.StateDict {
		want, err := LoadTensor(piecePath(golden.ModelDir(), key))
		if err != nil {
			t.Fatal(err)
		}
		got, err := LoadTensor(piecePath(dir, key))
		if err != nil {
			t.Errorf("%s: %v", key, err)
			continue
		}
		if !reflect.DeepEqual(got.Shape, want.Shape) || !sameBits(got.F32, want.F32) {
			t.Errorf("%s: model_views piece differs from model's", key)
		}
		if v := views.Pieces[key]; !v.Contiguous || v.StorageOffset != 0 || v.StorageNumel != golden.Numel(v.Shape) {
			nonTrivial++
		}
	}
	if nonTrivial < 18 {
		t.Errorf("only %d pieces of views.json are non-trivial views; the test lost its point", nonTrivial)
	}
}

type miscFile struct {
	PT            string `json:"pt"`
	DType         string `json:"dtype"`
	Shape         []int  `json:"shape"`
	Stride        []int  `json:"stride"`
	StorageOffset int    `json:"storage_offset"`
	Expected      struct {
		File string `json:"file"`
	} `json:"expected_float32"`
}

func TestModelViewsMiscMatchExpectedFloat32(t *testing.T) {
	dir := filepath.Join(golden.Dir(), "model_views_misc")
	var m struct {
		Files []miscFile `json:"files"`
	}
	readJSON(t, filepath.Join(dir, "manifest.json"), &m)
	if len(m.Files) != 4 {
		t.Fatalf("manifest lists %d files, want 4", len(m.Files))
	}
	for _, f := range m.Files {
		t.Run(f.PT, func(t *testing.T) {
			got, err := LoadTensor(filepath.Join(dir, f.PT))
			if err != nil {
				t.Fatal(err)
			}
			want, err := golden.ReadFile(filepath.Join(dir, f.Expected.File))
			if err != nil {
				t.Fatal(err)
			}
			if got.DType != f.DType || !reflect.DeepEqual(got.Shape, f.Shape) {
				t.Fatalf("dtype %s shape %v, want %s %v", got.DType, got.Shape, f.DType, f.Shape)
			}
			if !sameBits(got.F32, want) {
				t.Fatalf("values differ:\n got %v\nwant %v", got.F32, want)
			}
		})
	}
}

// f16.pt holds subnormals and infinities; check them by value too, so the
// test does not rest on the .bin alone.
func TestFloat16SpecialValues(t *testing.T) {
	got, err := LoadTensor(filepath.Join(golden.Dir(), "model_views_misc", "f16.pt"))
	if err != nil {
		t.Fatal(err)
	}
	has := func(v float32) bool {
		for _, x := range got.F32 {
			if x == v {
				return true
			}
		}
		return false
	}
	for _, v := range []float32{65504, float32(math.Ldexp(1, -14)), float32(math.Ldexp(1, -24)),
		float32(3 * math.Ldexp(1, -24)), float32(math.Inf(1)), float32(math.Inf(-1))} {
		if !has(v) {
			t.Errorf("f16.pt: value %g missing", v)
		}
	}
}

func TestHalfToFloat32AllPatterns(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		got := halfToFloat32(h)
		exp, mant := int(h>>10&0x1f), float64(h&0x3ff)
		var want float64
		switch {
		case exp == 0x1f && mant == 0:
			want = math.Inf(1)
		case exp == 0x1f:
			want = math.NaN()
		case exp == 0:
			want = mant * math.Ldexp(1, -24)
		default:
			want = (1 + mant/1024) * math.Ldexp(1, exp-15)
		}
		if h>>15 == 1 {
			want = -want
		}
		if math.IsNaN(want) {
			if !math.IsNaN(float64(got)) {
				t.Fatalf("0x%04x: got %v, want NaN", h, got)
			}
			continue
		}
		if float64(got) != want || math.Signbit(float64(got)) != (h>>15 == 1) {
			t.Fatalf("0x%04x: got %v, want %v", h, got, want)
		}
	}
}

func TestSAEStateDicts(t *testing.T) {
	c := golden.Load(t)
	if len(c.SAEs) != 3 {
		t.Fatalf("%d SAEs in cases.json, want 3", len(c.SAEs))
	}
	raw, err := os.ReadFile(filepath.Join(golden.Dir(), "cases.json"))
	if err != nil {
		t.Fatal(err)
	}
	var top struct {
		SAEs map[string]struct {
			StateDictKeys json.RawMessage `json:"state_dict_keys"`
		} `json:"saes"`
	}
	if err := json.Unmarshal(raw, &top); err != nil {
		t.Fatal(err)
	}
	for name, info := range c.SAEs {
		t.Run(name, func(t *testing.T) {
			sd, err := LoadStateDict(filepath.Join(golden.Dir(), info.File))
			if err != nil {
				t.Fatal(err)
			}
			wantKeys, wantVals := orderedObject(t, top.SAEs[name].StateDictKeys)
			if !reflect.DeepEqual(sd.Keys, wantKeys) {
				t.Fatalf("keys %v\nwant %v", sd.Keys, wantKeys)
			}
			for i, k := range wantKeys {
				var spec struct {
					Shape []int  `json:"shape"`
					DType string `json:"dtype"`
				}
				if json.Unmarshal(wantVals[i], &spec) == nil && spec.DType != "" {
					got := sd.Tensors[k]
					if got == nil || got.DType != spec.DType || !reflect.DeepEqual(got.Shape, spec.Shape) {
						t.Errorf("%s: got %+v, want %s %v", k, got, spec.DType, spec.Shape)
					} else if len(got.F32)+len(got.I64) != got.Numel() {
						t.Errorf("%s: %d values for shape %v", k, len(got.F32)+len(got.I64), got.Shape)
					}
					continue
				}
				var want any
				if err := json.Unmarshal(wantVals[i], &want); err != nil {
					t.Fatal(err)
				}
				if got := normalizeJSON(sd.Values[k]); !reflect.DeepEqual(got, want) {
					t.Errorf("%s: got %#v, want %#v", k, sd.Values[k], want)
				}
			}
			if s := sd.Tensors["stats_last_nonzero"]; s == nil || s.I64 == nil || s.F32 != nil {
				t.Errorf("stats_last_nonzero must load as int64 values")
			}
			if sd.Tensors["encoder.weight"].Shape[0] != info.NLatents || sd.Tensors["pre_bias"].Shape[0] != info.NInputs {
				t.Errorf("encoder/pre_bias shapes do not match n_latents %d, n_inputs %d", info.NLatents, info.NInputs)
			}
			if sd.Values["activation"] != info.Activation {
				t.Errorf("activation %v, want %s", sd.Values["activation"], info.Activation)
			}
			asd, ok := sd.Values["activation_state_dict"].(map[string]any)
			if !ok {
				t.Fatalf("activation_state_dict is %T", sd.Values["activation_state_dict"])
			}
			if info.K != nil {
				if asd["k"] != int64(*info.K) || asd["postact_fn"] != "ReLU" {
					t.Errorf("TopK activation_state_dict %v", asd)
				}
				if sd.Values["activation.k"] != int64(*info.K) || sd.Values["activation.postact_fn"] != "ReLU" {
					t.Errorf("TopK extra keys: activation.k %#v, activation.postact_fn %#v",
						sd.Values["activation.k"], sd.Values["activation.postact_fn"])
				}
			} else if len(asd) != 0 {
				t.Errorf("ReLU activation_state_dict %v, want empty", asd)
			}
		})
	}
}

// orderedObject splits a JSON object into its keys in order and raw values.
func orderedObject(t *testing.T, raw json.RawMessage) ([]string, []json.RawMessage) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not an object: %s", raw)
	}
	var keys []string
	var vals []json.RawMessage
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, tok.(string))
		vals = append(vals, v)
	}
	return keys, vals
}

// normalizeJSON maps loaded values to what encoding/json decodes.
func normalizeJSON(v any) any {
	switch x := v.(type) {
	case int64:
		return float64(x)
	case map[string]any:
		m := map[string]any{}
		for k, e := range x {
			m[k] = normalizeJSON(e)
		}
		return m
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normalizeJSON(e)
		}
		return out
	}
	return v
}

// Fixtures made with torch 1.13 (testdata/torchpt/README.md).
func TestTorchFixtures(t *testing.T) {
	dir := filepath.Join(golden.Dir(), "..", "torchpt")
	var m struct {
		Tensors []struct {
			File      string   `json:"file"`
			Key       *string  `json:"key"`
			DType     string   `json:"dtype"`
			Shape     []int    `json:"shape"`
			Note      string   `json:"note"`
			ValuesHex []string `json:"values_f32_hex"`
			ValuesInt []int64  `json:"values_int"`
		} `json:"tensors"`
	}
	readJSON(t, filepath.Join(dir, "manifest.json"), &m)
	dicts := map[string]*StateDict{}
	for _, want := range m.Tensors {
		name := want.File
		if want.Key != nil {
			name += ":" + *want.Key
		}
		t.Run(name, func(t *testing.T) {
			var got *Tensor
			if want.Key == nil {
				var err error
				if got, err = LoadTensor(filepath.Join(dir, want.File)); err != nil {
					t.Fatal(err)
				}
			} else {
				sd := dicts[want.File]
				if sd == nil {
					var err error
					if sd, err = LoadStateDict(filepath.Join(dir, want.File)); err != nil {
						t.Fatal(err)
					}
					dicts[want.File] = sd
				}
				if got = sd.Tensors[*want.Key]; got == nil {
					t.Fatalf("no tensor %q in %v", *want.Key, sd.Keys)
				}
			}
			if got.DType != want.DType || !reflect.DeepEqual(got.Shape, want.Shape) {
				t.Fatalf("dtype %s shape %v, want %s %v (%s)", got.DType, got.Shape, want.DType, want.Shape, want.Note)
			}
			if want.ValuesInt != nil || strings.HasPrefix(want.DType, "int") || want.DType == "uint8" || want.DType == "bool" {
				if want.ValuesInt == nil {
					want.ValuesInt = []int64{}
				}
				if !reflect.DeepEqual(got.I64, want.ValuesInt) || got.F32 != nil {
					t.Fatalf("values %v, want %v", got.I64, want.ValuesInt)
				}
				return
			}
			wantF := make([]float32, len(want.ValuesHex))
			for i, h := range want.ValuesHex {
				f, err := strconv.ParseFloat(h, 64)
				if err != nil {
					t.Fatal(err)
				}
				wantF[i] = float32(f)
			}
			if !sameBits(got.F32, wantF) || got.I64 != nil {
				t.Fatalf("values %v, want %v", got.F32, wantF)
			}
		})
	}
	sd := dicts["legacy_dict.pt"]
	if sd == nil {
		t.Fatal("legacy_dict.pt not loaded")
	}
	wantKeys := []string{"w", "wT", "b", "name", "k", "nested"}
	if !reflect.DeepEqual(sd.Keys, wantKeys) {
		t.Errorf("legacy_dict.pt keys %v, want %v", sd.Keys, wantKeys)
	}
	wantNested := map[string]any{"x": 1.5, "y": []any{int64(1), int64(2), "z"}, "t": []any{nil, true}}
	if sd.Values["name"] != "ReLU" || sd.Values["k"] != int64(16) || !reflect.DeepEqual(sd.Values["nested"], wantNested) {
		t.Errorf("legacy_dict.pt values %#v", sd.Values)
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// sameBits is exact equality that treats NaN as equal to NaN.
func sameBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] && !(a[i] != a[i] && b[i] != b[i]) {
			return false
		}
		if a[i] == 0 && math.Signbit(float64(a[i])) != math.Signbit(float64(b[i])) {
			return false
		}
	}
	return true
}

// small_sae_like.pt is an nn.Linear state dict (an OrderedDict with
// _metadata set by BUILD) with SAE-style extra keys.
func TestOrderedDictWithMetadata(t *testing.T) {
	sd, err := LoadStateDict(filepath.Join(golden.Dir(), "..", "torchpt", "small_sae_like.pt"))
	if err != nil {
		t.Fatal(err)
	}
	wantKeys := []string{"weight", "bias", "stats_last_nonzero", "activation", "activation_state_dict"}
	if !reflect.DeepEqual(sd.Keys, wantKeys) {
		t.Fatalf("keys %v, want %v", sd.Keys, wantKeys)
	}
	if w := sd.Tensors["weight"]; w == nil || !reflect.DeepEqual(w.Shape, []int{2, 3}) || w.DType != "float32" {
		t.Errorf("weight %+v", w)
	}
	if s := sd.Tensors["stats_last_nonzero"]; s == nil || !reflect.DeepEqual(s.I64, []int64{0, 0}) {
		t.Errorf("stats_last_nonzero %+v", s)
	}
	want := map[string]any{"activation": "TopK", "activation_state_dict": map[string]any{"k": int64(16), "postact_fn": "ReLU"}}
	if !reflect.DeepEqual(sd.Values, want) {
		t.Errorf("values %#v", sd.Values)
	}
}

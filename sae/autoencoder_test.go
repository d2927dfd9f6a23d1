package sae

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/onnx-tdb/onnx-tdb/export/torchpt"
	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/internal/weightsfile"
)

// reference computes encode_pre_act, encode and decode in float64 from the
// state dict, as the original's Autoencoder.
type reference struct {
	N, n                           int
	act                            Activation
	preBias, enc, latBias, decoder []float32
}

func referenceOf(sd *torchpt.StateDict, act Activation) reference {
	enc := sd.Tensors[keyEncoder]
	return reference{N: enc.Shape[0], n: enc.Shape[1], act: act,
		preBias: sd.Tensors[keyPreBias].F32, enc: enc.F32,
		latBias: sd.Tensors[keyLatentBias].F32, decoder: sd.Tensors[keyDecoder].F32}
}

func (r reference) preAct(x []float32) []float64 {
	out := make([]float64, r.N)
	for j := 0; j < r.N; j++ {
		s := float64(r.latBias[j])
		for i := 0; i < r.n; i++ {
			s += (float64(x[i]) - float64(r.preBias[i])) * float64(r.enc[j*r.n+i])
		}
		out[j] = s
	}
	return out
}

func (r reference) encode(x []float32) []float64 {
	pre := r.preAct(x)
	out := make([]float64, r.N)
	switch r.act.Name {
	case Identity:
		copy(out, pre)
	case ReLU:
		for j, v := range pre {
			out[j] = math.Max(v, 0)
		}
	case TopK:
		idx := make([]int, r.N)
		for j := range idx {
			idx[j] = j
		}
		sort.SliceStable(idx, func(a, b int) bool { return pre[idx[a]] > pre[idx[b]] })
		for _, j := range idx[:r.act.K] {
			out[j] = pre[j]
			if r.act.PostAct == ReLU {
				out[j] = math.Max(pre[j], 0)
			}
		}
	}
	return out
}

func (r reference) decode(z []float32) []float64 {
	out := make([]float64, r.n)
	for i := 0; i < r.n; i++ {
		s := float64(r.preBias[i])
		for j := 0; j < r.N; j++ {
			s += float64(z[j]) * float64(r.decoder[i*r.N+j])
		}
		out[i] = s
	}
	return out
}

func closeTo(t *testing.T, what string, got []float32, want []float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range want {
		if d := math.Abs(float64(got[i]) - want[i]); d > 1e-4+1e-5*math.Abs(want[i]) {
			t.Fatalf("%s[%d] = %v, want %v", what, i, got[i], want[i])
		}
	}
}

func randomInput(rows, n int, seed uint64) *hooks.Tensor {
	rng := rand.New(rand.NewPCG(seed, 1))
	x := hooks.Zeros(rows, n)
	for i := range x.Data {
		x.Data[i] = float32(rng.NormFloat64())
	}
	return x
}

func TestEncodeDecodeMatchReference(t *testing.T) {
	ctx := context.Background()
	for _, act := range []Activation{
		{Name: ReLU}, {Name: Identity},
		{Name: TopK, K: 5, PostAct: ReLU}, {Name: TopK, K: 7, PostAct: Identity},
	} {
		t.Run(act.String(), func(t *testing.T) {
			spec := randomSAE{nLatents: 48, nInputs: 12, act: act, seed: 3}
			sd := spec.stateDict()
			ae, err := LoadStateDict(sd)
			if err != nil {
				t.Fatal(err)
			}
			defer ae.Close()
			if ae.Activation != act {
				t.Fatalf("activation %+v, want %+v", ae.Activation, act)
			}
			ref := referenceOf(sd, act)
			x := randomInput(6, 12, 9)
			lat, err := ae.Encode(ctx, x)
			if err != nil {
				t.Fatal(err)
			}
			pre, err := ae.EncodePreAct(ctx, x, nil)
			if err != nil {
				t.Fatal(err)
			}
			some, err := ae.EncodePreAct(ctx, x, []int{40, 3, 3})
			if err != nil {
				t.Fatal(err)
			}
			rec, err := ae.Decode(ctx, lat)
			if err != nil {
				t.Fatal(err)
			}
			for r := 0; r < 6; r++ {
				xr := x.Data[r*12 : (r+1)*12]
				wantPre := ref.preAct(xr)
				closeTo(t, fmt.Sprintf("pre_act row %d", r), pre.Data[r*48:(r+1)*48], wantPre)
				closeTo(t, fmt.Sprintf("pre_act[40,3,3] row %d", r), some.Data[r*3:(r+1)*3], []float64{wantPre[40], wantPre[3], wantPre[3]})
				closeTo(t, fmt.Sprintf("latents row %d", r), lat.Data[r*48:(r+1)*48], ref.encode(xr))
				closeTo(t, fmt.Sprintf("reconstruction row %d", r), rec.Data[r*12:(r+1)*12], ref.decode(lat.Data[r*48:(r+1)*48]))
			}
		})
	}
}

func TestTopKTiesKeepLowerIndex(t *testing.T) {
	spec := randomSAE{nLatents: 8, nInputs: 2, act: Activation{Name: TopK, K: 2, PostAct: ReLU}}
	sd := spec.stateDict()
	clear(sd.Tensors[keyEncoder].F32)
	copy(sd.Tensors[keyLatentBias].F32, []float32{1, 3, 3, 2, 3, 0, 0, 0})
	ae, err := LoadStateDict(sd)
	if err != nil {
		t.Fatal(err)
	}
	defer ae.Close()
	lat, err := ae.Encode(context.Background(), hooks.Zeros(1, 2))
	if err != nil {
		t.Fatal(err)
	}
	if want := []float32{0, 3, 3, 0, 0, 0, 0, 0}; fmt.Sprint(lat.Data) != fmt.Sprint(want) {
		t.Errorf("latents %v, want %v (ties to the lower index)", lat.Data, want)
	}
}

func TestEncodeShapes(t *testing.T) {
	ae, err := LoadStateDict(randomSAE{nLatents: 16, nInputs: 4}.stateDict())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	x := randomInput(6, 4, 1)
	x.Shape = []int{2, 3, 4}
	lat, err := ae.Encode(ctx, x)
	if err != nil || fmt.Sprint(lat.Shape) != "[2 3 16]" {
		t.Fatalf("encode [2,3,4]: %v, %v", lat, err)
	}
	rec, err := ae.Decode(ctx, lat)
	if err != nil || fmt.Sprint(rec.Shape) != "[2 3 4]" {
		t.Fatalf("decode [2,3,16]: %v, %v", rec, err)
	}
	empty, err := ae.Encode(ctx, hooks.Zeros(0, 4))
	if err != nil || fmt.Sprint(empty.Shape) != "[0 16]" {
		t.Fatalf("encode [0,4]: %v, %v", empty, err)
	}
	for _, bad := range []*hooks.Tensor{nil, hooks.Zeros(2, 5), {Shape: []int{2, 4}, Data: make([]float32, 7)}, {}} {
		if _, err := ae.Encode(ctx, bad); !errors.Is(err, ErrShape) {
			t.Errorf("encode %v: got %v, want ErrShape", bad, err)
		}
	}
	if _, err := ae.Decode(ctx, hooks.Zeros(1, 4)); !errors.Is(err, ErrShape) {
		t.Errorf("decode of inputs: got %v, want ErrShape", err)
	}
	for _, idx := range [][]int{{}, {16}, {-1}} {
		if _, err := ae.EncodePreAct(ctx, x, idx); !errors.Is(err, ErrShape) {
			t.Errorf("encode_pre_act %v: got %v, want ErrShape", idx, err)
		}
	}
	dir := ae.Dir()
	if err := ae.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := ae.Encode(ctx, x); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: got %v, want ErrClosed", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("private folder %s left after Close: %v", dir, err)
	}
	if err := ae.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestStateDictChecks(t *testing.T) {
	base := randomSAE{nLatents: 16, nInputs: 4, act: Activation{Name: TopK, K: 3, PostAct: Identity}}
	// TDB's TopK file also carries "activation.k" / "activation.postact_fn"
	// at the top level; a file with only those loads too.
	only := base
	only.topLevelOnly = true
	ae, err := LoadStateDict(only.stateDict())
	if err != nil {
		t.Fatal(err)
	}
	if ae.Activation != base.act {
		t.Errorf("activation from top-level keys: %+v, want %+v", ae.Activation, base.act)
	}
	ae.Close()

	// Missing buffers take the constructor's defaults.
	sd := randomSAE{nLatents: 16, nInputs: 4}.stateDict()
	delete(sd.Tensors, keyLastNZ)
	delete(sd.Tensors, keyMeanSquare)
	delete(sd.Values, "activation")
	delete(sd.Values, "activation_state_dict")
	ae, err = LoadStateDict(sd)
	if err != nil {
		t.Fatal(err)
	}
	if ae.Activation.Name != ReLU {
		t.Errorf("default activation %s, want ReLU", ae.Activation)
	}
	freq, _, err := ae.Tensor(keyFrequency)
	if err != nil || fmt.Sprint(freq) != fmt.Sprint(ones(16)) {
		t.Errorf("default frequencies %v, %v; want ones", freq, err)
	}
	ae.Close()

	for name, edit := range map[string]func(sd *torchpt.StateDict){
		"no decoder":         func(sd *torchpt.StateDict) { delete(sd.Tensors, keyDecoder) },
		"no encoder":         func(sd *torchpt.StateDict) { delete(sd.Tensors, keyEncoder) },
		"decoder transposed": func(sd *torchpt.StateDict) { sd.Tensors[keyDecoder].Shape = []int{16, 4} },
		"short pre_bias":     func(sd *torchpt.StateDict) { sd.Tensors[keyPreBias].Shape = []int{3} },
		"int encoder": func(sd *torchpt.StateDict) {
			sd.Tensors[keyEncoder] = &torchpt.Tensor{DType: "int64", Shape: []int{16, 4}, I64: make([]int64, 64)}
		},
		"unknown activation": func(sd *torchpt.StateDict) { sd.Values["activation"] = "GELU" },
		"topk without k": func(sd *torchpt.StateDict) {
			sd.Values["activation"] = "TopK"
			sd.Values["activation_state_dict"] = map[string]any{}
		},
		"topk k too big": func(sd *torchpt.StateDict) {
			sd.Values["activation"] = "TopK"
			sd.Values["activation_state_dict"] = map[string]any{"k": int64(17), "postact_fn": "ReLU"}
		},
		"bad postact": func(sd *torchpt.StateDict) {
			sd.Values["activation"] = "TopK"
			sd.Values["activation_state_dict"] = map[string]any{"k": int64(2), "postact_fn": "Tanh"}
		},
	} {
		sd := randomSAE{nLatents: 16, nInputs: 4}.stateDict()
		edit(sd)
		if ae, err := LoadStateDict(sd); !errors.Is(err, ErrBadStateDict) {
			if ae != nil {
				ae.Close()
			}
			t.Errorf("%s: got %v, want ErrBadStateDict", name, err)
		}
	}
}

func TestLoadConvertsOnce(t *testing.T) {
	src, cache := t.TempDir(), t.TempDir()
	pt := randomSAE{nLatents: 32, nInputs: 8, freq: ones(32)}.save(t, src, "layer3.pt")
	a, err := Load(pt, WithCache(cache))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if rel, _ := filepath.Rel(cache, a.Dir()); filepath.Dir(rel) != filepath.Join("sae", "local") {
		t.Errorf("converted into %s, want under %s/sae/local", a.Dir(), cache)
	}
	st1, err := os.Stat(filepath.Join(a.Dir(), manifestName))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Load(pt, WithCache(cache))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	st2, _ := os.Stat(filepath.Join(b.Dir(), manifestName))
	if b.Dir() != a.Dir() || !st2.ModTime().Equal(st1.ModTime()) {
		t.Errorf("second load converted again: %s vs %s", b.Dir(), a.Dir())
	}
	// A folder opens directly.
	c, err := Load(a.Dir())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	// A changed file is converted again, into another folder.
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(pt, later, later); err != nil {
		t.Fatal(err)
	}
	d, err := Load(pt, WithCache(cache))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.Dir() == a.Dir() {
		t.Error("a changed .pt reused the old conversion")
	}
	// Weights sit at page-aligned offsets.
	for key, ref := range d.man.Tensors {
		if ref.Offset%weightsfile.Alignment != 0 {
			t.Errorf("%s at offset %d", key, ref.Offset)
		}
	}
	entries, _ := os.ReadDir(filepath.Dir(a.Dir()))
	for _, e := range entries {
		if filepath.Ext(e.Name()) != "" && !isConverted(filepath.Join(filepath.Dir(a.Dir()), e.Name())) {
			t.Errorf("leftover %s in the cache", e.Name())
		}
	}
	if _, err := Load(filepath.Join(src, "missing.pt"), WithCache(cache)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: got %v", err)
	}
	if _, err := Load(src, WithCache(cache)); !errors.Is(err, ErrNotConverted) {
		t.Errorf("plain folder: got %v, want ErrNotConverted", err)
	}
}

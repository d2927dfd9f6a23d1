package sae_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/export/arch/gpt2/tlnames"
	"github.com/onnx-tdb/onnx-tdb/export/safetensors"
	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/internal/golden"
	"github.com/onnx-tdb/onnx-tdb/internal/goldenmodel"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
	"github.com/onnx-tdb/onnx-tdb/sae"
)

// saelensCases is the part of the saelens golden cases.json these tests read.
type saelensCases struct {
	Inputs []struct {
		Name             string  `json:"name"`
		Rows             [][]int `json:"rows"`
		LastRealPosition []int   `json:"last_real_position"`
	} `json:"inputs"`
	SAEs []struct {
		Name         string                              `json:"name"`
		Family       string                              `json:"family"`
		Path         string                              `json:"path"`
		TDBSite      string                              `json:"tdb_site"`
		SAEHookLayer int                                 `json:"sae_hook_layer"`
		AblateLatent int                                 `json:"ablate_latent"`
		PerInput     map[string]map[string]golden.Tensor `json:"per_input"`
	} `json:"saes"`
}

func loadSAELensCases(t testing.TB) (string, *saelensCases) {
	t.Helper()
	dir := golden.RequireShared(t, "saelens")
	b, err := os.ReadFile(filepath.Join(dir, "cases.json"))
	if err != nil {
		t.Fatal(err)
	}
	var c saelensCases
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return dir, &c
}

func checkTensor(t testing.TB, dir, name string, got []float32, want golden.Tensor) {
	t.Helper()
	w, err := golden.ReadFile(filepath.Join(dir, want.File))
	if err != nil {
		t.Fatal(err)
	}
	if worst, fail := golden.Diff(got, w, golden.Tolerance(want.MaxAbs)); fail != "" {
		t.Errorf("%s: %s (worst %.3g)", name, fail, worst)
	}
}

// gpt2Resolver is the TL-name resolver of the golden GPT-2 model.
func gpt2Resolver(t testing.TB, m *modelctx.Transformer) sae.Resolver {
	t.Helper()
	mc, err := m.ModelContext()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mc.Close() })
	cfg := m.Manifest().Config
	return tlnames.Resolver(tlnames.Model{NLayers: m.NLayers(), NHeads: cfg.NHeads, DHead: cfg.DHead, DModel: cfg.DModel, Weights: mc})
}

// TestGoldenSAELens splices every golden SAELens SAE, transcoder and v5
// SAE at its site and checks the latents and reconstruction its sae.*
// points see and the logits, with the error term, without, and with a
// latent ablated.
func TestGoldenSAELens(t *testing.T) {
	dir, c := loadSAELensCases(t)
	m, err := modelctx.Open(goldenmodel.Dir(t), modelctx.WithDevice(goldenmodel.Device(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	resolve := gpt2Resolver(t, m)
	ctx := context.Background()
	for _, s := range c.SAEs {
		t.Run(s.Name, func(t *testing.T) {
			ae, err := sae.Open(ctx, filepath.Join(dir, s.Path), sae.WithCache(t.TempDir()))
			if err != nil {
				t.Fatal(err)
			}
			defer ae.Close()
			var b sae.Binding
			if strings.HasSuffix(s.Path, ".pt") {
				site, err := m.ParseSite(s.TDBSite)
				if err != nil {
					t.Fatal(err)
				}
				b = sae.PlainBinding(site)
				if ae.Family() != sae.FamilyOpenAIV5 {
					t.Errorf("family %q, want %q from the v5 path", ae.Family(), sae.FamilyOpenAIV5)
				}
			} else if b, err = sae.Bind(ae, resolve, m.NLayers()); err != nil {
				t.Fatal(err)
			}
			if b.Layer != s.SAEHookLayer {
				t.Errorf("sae.* layer %d, want %d", b.Layer, s.SAEHookLayer)
			}
			for _, in := range c.Inputs {
				ref := s.PerInput[in.Name]
				for _, variant := range []string{"add_error", "replace", "ablate_latent"} {
					h := hooks.New()
					rm := sae.SpliceBound(h, ae, b, variant != "replace")
					var lat, rec *hooks.Tensor
					h.Observe(hooks.SAE.Latents, func(_ *hooks.Context, x *hooks.Tensor) error { lat = x.Clone(); return nil }, hooks.AtLayers(b.Layer))
					h.Observe(hooks.SAE.Reconstruction, func(_ *hooks.Context, x *hooks.Tensor) error { rec = x.Clone(); return nil }, hooks.AtLayers(b.Layer))
					if variant == "ablate_latent" {
						h.Add(hooks.SAE.Latents, func(_ *hooks.Context, x *hooks.Tensor) (*hooks.Tensor, error) {
							return x, x.FillTrailing(0, s.AblateLatent)
						}, hooks.AtLayers(b.Layer))
					}
					out, err := m.Forward(ctx, in.Rows, modelctx.WithHooks(h))
					rm()
					if err != nil {
						t.Fatalf("%s %s: %v", in.Name, variant, err)
					}
					name := in.Name + "/" + variant
					checkTensor(t, dir, name+"/logits", golden.LastLogits(out.Logits.Shape, out.Logits.Data, in.LastRealPosition), ref["logits_"+variant])
					if variant == "add_error" {
						if lat == nil || rec == nil {
							t.Fatalf("%s: the sae.* points were not called", name)
						}
						checkTensor(t, dir, name+"/latents", lat.Data, ref["latents"])
						checkTensor(t, dir, name+"/reconstruction", rec.Data, ref["reconstruction"])
					}
				}
			}
		})
	}
}

// TestSAELensSpliceGradient checks the gradient of a logit through every
// golden SAELens SAE, transcoder and the v5 SAE, with and without the error
// term, against finite differences of the spliced model (a directional
// derivative at resid.post_emb): the site maps, normalisations, skip terms
// and a transcoder's path from its input site are all differentiated.
func TestSAELensSpliceGradient(t *testing.T) {
	dir, c := loadSAELensCases(t)
	m, err := modelctx.Open(goldenmodel.Dir(t), modelctx.WithDevice(goldenmodel.Device(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	resolve := gpt2Resolver(t, m)
	ctx := context.Background()
	rows := [][]int{{464, 2068, 7586, 21831, 18045}}
	const tok = 11
	loss := modelctx.LogitLoss(0, -1, tok)
	postEmb := hooks.Site{Point: hooks.ResidPostEmb, Layer: -1}
	D := m.Manifest().Config.DModel
	dirv := make([]float32, len(rows[0])*D)
	for i := range dirv {
		dirv[i] = float32((i*7919)%13-6) / 6
	}
	value := func(h *hooks.Hooks, e float32) float64 {
		move := hooks.New()
		move.Add(hooks.ResidPostEmb, func(_ *hooks.Context, x *hooks.Tensor) (*hooks.Tensor, error) {
			for i := range x.Data {
				x.Data[i] += e * dirv[i]
			}
			return x, nil
		})
		out, err := m.Forward(ctx, rows, modelctx.WithHooks(h, move))
		if err != nil {
			t.Fatal(err)
		}
		V, T := out.Logits.Shape[2], out.Logits.Shape[1]
		return float64(out.Logits.Data[(T-1)*V+tok])
	}
	for _, s := range c.SAEs {
		ae, err := sae.Open(ctx, filepath.Join(dir, s.Path), sae.WithCache(t.TempDir()))
		if err != nil {
			t.Fatal(err)
		}
		defer ae.Close()
		var b sae.Binding
		if strings.HasSuffix(s.Path, ".pt") {
			site, _ := m.ParseSite(s.TDBSite)
			b = sae.PlainBinding(site)
		} else if b, err = sae.Bind(ae, resolve, m.NLayers()); err != nil {
			t.Fatal(err)
		}
		for _, addError := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/add_error=%v", s.Name, addError), func(t *testing.T) {
				h := hooks.New()
				defer sae.SpliceBound(h, ae, b, addError)()
				g, err := m.Backward(ctx, rows, loss, modelctx.WithHooks(h))
				if err != nil {
					t.Fatal(err)
				}
				e, tol := float32(1e-3), 2e-2
				if !addError {
					e, tol = 1e-4, 5e-2
					if s.Family == "jumprelu" {
						// Its latents jump by their threshold: a step must not cross one.
						e = 1e-5
					}
				}
				num := (value(h, e) - value(h, -e)) / (2 * float64(e))
				an := 0.0
				for i, v := range g.Grads[postEmb].Data {
					an += float64(v) * float64(dirv[i])
				}
				if math.Abs(an-num) > 2e-3+tol*math.Abs(num) {
					t.Errorf("directional derivative %.6g, finite difference %.6g", an, num)
				}
			})
		}
	}
}

// TestSpliceAtOncePoint splices a SAELens SAE named blocks.0.hook_resid_pre
// (TDB's once point resid.post_emb): its sae.* points are at layer 0 and
// an unedited add-error splice leaves the logits.
func TestSpliceAtOncePoint(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sae")
	os.MkdirAll(dir, 0o755)
	cfg, _ := json.Marshal(map[string]any{"architecture": "topk", "k": 4, "d_in": 64, "d_sae": 16,
		"normalize_activations": "layer_norm", "hook_name": "blocks.0.hook_resid_pre"})
	os.WriteFile(filepath.Join(dir, "cfg.json"), cfg, 0o644)
	fill := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(math.Cos(float64(3*i))) / 5
		}
		return v
	}
	var w bytes.Buffer
	safetensors.Write(&w, []safetensors.Tensor{
		safetensors.F32("W_enc", []int{64, 16}, fill(1024)), safetensors.F32("b_enc", []int{16}, fill(16)),
		safetensors.F32("W_dec", []int{16, 64}, fill(1024)), safetensors.F32("b_dec", []int{64}, fill(64)),
	}, nil)
	os.WriteFile(filepath.Join(dir, "sae_weights.safetensors"), w.Bytes(), 0o644)

	m, err := modelctx.Open(goldenmodel.Dir(t), modelctx.WithDevice(goldenmodel.Device(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := context.Background()
	ae, err := sae.Open(ctx, dir, sae.WithCache(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer ae.Close()
	b, err := sae.Bind(ae, gpt2Resolver(t, m), m.NLayers())
	if err != nil {
		t.Fatal(err)
	}
	if b.In.String() != "resid.post_emb" || b.Layer != 0 || b.InMap == nil || !b.InMap.Center {
		t.Fatalf("binding %+v", b)
	}
	rows := [][]int{{464, 2068, 7586}}
	plain, err := m.Forward(ctx, rows)
	if err != nil {
		t.Fatal(err)
	}
	for _, addError := range []bool{true, false} {
		h := hooks.New()
		rm := sae.SpliceBound(h, ae, b, addError)
		calls := 0
		h.Observe(hooks.SAE.Latents, func(_ *hooks.Context, z *hooks.Tensor) error { calls++; return nil }, hooks.AtLayers(0))
		out, err := m.Forward(ctx, rows, modelctx.WithHooks(h))
		rm()
		if err != nil {
			t.Fatal(err)
		}
		worst := 0.0
		for i, v := range plain.Logits.Data {
			worst = math.Max(worst, math.Abs(float64(v-out.Logits.Data[i])))
		}
		if calls != 1 || (addError && worst > 1e-4) || (!addError && worst < 1e-3) {
			t.Errorf("add_error=%v: sae.latents called %d times, logits moved %.3g", addError, calls, worst)
		}
	}
}

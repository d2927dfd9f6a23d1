package sae_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/export/arch/gpt2/tlnames"
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

package sae

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/internal/golden"
)

// loadGolden opens one golden SAE file through the .pt conversion path,
// with a private cache.
func loadGolden(t testing.TB, info golden.SAEInfo) *Autoencoder {
	t.Helper()
	ae, err := Load(filepath.Join(golden.Dir(), info.File), WithCache(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ae.Close() })
	return ae
}

// goldenInput returns the golden activation an SAE result was computed from.
func goldenInput(t testing.TB, in *golden.Input, r golden.SAEResult) *hooks.Tensor {
	t.Helper()
	for _, a := range in.Activations {
		if a.Hook == r.Input.Hook && a.Layer != nil && *a.Layer == r.Input.Layer {
			return &hooks.Tensor{Shape: a.Shape, Data: golden.Read(t, a.Tensor)}
		}
	}
	t.Fatalf("%s: no activation %s@%d", in.Name, r.Input.Hook, r.Input.Layer)
	return nil
}

func TestGoldenSAEFilesLoad(t *testing.T) {
	c := golden.Load(t)
	if len(c.SAEs) != 3 {
		t.Fatalf("%d golden SAEs, want 3", len(c.SAEs))
	}
	for name, info := range c.SAEs {
		t.Run(name, func(t *testing.T) {
			ae := loadGolden(t, info)
			if ae.NInputs != info.NInputs || ae.NLatents != info.NLatents || ae.Activation.Name != info.Activation {
				t.Errorf("loaded %s, want %d inputs, %d latents, %s", ae, info.NInputs, info.NLatents, info.Activation)
			}
			if info.K != nil && (ae.Activation.K != *info.K || ae.Activation.PostAct != ReLU) {
				t.Errorf("activation %s, want TopK k=%d with ReLU", ae.Activation, *info.K)
			}
		})
	}
}

func TestGoldenEncodeDecode(t *testing.T) {
	c := golden.Load(t)
	aes := map[string]*Autoencoder{}
	for name, info := range c.SAEs {
		aes[name] = loadGolden(t, info)
	}
	ctx := context.Background()
	n := 0
	for i := range c.Inputs {
		in := &c.Inputs[i]
		for _, r := range in.SAE {
			t.Run(in.Name+"/"+r.SAE, func(t *testing.T) {
				ae := aes[r.SAE]
				x := goldenInput(t, in, r)
				lat, err := ae.Encode(ctx, x)
				if err != nil {
					t.Fatal(err)
				}
				if fmt.Sprint(lat.Shape) != fmt.Sprint(r.Latents.Shape) {
					t.Fatalf("latents shape %v, want %v", lat.Shape, r.Latents.Shape)
				}
				golden.Check(t, "latents", lat.Data, r.Latents)
				rec, err := ae.Decode(ctx, lat)
				if err != nil {
					t.Fatal(err)
				}
				if fmt.Sprint(rec.Shape) != fmt.Sprint(r.Reconstruction.Shape) {
					t.Fatalf("reconstruction shape %v, want %v", rec.Shape, r.Reconstruction.Shape)
				}
				golden.Check(t, "reconstruction", rec.Data, r.Reconstruction)
				// The reference decode of the reference latents, too.
				ref := &hooks.Tensor{Shape: r.Latents.Shape, Data: golden.Read(t, r.Latents)}
				if rec, err = ae.Decode(ctx, ref); err != nil {
					t.Fatal(err)
				}
				golden.Check(t, "decode(reference latents)", rec.Data, r.Reconstruction)
			})
			n++
		}
	}
	if n != 3*len(c.Inputs) {
		t.Errorf("compared %d SAE results, want %d", n, 3*len(c.Inputs))
	}
}

package gpt2_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/export"
	"github.com/onnx-tdb/onnx-tdb/export/arch/gpt2"
	"github.com/onnx-tdb/onnx-tdb/export/fetch"
	"github.com/onnx-tdb/onnx-tdb/export/fetch/fetchtest"
	"github.com/onnx-tdb/onnx-tdb/internal/golden"
)

// copyCheckpoint copies the golden checkpoint so a test can damage it.
func copyCheckpoint(t *testing.T) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "ck")
	src := golden.ModelDir()
	err := filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if info.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func TestExportGolden(t *testing.T) {
	ck, err := gpt2.OpenCheckpoint(golden.ModelDir())
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "m")
	man, err := export.Write(context.Background(), ck, out, export.WriteOptions{Whole: true})
	if err != nil {
		t.Fatal(err)
	}
	if man.Config != (export.Dims{NLayers: 2, DModel: 64, NHeads: 4, DHead: 16, DFF: 256, NVocab: 50257, NCtx: 64}) {
		t.Errorf("config %+v", man.Config)
	}
	if len(man.Points) != 21*2+6 || len(man.Stages) != 4 || len(man.KVCache) != 2 {
		t.Errorf("points %d, stages %d, kv %d", len(man.Points), len(man.Stages), len(man.KVCache))
	}
	for _, w := range man.Weights.Tensors {
		if w.Offset%export.Alignment != 0 {
			t.Errorf("%s at offset %d, not page-aligned", w.Name, w.Offset)
		}
	}
	back, err := export.ReadManifest(out)
	if err != nil || back.Name != "m" || back.Whole != "whole.onnx" {
		t.Fatalf("read back: %+v %v", back, err)
	}
	if _, err := export.Write(context.Background(), ck, out, export.WriteOptions{}); !errors.Is(err, export.ErrExists) {
		t.Errorf("second export without overwrite: %v", err)
	}
	if _, err := export.Write(context.Background(), ck, out, export.WriteOptions{Overwrite: true}); err != nil {
		t.Errorf("overwrite: %v", err)
	}
	entries, _ := os.ReadDir(filepath.Dir(out))
	if len(entries) != 1 {
		t.Errorf("leftovers beside the export: %v", entries)
	}
}

func TestCheckpointErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(dir string)
		want   string
	}{
		{"missing piece", func(d string) { os.Remove(filepath.Join(d, "model_pieces", "xf_layers.1.ln_2.bias.pt")) }, "missing pieces xf_layers.1.ln_2.bias"},
		{"extra piece", func(d string) {
			os.WriteFile(filepath.Join(d, "model_pieces", "xf_layers.2.ln_1.bias.pt"), []byte("x"), 0o644)
		}, "unexpected pieces xf_layers.2.ln_1.bias"},
		{"no config", func(d string) { os.Remove(filepath.Join(d, "config.json")) }, "config.json"},
		{"bad config", func(d string) { os.WriteFile(filepath.Join(d, "config.json"), []byte("{"), 0o644) }, "config.json"},
		{"other encoding", func(d string) {
			os.WriteFile(filepath.Join(d, "config.json"), []byte(`{"enc":"cl100k_base","ctx_window":64,"d_model":64,"n_layers":2,"m_attn":1,"n_heads":4,"m_mlp":4}`), 0o644)
		}, "cl100k_base"},
		{"heads do not divide", func(d string) {
			os.WriteFile(filepath.Join(d, "config.json"), []byte(`{"enc":"gpt2","ctx_window":64,"d_model":64,"n_layers":2,"m_attn":1,"n_heads":5,"m_mlp":4}`), 0o644)
		}, "not divisible"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyCheckpoint(t)
			tc.damage(dir)
			_, err := gpt2.OpenCheckpoint(dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestExportRejectsBadPiecesAndLeavesNothing(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(dir string)
		want   string
	}{
		{"truncated piece", func(d string) {
			p := filepath.Join(d, "model_pieces", "xf_layers.0.mlp.in_layer.weight.pt")
			b, _ := os.ReadFile(p)
			os.WriteFile(p, b[:len(b)/2], 0o644)
		}, "xf_layers.0.mlp.in_layer.weight.pt"},
		{"wrong shape", func(d string) {
			// The bias of one layer where the weight should be.
			b, _ := os.ReadFile(filepath.Join(d, "model_pieces", "xf_layers.0.attn.q_proj.bias.pt"))
			os.WriteFile(filepath.Join(d, "model_pieces", "xf_layers.0.attn.q_proj.weight.pt"), b, 0o644)
		}, "has shape [64], config.json needs [64 64]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyCheckpoint(t)
			tc.damage(dir)
			ck, err := gpt2.OpenCheckpoint(dir)
			if err != nil {
				t.Fatal(err)
			}
			outDir := t.TempDir()
			_, err = export.Write(context.Background(), ck, filepath.Join(outDir, "m"), export.WriteOptions{})
			if !errors.Is(err, export.ErrCheckpoint) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want export.ErrCheckpoint mentioning %q", err, tc.want)
			}
			if entries, _ := os.ReadDir(outDir); len(entries) != 0 {
				t.Fatalf("a failed export left %v behind", entries)
			}
		})
	}
}

// TestModelViewsExportLikeModel reads the checkpoint saved as TDB's HF
// converter saves GPT-2 (strided views with storage offsets) and checks that
// every weight equals the contiguous checkpoint's.
func TestModelViewsExportLikeModel(t *testing.T) {
	views := golden.RequireShared(t, "model_views")
	a, err := gpt2.OpenCheckpoint(golden.ModelDir())
	if err != nil {
		t.Fatal(err)
	}
	b, err := gpt2.OpenCheckpoint(views)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range gpt2.Keys(a.Dims()) {
		x, _, err := a.Tensor(k)
		if err != nil {
			t.Fatal(err)
		}
		y, _, err := b.Tensor(k)
		if err != nil {
			t.Fatal(err)
		}
		for i := range x {
			if x[i] != y[i] {
				t.Fatalf("%s[%d]: views give %v, model gives %v", k, i, y[i], x[i])
			}
		}
	}
}

func TestResolveLocalFolderExportsOnce(t *testing.T) {
	o := export.ResolveOptions{Fetch: fetch.Options{Dir: t.TempDir(), Progress: io.Discard}}
	dir, err := export.Resolve(context.Background(), golden.ModelDir(), o)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(filepath.Join(dir, export.ManifestFile))
	again, err := export.Resolve(context.Background(), golden.ModelDir(), o)
	if err != nil || again != dir {
		t.Fatalf("second resolve: %s %v", again, err)
	}
	st2, _ := os.Stat(filepath.Join(dir, export.ManifestFile))
	if !st.ModTime().Equal(st2.ModTime()) {
		t.Error("second resolve exported again")
	}
	if got, err := export.Resolve(context.Background(), dir, o); err != nil || got != dir {
		t.Errorf("an exported folder resolves to itself: %s %v", got, err)
	}
	// A cached export whose graphs an earlier version built is made again.
	m, err := export.ReadManifest(dir)
	if err != nil || m.GraphsVersion != gpt2.GraphsVersion {
		t.Fatalf("manifest graphs version %v (%v), want %d", m, err, gpt2.GraphsVersion)
	}
	m.GraphsVersion = 0
	js, _ := json.Marshal(m)
	if err := os.WriteFile(filepath.Join(dir, export.ManifestFile), js, 0o644); err != nil {
		t.Fatal(err)
	}
	if again, err := export.Resolve(context.Background(), golden.ModelDir(), o); err != nil || again != dir {
		t.Fatalf("resolve over a stale export: %s %v", again, err)
	}
	if m, err := export.ReadManifest(dir); err != nil || m.GraphsVersion != gpt2.GraphsVersion {
		t.Fatalf("stale export not made again: version %v (%v)", m.GraphsVersion, err)
	}
	if _, err := export.Resolve(context.Background(), "gpt2-tiny", o); !errors.Is(err, export.ErrUnknownModel) {
		t.Errorf("unknown name: %v", err)
	}
}

// TestResolveFromBlobStorage uploads the golden checkpoint to Azurite in the
// public layout and loads it through az:// and https URLs, anonymously.
func TestResolveFromBlobStorage(t *testing.T) {
	az := fetchtest.StartAzurite(t)
	prefix := "subject-models/gpt2/tiny"
	az.UploadDir("neuron-explainer", prefix, golden.ModelDir())
	cache := t.TempDir()
	o := export.ResolveOptions{Fetch: fetch.Options{Dir: cache, Endpoint: az.Endpoint, Progress: io.Discard}}
	dir, err := export.Resolve(context.Background(), "az://openaipublic/neuron-explainer/"+prefix, o)
	if err != nil {
		t.Fatal(err)
	}
	man, err := export.ReadManifest(dir)
	if err != nil || man.Config.NLayers != 2 || man.Name != "tiny" {
		t.Fatalf("manifest %+v %v", man, err)
	}
	same, err := export.Resolve(context.Background(), "https://openaipublic.blob.core.windows.net/neuron-explainer/"+prefix, o)
	if err != nil || same != dir {
		t.Fatalf("https form: %s %v (az:// gave %s)", same, err, dir)
	}
	_, err = export.Resolve(context.Background(), "az://openaipublic/neuron-explainer/subject-models/gpt2/none", o)
	if !errors.Is(err, fetch.ErrNotFound) {
		t.Errorf("missing checkpoint: %v", err)
	}
	// A missing piece is reported by name and nothing is exported.
	az.UploadFile("neuron-explainer", "subject-models/gpt2/broken/config.json", filepath.Join(golden.ModelDir(), "config.json"))
	_, err = export.Resolve(context.Background(), "az://openaipublic/neuron-explainer/subject-models/gpt2/broken", o)
	if !errors.Is(err, fetch.ErrNotFound) || !strings.Contains(err.Error(), "model_pieces") {
		t.Errorf("checkpoint without pieces: %v", err)
	}
	if _, err := os.Stat(filepath.Join(cache, "exported", "openaipublic", "neuron-explainer", "subject-models", "gpt2", "broken")); err == nil {
		t.Error("a failed load left an export behind")
	}
}

func TestResolveUnreachable(t *testing.T) {
	o := export.ResolveOptions{Fetch: fetch.Options{Dir: t.TempDir(), Endpoint: "http://127.0.0.1:1/{account}", Progress: io.Discard}}
	ctx, cancel := context.WithTimeout(context.Background(), 60e9)
	defer cancel()
	_, err := export.Resolve(ctx, "gpt2-small", o)
	if !errors.Is(err, fetch.ErrUnreachable) {
		t.Fatalf("got %v", err)
	}
}

package sae

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/export/fetch"
)

// fakeHub serves files under the Hub's URL layout,
// /<owner>/<repo>/resolve/main/<path>, and counts requests.
type fakeHub struct {
	files map[string][]byte // "owner/repo/path" -> content
	auth  atomic.Value      // last Authorization header
	n     atomic.Int64
}

func (h *fakeHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.n.Add(1)
	h.auth.Store(r.Header.Get("Authorization"))
	owner, rest, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	repo, rest, _ := strings.Cut(rest, "/")
	path, ok := strings.CutPrefix(rest, "resolve/main/")
	b, found := h.files[owner+"/"+repo+"/"+path]
	if !ok || !found {
		http.NotFound(w, r)
		return
	}
	w.Write(b)
}

func TestSAELensReleaseDownload(t *testing.T) {
	s := standardTiny(6, 10)
	s.cfg["normalize_activations"] = "expected_average_only_in"
	src := s.write(t, filepath.Join(t.TempDir(), "src"))
	cfg, _ := os.ReadFile(filepath.Join(src, saelensCfgName))
	weights, _ := os.ReadFile(filepath.Join(src, saelensWeightsName))
	hub := &fakeHub{files: map[string][]byte{
		"tester/tiny-saes/layer_0:v1/cfg.json":                cfg,
		"tester/tiny-saes/layer_0:v1/sae_weights.safetensors": weights,
		"tester/tiny-saes/broken/cfg.json":                    cfg,
		"tester/tiny-saes/broken/sae_weights.safetensors":     weights[:len(weights)-8],
	}}
	srv := httptest.NewServer(hub)
	defer srv.Close()
	t.Setenv("HF_ENDPOINT", srv.URL+"/")
	t.Setenv("HF_TOKEN", "hf_test_token")
	RegisterRelease(Release{Name: "test-tiny-release", Repo: "tester/tiny-saes", Model: "test",
		Processing: map[string]bool{"center_writing_weights": true},
		SAEs: []ReleaseSAE{
			{ID: "blocks.0.hook_mlp_out", Path: "layer_0:v1", NormScalingFactor: 2},
			{ID: "broken", Path: "broken"},
		}})

	cache := t.TempDir()
	opts := []Option{WithCache(cache), WithFetch(fetch.Options{Progress: &strings.Builder{}})}
	ctx := context.Background()
	ae, err := Open(ctx, "saelens:test-tiny-release/blocks.0.hook_mlp_out", opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer ae.Close()
	if got := hub.auth.Load(); got != "Bearer hf_test_token" {
		t.Errorf("Authorization %q, want the HF_TOKEN bearer", got)
	}
	if site := ae.Site(); site == nil || !site.Processing.CenterWritingWeights || site.Processing.FoldLN {
		t.Errorf("site %+v: want the release's center_writing_weights over the cfg's no processing", site)
	}
	// The release's norm_scaling_factor is folded in: W_enc·2, W_dec/2, b_dec/2.
	local, err := Open(ctx, src, WithCache(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	encA, _, _ := ae.Tensor(keyEncoder)
	encB, _, _ := local.Tensor(keyEncoder)
	decA, _, _ := ae.Tensor(keyPreBias)
	decB, _, _ := local.Tensor(keyPreBias)
	if encA[3] != 2*encB[3] || decA[1] != decB[1]/2 {
		t.Errorf("norm_scaling_factor not folded: encoder %g vs %g, b_dec %g vs %g", encA[3], encB[3], decA[1], decB[1])
	}

	// The second open is served from the cache.
	before := hub.n.Load()
	again, err := Open(ctx, "saelens:test-tiny-release/blocks.0.hook_mlp_out", opts...)
	if err != nil {
		t.Fatal(err)
	}
	again.Close()
	if hub.n.Load() != before {
		t.Errorf("second open made %d requests", hub.n.Load()-before)
	}

	// A corrupt download is an error and leaves nothing in the cache.
	if _, err := Open(ctx, "saelens:test-tiny-release/broken", opts...); !errors.Is(err, ErrBadSAELensFolder) {
		t.Errorf("corrupt weights: %v, want ErrBadSAELensFolder", err)
	}
	if _, err := os.Stat(filepath.Join(cache, "sae", "hf", "tester", "tiny-saes", "broken")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a corrupt download was cached: %v", err)
	}
	// Unknown releases list the known ones; unknown ids list the release's.
	if _, err := Open(ctx, "saelens:no-such-release/x", opts...); !errors.Is(err, ErrUnknownRelease) || !strings.Contains(err.Error(), "test-tiny-release") {
		t.Errorf("unknown release: %v", err)
	}
	if _, err := Open(ctx, "saelens:test-tiny-release/blocks.1.hook_mlp_out", opts...); !errors.Is(err, ErrUnknownRelease) || !strings.Contains(err.Error(), "blocks.0.hook_mlp_out") {
		t.Errorf("unknown id: %v", err)
	}
	// A file the repository lacks.
	RegisterRelease(Release{Name: "test-missing", Repo: "tester/none", SAEs: []ReleaseSAE{{ID: "a", Path: "a"}}})
	if _, err := Open(ctx, "saelens:test-missing/a", opts...); !errors.Is(err, fetch.ErrNotFound) {
		t.Errorf("missing repository: %v, want fetch.ErrNotFound", err)
	}
}

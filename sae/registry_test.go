package sae

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/export/fetch"
	"github.com/onnx-tdb/onnx-tdb/export/fetch/fetchtest"
)

func TestRegistryLocations(t *testing.T) {
	want := map[string]string{
		"ae-mlp-post-act-v1":     "mlp_post_act",
		"ae-resid-delta-mlp-v1":  "resid_delta_mlp",
		"ae-mlp-post-act-v4":     "mlp_post_act_v4",
		"ae-resid-delta-mlp-v4":  "resid_delta_mlp_v4",
		"ae-resid-delta-attn-v4": "resid_delta_attn_v4",
	}
	names := Names("gpt2-small")
	if fmt.Sprint(names) != "[ae-mlp-post-act-v1 ae-resid-delta-mlp-v1 ae-mlp-post-act-v4 ae-resid-delta-mlp-v4 ae-resid-delta-attn-v4]" {
		t.Errorf("names %v", names)
	}
	if len(Names("gpt2-xl")) != 0 {
		t.Error("gpt2-xl has no autoencoders")
	}
	for _, name := range names {
		f, err := LookupFamily("gpt2-small", name)
		if err != nil {
			t.Fatal(err)
		}
		if f.Dir != want[name] || f.Layers != 12 {
			t.Errorf("%s: dir %s, %d layers", name, f.Dir, f.Layers)
		}
		loc := f.Location(7)
		if wantLoc := "az://openaipublic/sparse-autoencoder/gpt2-small/" + want[name] + "/autoencoders/7.pt"; loc != wantLoc {
			t.Errorf("%s layer 7: %s, want %s", name, loc, wantLoc)
		}
		l, err := fetch.Parse(loc)
		if err != nil {
			t.Fatal(err)
		}
		if https := "https://openaipublic.blob.core.windows.net/sparse-autoencoder/gpt2-small/" + want[name] + "/autoencoders/7.pt"; l.URL() != https {
			t.Errorf("%s: URL %s, want %s", name, l.URL(), https)
		}
		cfg := f.Config()
		if len(cfg.Paths) != 12 || cfg.Paths[11] != f.Location(11) || cfg.Validate() != nil {
			t.Errorf("%s: config %+v", name, cfg)
		}
		wantInput := map[string]Input{"mlp_post_act": MLPPostAct, "resid_delta_mlp": ResidDeltaMLP, "resid_delta_attn": ResidDeltaAttn}[strings.TrimSuffix(want[name], "_v4")]
		if f.Input != wantInput {
			t.Errorf("%s: input %s, want %s", name, f.Input, wantInput)
		}
		ref, in, err := Resolve(name, 3)
		if err != nil || ref != f.Location(3) || in != f.Input {
			t.Errorf("Resolve(%s, 3) = %s, %s, %v", name, ref, in, err)
		}
	}
	if f, _ := LookupFamily("", "ae-resid-delta-attn-v4"); f.Input.NodeType() != AttentionAutoencoderLatent || f.Input.Point().Path() != "resid.torso.delta_attn" {
		t.Errorf("attention family: node type %s, point %s", f.Input.NodeType(), f.Input.Point())
	}
	if _, err := LookupFamily("gpt2-small", "ae-mlp-post-act-v2"); !errors.Is(err, ErrUnknownAutoencoder) || !strings.Contains(err.Error(), "ae-mlp-post-act-v4") {
		t.Errorf("unknown name: %v (want ErrUnknownAutoencoder listing the names)", err)
	}
	if _, err := NewNamedContext("gpt2-small", "nope"); !errors.Is(err, ErrUnknownAutoencoder) {
		t.Errorf("NewNamedContext(nope): %v", err)
	}
	if _, _, err := Resolve("ae-mlp-post-act-v4", 12); !errors.Is(err, ErrNoLayer) {
		t.Errorf("layer 12: %v, want ErrNoLayer", err)
	}
	for _, ref := range []string{"layer1.pt", "az://openaipublic/x/y.pt", "/tmp/ae-folder", "ae-folder.pt"} {
		if got, in, err := Resolve(ref, 0); got != ref || in != "" || err != nil {
			t.Errorf("Resolve(%s) = %s, %s, %v; want it unchanged", ref, got, in, err)
		}
	}
}

type countingTransport struct {
	base http.RoundTripper
	n    atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.base.RoundTrip(r)
}

// TestRegistryDownload fetches a registered family's layer from Azurite on
// loopback (named like the public account), converts it into the same
// cache, and reuses both on the next load.
func TestRegistryDownload(t *testing.T) {
	a := fetchtest.StartAzurite(t)
	src, cache := t.TempDir(), t.TempDir()
	pt := randomSAE{nLatents: 40, nInputs: 12, freq: ones(40), seed: 5}.save(t, src, "0.pt")
	a.UploadFile("sparse-autoencoder", "gpt2-small/resid_delta_mlp_v4/autoencoders/0.pt", pt)

	tr := &countingTransport{base: http.DefaultTransport}
	opts := []Option{WithFetch(fetch.Options{Dir: cache, Endpoint: a.Endpoint, Progress: &strings.Builder{}, HTTPClient: &http.Client{Transport: tr}})}
	c, err := NewNamedContext("gpt2-small", "ae-resid-delta-mlp-v4", opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	ae, err := c.Get(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if ae.NLatents != 40 || ae.NInputs != 12 {
		t.Errorf("downloaded %s", ae)
	}
	if want := "https://openaipublic.blob.core.windows.net/sparse-autoencoder/gpt2-small/resid_delta_mlp_v4/autoencoders/0.pt"; ae.Source != want {
		t.Errorf("source %s, want %s", ae.Source, want)
	}
	blob := filepath.Join(cache, "blobs", "openaipublic", "sparse-autoencoder", "gpt2-small", "resid_delta_mlp_v4", "autoencoders", "0.pt")
	if _, err := os.Stat(blob); err != nil {
		t.Errorf("downloaded file not in the cache: %v", err)
	}
	if want := filepath.Join(cache, "sae", "blobs", "openaipublic", "sparse-autoencoder", "gpt2-small", "resid_delta_mlp_v4", "autoencoders", "0"); ae.Dir() != want {
		t.Errorf("converted into %s, want %s", ae.Dir(), want)
	}
	if tr.n.Load() == 0 {
		t.Error("no request reached Azurite")
	}
	x := randomInput(3, 12, 2)
	want, _ := ae.Encode(ctx, x)

	// A second load: no request, same folder.
	before := tr.n.Load()
	again, err := Open(ctx, "az://openaipublic/sparse-autoencoder/gpt2-small/resid_delta_mlp_v4/autoencoders/0.pt", opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if tr.n.Load() != before || again.Dir() != ae.Dir() {
		t.Errorf("second load made %d requests, folder %s", tr.n.Load()-before, again.Dir())
	}
	got, _ := again.Encode(ctx, x)
	if fmt.Sprint(got.Data) != fmt.Sprint(want.Data) {
		t.Error("second load encodes differently")
	}

	// A layer that is not there.
	if _, err := c.Get(ctx, 1); !errors.Is(err, fetch.ErrNotFound) {
		t.Errorf("missing layer 1: %v, want fetch.ErrNotFound", err)
	}
}

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

func TestResolvePassesOtherReferences(t *testing.T) {
	for _, ref := range []string{"layer1.pt", "az://openaipublic/x/y.pt", "/tmp/ae-folder", "ae-folder.pt", "saelens:r/id"} {
		if got, in, err := Resolve(ref, 0); got != ref || in != "" || err != nil {
			t.Errorf("Resolve(%s) = %s, %s, %v; want it unchanged", ref, got, in, err)
		}
	}
	if _, _, err := Resolve("ae-no-such-family", 0); !errors.Is(err, ErrUnknownAutoencoder) {
		t.Errorf("unknown ae- name: %v", err)
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
	a.UploadFile("sparse-autoencoder", "test-small/resid_delta_mlp_v4/autoencoders/0.pt", pt)
	RegisterFamily(Family{Name: "ae-test-resid-delta-mlp", Model: "test-small", Input: ResidDeltaMLP, Dir: "resid_delta_mlp_v4", Layers: 2})

	tr := &countingTransport{base: http.DefaultTransport}
	opts := []Option{WithFetch(fetch.Options{Dir: cache, Endpoint: a.Endpoint, Progress: &strings.Builder{}, HTTPClient: &http.Client{Transport: tr}})}
	c, err := NewNamedContext("test-small", "ae-test-resid-delta-mlp", opts...)
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
	if want := "https://openaipublic.blob.core.windows.net/sparse-autoencoder/test-small/resid_delta_mlp_v4/autoencoders/0.pt"; ae.Source != want {
		t.Errorf("source %s, want %s", ae.Source, want)
	}
	blob := filepath.Join(cache, "blobs", "openaipublic", "sparse-autoencoder", "test-small", "resid_delta_mlp_v4", "autoencoders", "0.pt")
	if _, err := os.Stat(blob); err != nil {
		t.Errorf("downloaded file not in the cache: %v", err)
	}
	if want := filepath.Join(cache, "sae", "blobs", "openaipublic", "sparse-autoencoder", "test-small", "resid_delta_mlp_v4", "autoencoders", "0"); ae.Dir() != want {
		t.Errorf("converted into %s, want %s", ae.Dir(), want)
	}
	if tr.n.Load() == 0 {
		t.Error("no request reached Azurite")
	}
	x := randomInput(3, 12, 2)
	want, _ := ae.Encode(ctx, x)

	// A second load: no request, same folder.
	before := tr.n.Load()
	again, err := Open(ctx, "az://openaipublic/sparse-autoencoder/test-small/resid_delta_mlp_v4/autoencoders/0.pt", opts...)
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

package harvest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/export/fetch"
	"github.com/onnx-tdb/onnx-tdb/export/fetch/fetchtest"
	"github.com/onnx-tdb/onnx-tdb/harvest/records"
	"github.com/onnx-tdb/onnx-tdb/internal/golden"
)

// A record of TDB's public layout (legacy neuron_id keys) loads from a blob
// service through the cache, by az:// and https:// location.
func TestLoadRecordFromAzurite(t *testing.T) {
	a := fetchtest.StartAzurite(t)
	const prefix = "gpt2-small/autoencoder_latent/resid_delta_mlp_v4"
	legacy := `{"dataclass_name":"NeuronRecord","neuron_id":{"dataclass_name":"NeuronId","layer":0,"idx":3},` +
		`"random_sample":[{"dataclass_name":"ActivationRecord","tokens":["Hello"," world"],"activations":[0.5,2.25]}],` +
		`"random_sample_by_quantile":null,"quantile_boundaries":null,"mean":0.1,"variance":0.2,"skewness":null,"kurtosis":null,` +
		`"most_positive_activation_records":[{"dataclass_name":"ActivationRecord","tokens":["A","B"],"activations":[3.0,-1.0]}]}`
	a.Upload("neuron-explainer", prefix+"/collated-activations/0/3.json", []byte(legacy))
	opts := WithFetch(fetch.Options{Dir: t.TempDir(), Endpoint: a.Endpoint})
	for _, loc := range []string{
		"az://openaipublic/neuron-explainer/" + prefix,
		"https://openaipublic.blob.core.windows.net/neuron-explainer/" + prefix,
	} {
		r, err := LoadRecord(context.Background(), loc, 0, 3, opts)
		if err != nil {
			t.Fatalf("%s: %v", loc, err)
		}
		if r.ID != (records.NeuronID{Layer: 0, Index: 3}) || len(r.MostPositive) != 1 || r.MostPositive[0].Activations[0] != 3 || r.RandomSample[0].Tokens[1] != " world" {
			t.Fatalf("%s: read %+v", loc, r)
		}
	}
	if _, err := LoadRecord(context.Background(), "az://openaipublic/neuron-explainer/"+prefix, 0, 4, opts); !errors.Is(err, ErrNoRecord) {
		t.Fatalf("missing record: got %v, want ErrNoRecord", err)
	}
}

func TestLoadRecordLocal(t *testing.T) {
	dir := golden.RequireShared(t, "harvest")
	exp := filepath.Join(dir, "b_delta_mlp_quantiles", "expected")
	ctx := context.Background()
	r, err := LoadRecord(ctx, exp, 1, 5, WithPoint("resid.torso.delta_mlp"))
	if err != nil {
		t.Fatal(err)
	}
	if r.ID.Layer != 1 || r.ID.Index != 5 || len(r.QuantileBoundaries) != 6 || len(r.RandomSampleByQuantile) != 7 {
		t.Fatalf("read %+v", r.ID)
	}
	if _, err := LoadRecord(ctx, filepath.Join(exp, "resid.post_emb"), 0, 63); err != nil {
		t.Fatalf("point folder: %v", err)
	}
	if _, err := LoadRecord(ctx, exp, 0, 0); !errors.Is(err, ErrNoRecord) {
		t.Fatalf("several points without WithPoint: got %v", err)
	}
	if _, err := LoadRecord(ctx, filepath.Join(exp, "resid.post_emb"), 0, 64); !errors.Is(err, ErrNoRecord) {
		t.Fatalf("unit out of range: got %v", err)
	}
	bad := t.TempDir()
	os.MkdirAll(filepath.Join(bad, "collated-activations", "0"), 0o755)
	os.WriteFile(filepath.Join(bad, "collated-activations", "0", "0.json"), []byte(`{"mean":1}`), 0o644)
	if _, err := LoadRecord(ctx, bad, 0, 0); !errors.Is(err, records.ErrBadRecord) {
		t.Fatalf("bad record: got %v", err)
	}
}

package records

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/internal/golden"
)

// Every reference record, read and written again, gives the same bytes:
// the encoder writes TDB's encoding exactly.
func TestGoldenRecordsRoundTripByteForByte(t *testing.T) {
	dir := golden.RequireShared(t, "harvest")
	files, _ := filepath.Glob(filepath.Join(dir, "*", "expected", "*", "collated-activations", "*", "*.json"))
	if len(files) < 1000 {
		t.Fatalf("found %d reference records, want the whole set", len(files))
	}
	for _, f := range files {
		want, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		r, err := Unmarshal(want)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if got := Marshal(r); !bytes.Equal(got, want) {
			t.Fatalf("%s: re-encoded record differs\n got %.300s\nwant %.300s", f, got, want)
		}
	}
}

func TestAppendFloatWritesPythonRepr(t *testing.T) {
	for _, c := range []struct {
		v    float64
		want string
	}{
		{0, "0.0"}, {1, "1.0"}, {-2.5, "-2.5"}, {1e-5, "1e-05"}, {1.5e-7, "1.5e-07"}, {0.0001, "0.0001"},
		{1e16, "1e+16"}, {123456789012345.0, "123456789012345.0"}, {float64(float32(0.1)), "0.10000000149011612"},
		{math.NaN(), "null"}, {math.Inf(1), "null"}, {1e300, "1e+300"}, {-3e-300, "-3e-300"},
	} {
		if got := string(AppendFloat(nil, c.v)); got != c.want {
			t.Errorf("AppendFloat(%v) = %s, want %s", c.v, got, c.want)
		}
	}
}

func TestAppendStringEscapesLikeOrjson(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"plain", `"plain"`}, {"a\"b\\c", `"a\"b\\c"`}, {"\n\t\r", `"\n\t\r"`}, {"\x01", `"\u0001"`},
		{"é — ’", `"é — ’"`}, {"<&>", `"<&>"`}, {"\u2028", "\"\u2028\""}, {"\xff", "\"\ufffd\""},
	} {
		if got := string(AppendString(nil, c.in)); got != c.want {
			t.Errorf("AppendString(%q) = %s, want %s", c.in, got, c.want)
		}
	}
}

func TestUnmarshalLegacyAndBadInput(t *testing.T) {
	legacy := `{"dataclass_name":"NeuronRecord","neuron_id":{"dataclass_name":"NeuronId","layer":3,"idx":17},
	 "random_sample":[{"dataclass_name":"ActivationRecord","tokens":["a","b"],"activations":[1,null]}],
	 "mean":0.5,"variance":null,"most_positive_activation_records":[],"extra_field":1}`
	r, err := Unmarshal([]byte(legacy))
	if err != nil {
		t.Fatal(err)
	}
	if r.ID != (NeuronID{Layer: 3, Index: 17}) || len(r.RandomSample) != 1 || !math.IsNaN(float64(r.RandomSample[0].Activations[1])) ||
		!math.IsNaN(r.Variance) || r.Mean != 0.5 || r.QuantileBoundaries != nil || r.RandomSampleByQuantile != nil {
		t.Fatalf("legacy record read as %+v", r)
	}
	for name, in := range map[string]string{
		"not json":      `{`,
		"no id":         `{"random_sample":[]}`,
		"half id":       `{"neuron_id":{"layer_index":1}}`,
		"negative id":   `{"neuron_id":{"layer_index":-1,"neuron_index":0}}`,
		"ragged record": `{"neuron_id":{"layer_index":1,"neuron_index":0},"random_sample":[{"tokens":["a"],"activations":[]}]}`,
		"wrong type":    `{"neuron_id":{"layer_index":1,"neuron_index":0},"mean":"x"}`,
	} {
		if _, err := Unmarshal([]byte(in)); !errors.Is(err, ErrBadRecord) {
			t.Errorf("%s: got %v, want ErrBadRecord", name, err)
		}
	}
}

func FuzzUnmarshal(f *testing.F) {
	f.Add([]byte(`{"neuron_id":{"layer_index":1,"neuron_index":2},"random_sample":[{"tokens":["a"],"activations":[1.5]}],"mean":1,"variance":0,"skewness":null,"kurtosis":null,"most_positive_activation_records":[]}`))
	f.Add([]byte(`{"neuron_id":{"layer":1,"idx":2},"random_sample_by_quantile":[[],[]],"quantile_boundaries":[0.5]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Unmarshal(data)
		if err != nil {
			if !errors.Is(err, ErrBadRecord) {
				t.Fatalf("error %v does not wrap ErrBadRecord", err)
			}
			return
		}
		// What decodes encodes, and decodes again to the same record.
		again, err := Unmarshal(Marshal(r))
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if a, b := fmt.Sprint(Marshal(again)), fmt.Sprint(Marshal(r)); a != b {
			t.Fatalf("second round trip differs")
		}
	})
}

func ExampleMarshal() {
	r := &NeuronRecord{
		ID:           NeuronID{Layer: 1, Index: 7},
		RandomSample: []ActivationRecord{{Tokens: []string{"Hi", "!"}, Activations: []float32{0.5, -1}}},
		Mean:         0.25, Variance: 0.5625, Skewness: math.NaN(), Kurtosis: math.NaN(),
	}
	fmt.Println(string(Marshal(r)))
	// Output:
	// {"dataclass_name":"NeuronRecord","neuron_id":{"dataclass_name":"NeuronId","neuron_index":7,"layer_index":1},"random_sample":[{"dataclass_name":"ActivationRecord","activations":[0.5,-1.0],"tokens":["Hi","!"]}],"random_sample_by_quantile":null,"quantile_boundaries":null,"mean":0.25,"variance":0.5625,"skewness":null,"kurtosis":null,"most_positive_activation_records":[]}
}

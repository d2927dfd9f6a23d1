package harvesttest

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/export/npy"
	"github.com/onnx-tdb/onnx-tdb/harvest/records"
)

// Case is one reference case of cases.json.
type Case struct {
	Name     string   `json:"name"`
	Args     []string `json:"args"`
	Examples string   `json:"examples"`
	Expected string   `json:"expected"`
	Points   []struct {
		Point    string `json:"point"`
		LayerDir string `json:"layer_dir"`
		Units    int    `json:"n_units"`
		Aux      string `json:"aux"`
	} `json:"points"`
}

// Cases reads cases.json of the harvest reference folder dir.
func Cases(t testing.TB, dir string) []Case {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "cases.json"))
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Cases []Case `json:"cases"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	return c.Cases
}

// Args are the case's CLI arguments with their paths made absolute (the
// corpus relative to dir, the SAE file relative to dir's parent), plus
// --model and --out.
func (c Case) CLIArgs(dir, out string) []string {
	args := []string{"--model", filepath.Join(dir, "..", "model"), "--out", out}
	for i := 0; i < len(c.Args); i++ {
		a := c.Args[i]
		args = append(args, a)
		if i+1 >= len(c.Args) {
			continue
		}
		switch a {
		case "--corpus":
			i++
			args = append(args, filepath.Join(dir, c.Args[i]))
		case "--sae":
			i++
			site, file, _ := strings.Cut(c.Args[i], "=")
			args = append(args, site+"="+filepath.Join(dir, "..", file))
		}
	}
	return args
}

type unitAux struct {
	eps    float64
	maxima []float32 // per example
}

// Check compares the output folder out with case c of the reference dir.
func Check(t testing.TB, dir string, c Case, out string) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(out, "manifest.json"))
	if err != nil {
		t.Fatalf("%s: no manifest.json: %v", c.Name, err)
	}
	var man map[string]any
	if json.Unmarshal(raw, &man) != nil {
		t.Fatalf("%s: manifest.json is not a JSON object", c.Name)
	}
	exIndex := examples(t, filepath.Join(dir, c.Examples))
	failures := 0
	for _, p := range c.Points {
		rel := filepath.Join(p.Point, "collated-activations", p.LayerDir)
		want, got := listJSON(t, filepath.Join(dir, c.Expected, rel)), listJSON(t, filepath.Join(out, rel))
		if strings.Join(want, ",") != strings.Join(got, ",") {
			t.Fatalf("%s %s: %d files, want %d (first: %v vs %v)", c.Name, rel, len(got), len(want), head(got), head(want))
		}
		_, maxAbs, err := npy.Read(filepath.Join(dir, p.Aux, "max_abs.npy"))
		if err != nil {
			t.Fatal(err)
		}
		shape, maxima, err := npy.Read(filepath.Join(dir, p.Aux, "maxima.npy"))
		if err != nil {
			t.Fatal(err)
		}
		n := shape[1]
		for u := 0; u < p.Units; u++ {
			aux := unitAux{eps: 1e-4 + 2e-5*float64(maxAbs[u]), maxima: maxima[u*n : (u+1)*n]}
			name := fmt.Sprintf("%d.json", u)
			w := read(t, filepath.Join(dir, c.Expected, rel, name))
			g := read(t, filepath.Join(out, rel, name))
			if msg := compare(w, g, aux, exIndex); msg != "" {
				failures++
				if failures <= 10 {
					t.Errorf("%s %s/%s: %s", c.Name, rel, name, msg)
				}
			}
		}
	}
	if failures > 0 {
		t.Fatalf("%s: %d units differ", c.Name, failures)
	}
}

func head(s []string) []string { return s[:min(3, len(s))] }

func listJSON(t testing.TB, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("%v", err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out
}

func read(t testing.TB, p string) *records.NeuronRecord {
	t.Helper()
	raw, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	r, err := records.Unmarshal(raw)
	if err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	return r
}

// examples maps each window's token strings to its index.
func examples(t testing.TB, p string) map[string]int {
	t.Helper()
	raw, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var e struct {
		Tokens [][]string `json:"tokens"`
	}
	if err := json.Unmarshal(raw, &e); err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for i, toks := range e.Tokens {
		out[strings.Join(toks, "\x00")] = i
	}
	return out
}

func compare(w, g *records.NeuronRecord, a unitAux, ex map[string]int) string {
	if w.ID != g.ID {
		return fmt.Sprintf("neuron_id %+v, want %+v", g.ID, w.ID)
	}
	id := func(r records.ActivationRecord) int {
		if i, ok := ex[strings.Join(r.Tokens, "\x00")]; ok {
			return i
		}
		return -1
	}
	acts := func(what string, gr, wr records.ActivationRecord) string {
		if len(gr.Activations) != len(wr.Activations) {
			return what + ": activation count differs"
		}
		for i := range gr.Activations {
			if d := math.Abs(float64(gr.Activations[i] - wr.Activations[i])); !(d <= a.eps) {
				return fmt.Sprintf("%s: activation %d = %v, want %v (eps %.3g)", what, i, gr.Activations[i], wr.Activations[i], a.eps)
			}
		}
		return ""
	}
	// Top: same examples in order, except near ties.
	if len(g.MostPositive) != len(w.MostPositive) {
		return fmt.Sprintf("%d top records, want %d", len(g.MostPositive), len(w.MostPositive))
	}
	for i := range w.MostPositive {
		gi, wi := id(g.MostPositive[i]), id(w.MostPositive[i])
		if gi < 0 {
			return fmt.Sprintf("top[%d] is no example window", i)
		}
		if gi != wi {
			if math.Abs(float64(a.maxima[gi]-a.maxima[wi])) > a.eps {
				return fmt.Sprintf("top[%d] is example %d (max %v), want %d (max %v)", i, gi, a.maxima[gi], wi, a.maxima[wi])
			}
			continue
		}
		if m := acts(fmt.Sprintf("top[%d]", i), g.MostPositive[i], w.MostPositive[i]); m != "" {
			return m
		}
	}
	if len(g.RandomSample) != len(w.RandomSample) {
		return fmt.Sprintf("%d random records, want %d", len(g.RandomSample), len(w.RandomSample))
	}
	for i := range w.RandomSample {
		if gi, wi := id(g.RandomSample[i]), id(w.RandomSample[i]); gi != wi {
			return fmt.Sprintf("random[%d] is example %d, want %d", i, gi, wi)
		}
		if m := acts(fmt.Sprintf("random[%d]", i), g.RandomSample[i], w.RandomSample[i]); m != "" {
			return m
		}
	}
	if (w.QuantileBoundaries == nil) != (g.QuantileBoundaries == nil) || (w.RandomSampleByQuantile == nil) != (g.RandomSampleByQuantile == nil) ||
		len(w.QuantileBoundaries) != len(g.QuantileBoundaries) || len(w.RandomSampleByQuantile) != len(g.RandomSampleByQuantile) {
		return "quantile fields differ in shape"
	}
	for i := range w.QuantileBoundaries {
		if d := math.Abs(g.QuantileBoundaries[i] - w.QuantileBoundaries[i]); !(d <= a.eps) {
			return fmt.Sprintf("boundary %d = %v, want %v", i, g.QuantileBoundaries[i], w.QuantileBoundaries[i])
		}
	}
	nearBoundary := func(e int) bool {
		for _, b := range w.QuantileBoundaries {
			if math.Abs(float64(a.maxima[e])-b) <= a.eps {
				return true
			}
		}
		return false
	}
	for j := range w.RandomSampleByQuantile {
		gs, ws := map[int]bool{}, map[int]bool{}
		for _, r := range g.RandomSampleByQuantile[j] {
			gs[id(r)] = true
		}
		for _, r := range w.RandomSampleByQuantile[j] {
			ws[id(r)] = true
		}
		for e := range gs {
			if !ws[e] && (e < 0 || !nearBoundary(e)) {
				return fmt.Sprintf("bucket %d holds example %d, not expected there", j, e)
			}
		}
		for e := range ws {
			if !gs[e] && !nearBoundary(e) {
				return fmt.Sprintf("bucket %d lacks example %d", j, e)
			}
		}
	}
	return moments(w, g, a.eps)
}

func moments(w, g *records.NeuronRecord, eps float64) string {
	sigma := math.Sqrt(w.Variance)
	type m struct {
		name      string
		got, want float64
		tol       float64
	}
	for _, c := range []m{
		{"mean", g.Mean, w.Mean, eps},
		{"variance", g.Variance, w.Variance, 2*sigma*eps + eps*eps},
		{"skewness", g.Skewness, w.Skewness, (6 + 3*math.Abs(w.Skewness)) * eps / sigma},
		{"kurtosis", g.Kurtosis, w.Kurtosis, (8*math.Sqrt(math.Abs(w.Kurtosis)) + 4*math.Abs(w.Kurtosis)) * eps / sigma},
	} {
		if math.IsNaN(c.want) || math.IsNaN(c.got) {
			if math.IsNaN(c.want) != math.IsNaN(c.got) {
				return fmt.Sprintf("%s = %v, want %v", c.name, c.got, c.want)
			}
			continue
		}
		if !(math.Abs(c.got-c.want) <= c.tol) {
			return fmt.Sprintf("%s = %v, want %v (tolerance %.3g)", c.name, c.got, c.want, c.tol)
		}
	}
	return ""
}

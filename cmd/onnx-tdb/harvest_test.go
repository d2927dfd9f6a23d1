package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/harvest/harvesttest"
	"github.com/onnx-tdb/onnx-tdb/internal/golden"
)

// Every reference case, harvested through the CLI, reproduces the
// reference records (golden/harvest README's comparison rules).
func TestHarvestGoldenCases(t *testing.T) {
	dir := golden.RequireShared(t, "harvest")
	for _, c := range harvesttest.Cases(t, dir) {
		t.Run(c.Name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			if msg, err := runCLI(t, append([]string{"harvest"}, c.CLIArgs(dir, out)...)...); err != nil {
				t.Fatalf("harvest: %v\n%s", err, msg)
			}
			harvesttest.Check(t, dir, c, out)
		})
	}
}

// records show prints the top examples with each token's activation, and
// --json gives the record back in TDB's encoding, byte for byte.
func TestRecordsShow(t *testing.T) {
	dir := golden.RequireShared(t, "harvest")
	exp := filepath.Join(dir, "a_mlp_post_act", "expected")
	out, err := runCLI(t, "records", "show", "--records", exp, "--layer", "1", "--unit", "7")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, "layer 1, unit 7") || !strings.Contains(out, "most positive examples (5)") || !strings.Contains(out, " lent⟨2.55⟩") {
		t.Fatalf("unexpected output:\n%s", out)
	}
	out, err = runCLI(t, "records", "show", "--records", filepath.Join(exp, "mlp.post_act"), "--layer", "1", "--unit", "7", "--json")
	if err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(filepath.Join(exp, "mlp.post_act", "collated-activations", "1", "7.json"))
	if out != string(want)+"\n" {
		t.Fatalf("--json differs from the file")
	}
	if _, err := runCLI(t, "records", "show", "--records", exp, "--layer", "1", "--unit", "999"); err == nil || !strings.Contains(err.Error(), "999.json") {
		t.Fatalf("missing unit: got %v", err)
	}
}

// Bad input through the CLI: one clear error naming the thing at fault.
func TestHarvestCLIErrors(t *testing.T) {
	dir := golden.RequireShared(t, "harvest")
	corpus := filepath.Join(dir, "corpus", "essay.txt")
	model := filepath.Join(dir, "..", "model")
	for _, c := range []struct {
		args []string
		says string
	}{
		{[]string{"harvest", "--model", model, "--corpus", corpus, "--at", "mlp.post_act", "--out", filepath.Join(t.TempDir(), "o"), "--nats", "nats://127.0.0.1:1"}, "nats server unreachable"},
		{[]string{"harvest", "worker", "--nats", "nats://127.0.0.1:1"}, "nats server unreachable"},
		{[]string{"harvest", "--model", model, "--corpus", corpus, "--at", "attn.qk_probs", "--out", filepath.Join(t.TempDir(), "o")}, "key axis"},
		{[]string{"harvest", "--model", model, "--corpus", corpus, "--at", "mlp.post_act@7", "--out", filepath.Join(t.TempDir(), "o")}, "layer 7"},
		{[]string{"harvest", "--model", model, "--corpus", corpus, "--at", "mlp.post_act"}, "--out"},
	} {
		out, err := runCLI(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%v: got %v (%s), want an error saying %q", c.args, err, out, c.says)
		}
	}
}

// records show --html writes a page with the record's tokens, and serve
// --records serves the same record as records show --json.
func TestRecordsHTMLAndServed(t *testing.T) {
	dir := golden.RequireShared(t, "harvest")
	exp := filepath.Join(dir, "a_mlp_post_act", "expected")
	page := filepath.Join(t.TempDir(), "r.html")
	if out, err := runCLI(t, "records", "show", "--records", exp, "--layer", "1", "--unit", "7", "--html", page); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	html, err := os.ReadFile(page)
	if err != nil || !strings.Contains(string(html), " lent") || !strings.Contains(string(html), "layer 1, unit 7") {
		t.Fatalf("page: %v\n%.300s", err, html)
	}
	want, err := runCLI(t, "records", "show", "--records", exp, "--layer", "1", "--unit", "7", "--json")
	if err != nil {
		t.Fatal(err)
	}
	url, _, _ := startServe(t, "--model", golden.ModelDir(), "--records", "a="+exp+"#mlp.post_act")
	resp, err := http.Get(url + "v1/records/a/1/7")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != strings.TrimSpace(want) {
		t.Fatalf("served %d %.200s\nwant %.200s", resp.StatusCode, body, want)
	}
	if resp, err := http.Get(url + "v1/records/a/1/999"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("a missing unit: %v %v", resp.StatusCode, err)
	}
}

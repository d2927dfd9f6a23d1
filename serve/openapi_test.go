package serve

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

func TestOpenAPIDocumentsEveryEndpoint(t *testing.T) {
	s, ts, _ := start(t)
	resp, err := http.Get(ts.URL + "/v1/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(readAll(t, resp), &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi %q", doc.OpenAPI)
	}
	for _, e := range s.endpoints() {
		method, path, _ := strings.Cut(e.pattern, " ")
		if _, ok := doc.Paths[path][strings.ToLower(method)]; !ok {
			t.Errorf("%s is not in the OpenAPI document", e.pattern)
		}
	}
	if len(doc.Paths) != len(s.endpoints()) {
		t.Errorf("the document has %d paths, the server %d endpoints", len(doc.Paths), len(s.endpoints()))
	}
}

func TestModelsAndCapabilities(t *testing.T) {
	_, ts, _ := start(t, WithRecords("fake", fakeRecords))
	resp, err := http.Get(ts.URL + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Models    []modelInfo
		Records   []string
		SAEs      []saeInfo
		Workflows []string
	}
	if err := json.Unmarshal(readAll(t, resp), &got); err != nil {
		t.Fatal(err)
	}
	m := got.Models[0]
	if m.Name != "golden" || m.Architecture != "gpt2" || m.NLayers != 2 || m.DModel != 64 || m.NVocab != 50257 || m.NCtx != 64 {
		t.Fatalf("model %+v", m)
	}
	if m.Points[0] != "resid.post_emb" || !contains(m.Points, "attn.qk_probs") || !contains(m.Sites, "mlp.post_act@1") {
		t.Fatalf("points %v sites %v", m.Points, m.Sites)
	}
	if len(got.Records) != 1 || len(got.SAEs) != 0 || len(got.Workflows) != 0 {
		t.Fatalf("capabilities %+v", got)
	}
	resp, err = http.Get(ts.URL + "/v1/records/fake/1/3")
	if err != nil {
		t.Fatal(err)
	}
	if out := readAll(t, resp); resp.StatusCode != 200 || !strings.Contains(string(out), `"neuron_index":3`) {
		t.Fatalf("record: %d %s", resp.StatusCode, out)
	}
	resp, _ = http.Get(ts.URL + "/v1/records/fake/1/300")
	if readAll(t, resp); resp.StatusCode != 404 {
		t.Fatalf("missing record: %d", resp.StatusCode)
	}
	code, out := post(t, ts.URL+"/", "x")
	if code != http.StatusMethodNotAllowed {
		t.Fatalf("POST /: %d %s", code, out)
	}
}

package serve

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

func TestMalformedInputGetsItsStatusAndMessage(t *testing.T) {
	_, ts, _ := start(t, WithLimits(Limits{BodyBytes: 4096, Tokens: 40, Batch: 3, Points: 2}))
	tok := [][]int{{464, 2068}}
	long := make([]int, 41)
	cases := []struct {
		name   string
		path   string
		body   any
		status int
		want   string // in the error message
	}{
		{"not JSON", "/v1/forward", `{"tokens": [[1,2]`, 400, "malformed JSON"},
		{"wrong type", "/v1/forward", `{"tokens": "1,2"}`, 400, "malformed JSON"},
		{"unknown field", "/v1/forward", `{"tokens": [[1]], "tokenz": 1}`, 400, `unknown field "tokenz"`},
		{"two values", "/v1/forward", `{"tokens": [[1]]} {}`, 400, "more than one value"},
		{"no input", "/v1/forward", `{}`, 400, `give "tokens" or "prompts"`},
		{"both inputs", "/v1/forward", map[string]any{"tokens": tok, "prompts": []string{"a"}}, 400, "not both"},
		{"empty row", "/v1/forward", map[string]any{"tokens": [][]int{{}}}, 400, "empty batch"},
		{"token out of range", "/v1/forward", map[string]any{"tokens": [][]int{{1, 99999999}}}, 400, "token id out of range"},
		{"bad pad", "/v1/forward", map[string]any{"tokens": tok, "pad": "middle"}, 400, `pad side "middle"`},
		{"bad top", "/v1/forward", map[string]any{"tokens": tok, "top": -1}, 400, "top -1"},
		{"body over limit", "/v1/forward", `{"prompts": ["` + strings.Repeat("a", 5000) + `"]}`, 413, "limit body_bytes"},
		{"tokens over limit", "/v1/forward", map[string]any{"tokens": [][]int{long}}, 413, "limit tokens"},
		{"batch over limit", "/v1/forward", map[string]any{"tokens": [][]int{{1}, {2}, {3}, {4}}}, 413, "limit batch"},
		{"points over limit", "/v1/forward", map[string]any{"tokens": tok, "points": []string{"a", "b", "c"}}, 413, "limit points"},
		{"unknown point", "/v1/forward", map[string]any{"tokens": tok, "points": []string{"mlp.postact"}}, 400, "points: "},
		{"point layer out of range", "/v1/forward", map[string]any{"tokens": tok, "points": []string{"mlp.post_act@7"}}, 400, "layer 7 out of range [0,2)"},
		{"ablate unknown point", "/v1/forward", map[string]any{"tokens": tok, "ablate": []string{"mlp.nope@1:7"}}, 400, "ablate mlp.nope@1:7: "},
		{"ablate bad index", "/v1/forward", map[string]any{"tokens": tok, "ablate": []string{"mlp.post_act@1:x"}}, 400, `index "x" is not a non-negative integer`},
		{"ablate too many indices", "/v1/forward", map[string]any{"tokens": tok, "ablate": []string{"mlp.post_act@1:1:2"}}, 400, "2 indices, but mlp.post_act has 1 axes"},
		{"ablate layer out of range", "/v1/forward", map[string]any{"tokens": tok, "ablate": []string{"mlp.post_act@5:1"}}, 400, "ablate mlp.post_act@5:1: mlp.post_act@5: layer 5 out of range [0,2)"},
		{"set without value", "/v1/forward", map[string]any{"tokens": tok, "set": []string{"mlp.pre_act@1:5"}}, 400, "set mlp.pre_act@1:5: want POINT@LAYER[:I...]=VALUE"},
		{"set bad value", "/v1/forward", map[string]any{"tokens": tok, "set": []string{"mlp.pre_act@1:5=big"}}, 400, `"big" is not a number`},
		{"add with indices", "/v1/forward", map[string]any{"tokens": tok, "add": []map[string]any{{"site": "mlp.post_act@1:3", "vector": []float32{1}}}}, 400, "indices are not taken"},
		{"sae not loaded", "/v1/forward", map[string]any{"tokens": tok, "sae": []string{"mlp.post_act@1=nope"}}, 400, `no autoencoder "nope" is loaded`},
		{"sae edit without splice", "/v1/forward", map[string]any{"tokens": tok, "ablate": []string{"sae.latents@1:3"}}, 400, "no autoencoder is spliced at layer 1"},
		{"ablate index past the axis", "/v1/forward", map[string]any{"tokens": tok, "ablate": []string{"mlp.post_act@1:9999"}}, 422, "mlp.post_act layer 1"},
		{"add vector of the wrong width", "/v1/forward", map[string]any{"tokens": tok, "add": []map[string]any{{"site": "resid.torso.delta_attn@0", "vector": []float32{1, 2}}}}, 422, "resid.torso.delta_attn layer 0"},
		{"unknown model", "/v1/forward", map[string]any{"model": "gpt5", "tokens": tok}, 404, `model "gpt5"`},
		{"unknown endpoint", "/v1/backward", map[string]any{}, 404, "no endpoint POST /v1/backward"},
		{"sample without n", "/v1/sample", map[string]any{"tokens": tok}, 400, "n 0"},
		{"sample n over limit", "/v1/sample", map[string]any{"tokens": tok, "n": 100000}, 413, "limit sample_tokens"},
		{"sample negative temperature", "/v1/sample", map[string]any{"tokens": tok, "n": 2, "temperature": -1}, 400, "temperature -1"},
		{"grad without target", "/v1/grad", map[string]any{"tokens": tok, "points": []string{"mlp.post_act@1"}}, 400, `give "target"`},
		{"record of a set not loaded", "/v1/records/none/0/1", nil, 404, `record set "none"`},
		{"workflow not there", "/v1/workflows/lens", map[string]any{}, 404, `workflow "lens"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var code int
			var out []byte
			if c.body == nil {
				resp, err := http.Get(ts.URL + c.path)
				if err != nil {
					t.Fatal(err)
				}
				code = resp.StatusCode
				out = readAll(t, resp)
			} else {
				code, out = post(t, ts.URL+c.path, c.body)
			}
			var e struct{ Error string }
			if err := json.Unmarshal(out, &e); err != nil {
				t.Fatalf("answer is not {\"error\": ...}: %s", out)
			}
			if code != c.status || !strings.Contains(e.Error, c.want) {
				t.Fatalf("got %d %q, want %d with %q", code, e.Error, c.status, c.want)
			}
		})
	}
}

func TestPanicsBecome500AndTheServerKeepsServing(t *testing.T) {
	_, ts, logs := start(t, WithRecords("bad", func(_ context.Context, layer, unit int) (json.RawMessage, error) {
		panic("loader bug")
	}))
	resp, err := http.Get(ts.URL + "/v1/records/bad/0/1")
	if err != nil {
		t.Fatal(err)
	}
	out := readAll(t, resp)
	if resp.StatusCode != 500 || !strings.Contains(string(out), "internal error: loader bug") {
		t.Fatalf("got %d %s", resp.StatusCode, out)
	}
	if !strings.Contains(logs.String(), "panic serving GET /v1/records/bad/0/1: loader bug") {
		t.Fatalf("log has no panic line:\n%s", logs.String())
	}
	var got forwardAnswer
	postOK(t, ts.URL+"/v1/forward", map[string]any{"tokens": [][]int{{1, 2}}}, &got)
}

func TestBearerToken(t *testing.T) {
	_, ts, _ := start(t, WithToken("s3cret"))
	for _, c := range []struct {
		header string
		status int
	}{{"", 401}, {"Bearer wrong", 401}, {"s3cret", 401}, {"Bearer s3cret", 200}} {
		req, _ := http.NewRequest("GET", ts.URL+"/v1/models", nil)
		if c.header != "" {
			req.Header.Set("Authorization", c.header)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.status {
			t.Fatalf("Authorization %q: %d, want %d", c.header, resp.StatusCode, c.status)
		}
	}
	resp, err := http.Get(ts.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("the page without a token: %d, want 200 (it holds no data)", resp.StatusCode)
	}
}

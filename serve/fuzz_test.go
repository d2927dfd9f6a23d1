package serve

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzForwardBody sends arbitrary bodies to /v1/forward: every answer is
// JSON, and none is a 500 (no input may crash a handler or reach a panic).
func FuzzForwardBody(f *testing.F) {
	for _, seed := range []string{
		`{"tokens": [[1, 2, 3]], "points": ["mlp.post_act@1"], "top": 2, "logits_last": false}`,
		`{"prompts": ["Hi"], "ablate": ["mlp.post_act@1:7"], "set": ["attn.v_out@0:2=0.5"], "logits_last": false}`,
		`{"tokens": [[1], [2, 3]], "pad": "left", "add": [{"site": "resid.torso.delta_attn@0", "vector": [1]}]}`,
		`{"tokens": [[-1]]}`,
		`{"tokens": [[1]], "ablate": ["attn.qk_probs@0:1:2:3:4"]}`,
		`{"tokens": [[1]], "points": ["logits", "sae.latents@1", "resid.post_emb@0"]}`,
		`[`,
	} {
		f.Add([]byte(seed))
	}
	s, err := New(WithModel("golden", goldenModel(f)), WithAccessLog(false), WithLimits(Limits{Tokens: 64, Batch: 4}))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/forward", strings.NewReader(string(body))))
		if rec.Code == http.StatusInternalServerError {
			t.Fatalf("500 for %q: %s", body, rec.Body)
		}
		if !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("%d answer is not JSON for %q: %q", rec.Code, body, rec.Body)
		}
	})
}

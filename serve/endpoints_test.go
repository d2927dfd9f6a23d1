package serve

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/sae"

	"github.com/onnx-tdb/onnx-tdb/export/npy"
	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/internal/golden"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
)

func postNPY(t *testing.T, url string, body any) (int, []int, []float32, string) {
	t.Helper()
	js, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", url, bytes.NewReader(js))
	req.Header.Set("Accept", "application/x-npy")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	out := readAll(t, resp)
	if resp.StatusCode != 200 {
		return resp.StatusCode, nil, nil, string(out)
	}
	shape, data, err := npy.ReadFrom(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	return 200, shape, data, resp.Header.Get("Content-Type")
}

func TestNPYAnswers(t *testing.T) {
	_, ts, _ := start(t)
	rows := [][]int{{464, 2068, 7586}}
	var js forwardAnswer
	postOK(t, ts.URL+"/v1/forward", map[string]any{"tokens": rows, "points": []string{"attn.qk_logits@1"}}, &js)
	code, shape, data, ct := postNPY(t, ts.URL+"/v1/forward", map[string]any{"tokens": rows, "points": []string{"attn.qk_logits@1"}})
	if code != 200 || ct != npyType {
		t.Fatalf("%d %s", code, ct)
	}
	want := js.Activations["attn.qk_logits@1"]
	if len(shape) != 4 || shape[1] != 3 {
		t.Fatalf("shape %v, JSON %v", shape, want.Shape)
	}
	closeTo(t, "npy vs JSON (null for -inf)", want.Data, data)
	code, shape, _, _ = postNPY(t, ts.URL+"/v1/forward", map[string]any{"tokens": rows})
	if code != 200 || len(shape) != 2 || shape[0] != 1 {
		t.Fatalf("logits_last as .npy: %d %v", code, shape)
	}
	code, _, _, msg := postNPY(t, ts.URL+"/v1/forward", map[string]any{"tokens": rows, "points": []string{"attn.qk_probs"}})
	if code != http.StatusNotAcceptable || !strings.Contains(msg, "holds one array") {
		t.Fatalf("two arrays as .npy: %d %s", code, msg)
	}
}

func TestSampleStreamsTheGreedyTokens(t *testing.T) {
	m := goldenModel(t)
	_, ts, _ := start(t)
	want, err := m.Sample(context.Background(), modelctx.TextPrompts("Once upon a time"), modelctx.WithNumTokens(6), modelctx.WithTemperature(0))
	if err != nil {
		t.Fatal(err)
	}
	var plain modelctx.SampleResult
	postOK(t, ts.URL+"/v1/sample", map[string]any{"prompts": []string{"Once upon a time"}, "n": 6, "temperature": 0}, &plain)
	if !equalInts(plain.Tokens[0], want.Tokens[0]) || plain.Strings[0] != want.Strings[0] {
		t.Fatalf("sample %+v, want %+v", plain, want)
	}
	js, _ := json.Marshal(map[string]any{"prompts": []string{"Once upon a time"}, "n": 6, "temperature": 0, "stream": true})
	resp, err := http.Post(ts.URL+"/v1/sample", "application/json", bytes.NewReader(js))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	var ids []int
	var done modelctx.SampleResult
	sc := bufio.NewScanner(resp.Body)
	event := ""
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: ") && event == "token":
			var ev sampleEvent
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &ev); err != nil {
				t.Fatal(err)
			}
			if ev.Step != len(ids) {
				t.Fatalf("event step %d after %d tokens", ev.Step, len(ids))
			}
			ids = append(ids, ev.ID)
		case strings.HasPrefix(line, "data: ") && event == "done":
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &done); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !equalInts(ids, want.Tokens[0]) || !equalInts(done.Tokens[0], want.Tokens[0]) {
		t.Fatalf("streamed %v, done %v, want %v", ids, done.Tokens, want.Tokens[0])
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestSAEEndpointsMatchTheAutoencoder(t *testing.T) {
	m, ae := goldenModel(t), goldenSAE(t)
	_, ts, _ := start(t, WithAutoencoder("mlp1", ae))
	rows := [][]int{{464, 2068, 7586, 21831}}
	out, err := m.Forward(context.Background(), rows, modelctx.Capture(&modelctx.Filter{Points: []hooks.Point{hooks.MLP.PostAct}, Layers: []int{1}}))
	if err != nil {
		t.Fatal(err)
	}
	z, err := ae.Encode(context.Background(), out.Activations[hooks.Site{Point: hooks.MLP.PostAct, Layer: 1}])
	if err != nil {
		t.Fatal(err)
	}
	var enc struct{ Latents *tensorJSON }
	postOK(t, ts.URL+"/v1/sae/encode", map[string]any{"tokens": rows, "sae": "mlp1", "at": "mlp.post_act@1"}, &enc)
	closeTo(t, "latents", enc.Latents.Data, z.Data)
	var top struct{ Rows [][]sae.TokenLatents }
	postOK(t, ts.URL+"/v1/sae/top", map[string]any{"tokens": rows, "sae": "mlp1", "at": "mlp.post_act@1", "k": 3}, &top)
	N := z.Shape[2]
	for i, tok := range top.Rows[0] {
		for _, l := range tok.Latents {
			if z.Data[i*N+l.Latent] != l.Value {
				t.Fatalf("token %d latent %d: %v, want %v", i, l.Latent, l.Value, z.Data[i*N+l.Latent])
			}
		}
	}
	// A splice with a latent ablation changes the pass; without, add_error keeps it.
	var clean, spliced, ablated forwardAnswer
	postOK(t, ts.URL+"/v1/forward", map[string]any{"tokens": rows}, &clean)
	postOK(t, ts.URL+"/v1/forward", map[string]any{"tokens": rows, "sae": []string{"mlp.post_act@1=mlp1"}}, &spliced)
	postOK(t, ts.URL+"/v1/forward", map[string]any{"tokens": rows, "sae": []string{"mlp.post_act@1=mlp1"}, "ablate": []string{"sae.latents@1"}}, &ablated)
	// rec + (x - rec) is x up to float32 round-off.
	if worst, failure := golden.Diff(spliced.LogitsLast.Data, clean.LogitsLast.Data, golden.Tolerance(10)); failure != "" {
		t.Fatalf("add_error splice changed the logits by %g: %s", worst, failure)
	}
	if ablated.LogitsLast.Data[0] == clean.LogitsLast.Data[0] {
		t.Fatal("ablating every latent left the logits as they were")
	}
}

func TestGradMatchesBackward(t *testing.T) {
	m := goldenModel(t)
	_, ts, _ := start(t)
	rows := [][]int{{464, 2068, 7586, 21831}}
	site := hooks.Site{Point: hooks.MLP.PostAct, Layer: 0}
	want, err := m.Backward(context.Background(), rows, modelctx.LogitLoss(0, -1, 262),
		modelctx.GradsAt(&modelctx.Filter{Points: []hooks.Point{site.Point}, Layers: []int{0}}))
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Loss  float64
		Grads map[string]*tensorJSON
	}
	postOK(t, ts.URL+"/v1/grad", map[string]any{"tokens": rows, "target": 262, "points": []string{"mlp.post_act@0"}}, &got)
	if got.Loss != want.Loss {
		t.Fatalf("loss %v, want %v", got.Loss, want.Loss)
	}
	closeTo(t, "grad", got.Grads["mlp.post_act@0"].Data, want.Grads[site].Data)
	var attr struct {
		Layers []struct {
			Site string
			Top  []attribution
		}
	}
	postOK(t, ts.URL+"/v1/attribute", map[string]any{"tokens": rows, "target": " the", "point": "mlp.post_act", "k": 4}, &attr)
	if len(attr.Layers) != 2 || len(attr.Layers[0].Top) != 4 || attr.Layers[1].Site != "mlp.post_act@1" {
		t.Fatalf("attribution %+v", attr)
	}
	for _, a := range attr.Layers[0].Top {
		if a.Attribution != a.Activation*a.Gradient {
			t.Fatalf("entry %+v: attribution is not activation × gradient", a)
		}
	}
}

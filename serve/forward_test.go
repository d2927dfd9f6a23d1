package serve

import (
	"context"
	"math"
	"net/http"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
)

// closeTo compares within the golden tolerance; NaN in got stands for a
// non-finite want (JSON carries them as null).
func closeTo(t *testing.T, what string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range want {
		w, g := float64(want[i]), float64(got[i])
		if math.IsInf(w, 0) || math.IsNaN(w) {
			if !math.IsNaN(g) {
				t.Fatalf("%s[%d] = %v, want non-finite %v (null)", what, i, g, w)
			}
			continue
		}
		if g != w {
			t.Fatalf("%s[%d] = %v, want %v exactly", what, i, g, w)
		}
	}
}

func TestForwardMatchesInProcessForward(t *testing.T) {
	m := goldenModel(t)
	_, ts, _ := start(t)
	rows := [][]int{{464, 2068, 7586, 21831}, {15496, 11}}
	for _, pad := range []string{"right", "left"} {
		t.Run(pad, func(t *testing.T) {
			var got forwardAnswer
			postOK(t, ts.URL+"/v1/forward", map[string]any{
				"tokens": rows, "pad": pad, "top": 3,
				"points": []string{"mlp.post_act@1", "resid.post_emb", "attn.qk_probs"},
				"ablate": []string{"mlp.post_act@0:7"},
				"set":    []string{"mlp.pre_act@1:5=1.5"},
			}, &got)
			side, _ := modelctx.ParsePadSide(pad)
			h := hooks.New()
			hooks.Edit{Site: hooks.Site{Point: hooks.MLP.PostAct, Layer: 0}, Index: []int{7}, Kind: hooks.Ablate}.Register(h)
			hooks.Edit{Site: hooks.Site{Point: hooks.MLP.PreAct, Layer: 1}, Index: []int{5}, Kind: hooks.SetTo, Value: 1.5}.Register(h)
			want, err := m.Forward(context.Background(), rows, modelctx.WithPad(side), modelctx.WithHooks(h),
				modelctx.Capture(&modelctx.Filter{Points: []hooks.Point{hooks.MLP.PostAct, hooks.Resid.PostEmb, hooks.Attn.QKProbs}}))
			if err != nil {
				t.Fatal(err)
			}
			for st, wt := range want.Activations {
				if st.Point == hooks.MLP.PostAct && st.Layer == 0 {
					continue // not asked for
				}
				gt := got.Activations[st.String()]
				if gt == nil {
					t.Fatalf("no %s in %v", st, keys(got.Activations))
				}
				closeTo(t, st.String(), gt.Data, wt.Data)
			}
			if len(got.Activations) != 4 { // mlp.post_act@1, resid.post_emb, attn.qk_probs@0 and @1
				t.Fatalf("activations %v, want 4", keys(got.Activations))
			}
			V := m.Manifest().Config.NVocab
			T := want.Logits.Shape[1]
			for b, r := range rows {
				pos := len(r) - 1
				if side == modelctx.PadLeft {
					pos = T - 1
				}
				if got.Positions[b] != pos {
					t.Fatalf("row %d position %d, want %d", b, got.Positions[b], pos)
				}
				closeTo(t, "logits_last", got.LogitsLast.Data[b*V:(b+1)*V], want.Logits.Data[(b*T+pos)*V:(b*T+pos+1)*V])
				if len(got.Top[b]) != 3 || got.Top[b][0].Logit != got.LogitsLast.Data[b*V+got.Top[b][0].ID] {
					t.Fatalf("row %d top %+v", b, got.Top[b])
				}
			}
		})
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestForwardTakesPrompts(t *testing.T) {
	_, ts, _ := start(t)
	var got forwardAnswer
	postOK(t, ts.URL+"/v1/forward", map[string]any{"prompts": []string{"The quick brown fox"}}, &got)
	if len(got.Tokens[0]) != 4 || got.Strings[0][1] != " quick" || len(got.Top[0]) != 5 {
		t.Fatalf("answer %+v", got)
	}
	if got.LogitsLast.Shape[0] != 1 {
		t.Fatalf("logits_last shape %v", got.LogitsLast.Shape)
	}
	code, _ := post(t, ts.URL+"/v1/forward", map[string]any{"prompts": []string{"x"}, "logits_last": false})
	if code != http.StatusOK {
		t.Fatal(code)
	}
}

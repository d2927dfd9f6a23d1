package main

import (
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/internal/golden"
)

// TestGradSavesEveryGoldenGradient checks grad --save-grads against the
// original's gradients at every hook point of every layer.
func TestGradSavesEveryGoldenGradient(t *testing.T) {
	c := golden.Load(t)
	n := 0
	for _, in := range c.Inputs {
		if in.Grads == nil {
			continue
		}
		in := in
		t.Run(in.Name, func(t *testing.T) {
			dir := t.TempDir()
			tg := in.Grads.Target
			args := []string{"grad", "--model", golden.ModelDir(), "--tokens", tokensArg(in.Rows),
				"--target", fmt.Sprintf("%d,%d,%d", tg.Batch, tg.Position, tg.Token), "--save-grads", dir}
			if in.PadSide != nil {
				args = append(args, "--pad", *in.PadSide)
			}
			if out, err := runCLI(t, args...); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			for _, a := range in.Grads.Tensors {
				name := a.Hook
				if a.Layer != nil {
					name = fmt.Sprintf("%s.L%d", a.Hook, *a.Layer)
				}
				got, data := readNpy(t, filepath.Join(dir, name+".npy"))
				if fmt.Sprint(got) != fmt.Sprint(a.Shape) {
					t.Errorf("%s: shape %v, want %v", name, got, a.Shape)
					continue
				}
				golden.Check(t, "grad "+name, data, a.Tensor)
				n++
			}
		})
	}
	if n < 90 {
		t.Errorf("compared %d golden gradients", n)
	}
}

type attributeOut struct {
	Loss   float64 `json:"loss"`
	Row    int     `json:"row"`
	Layers []struct {
		Point string `json:"point"`
		Layer *int   `json:"layer"`
		Top   []struct {
			Position    int     `json:"position"`
			Index       []int   `json:"index"`
			Activation  float32 `json:"activation"`
			Gradient    float32 `json:"gradient"`
			Attribution float32 `json:"attribution"`
		} `json:"top"`
	} `json:"layers"`
}

// TestAttributeRanksActivationTimesGradient checks attribute against the
// activations of forward --save-activations and the gradients of grad
// --save-grads: the top entries of each layer are the largest products.
func TestAttributeRanksActivationTimesGradient(t *testing.T) {
	c := golden.Load(t)
	in := c.Input("prompt")
	toks := tokensArg(in.Rows)
	out, err := runCLI(t, "attribute", "--model", golden.ModelDir(), "--tokens", toks, "--target", "0,last,0", "-k", "4", "--json")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var res attributeOut
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	acts, grads := t.TempDir(), t.TempDir()
	if out, err := runCLI(t, "forward", "--model", golden.ModelDir(), "--tokens", toks, "--points", "mlp.post_act", "--save-activations", acts); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if out, err := runCLI(t, "grad", "--model", golden.ModelDir(), "--tokens", toks, "--target", "0,last,0", "--points", "mlp.post_act", "--save-grads", grads); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(res.Layers) != 2 {
		t.Fatalf("%d layers, want 2", len(res.Layers))
	}
	for _, la := range res.Layers {
		name := fmt.Sprintf("mlp.post_act.L%d.npy", *la.Layer)
		shape, a := readNpy(t, filepath.Join(acts, name))
		_, g := readNpy(t, filepath.Join(grads, name))
		F := shape[2]
		best := make([]float64, 0, len(a))
		for i := range a {
			best = append(best, float64(a[i])*float64(g[i]))
		}
		if len(la.Top) != 4 {
			t.Fatalf("layer %d: %d entries", *la.Layer, len(la.Top))
		}
		for i, e := range la.Top {
			off := e.Position*F + e.Index[0]
			if math.Abs(float64(e.Activation-a[off])) > 1e-5 || math.Abs(float64(e.Gradient-g[off])) > 1e-6 {
				t.Errorf("layer %d entry %d: act %v grad %v, files say %v %v", *la.Layer, i, e.Activation, e.Gradient, a[off], g[off])
			}
			if i > 0 && e.Attribution > la.Top[i-1].Attribution {
				t.Errorf("layer %d: not sorted at %d", *la.Layer, i)
			}
			// No entry outside the top list beats the last one.
			if i == len(la.Top)-1 {
				larger := 0
				for _, v := range best {
					if v > float64(e.Attribution)+1e-6 {
						larger++
					}
				}
				if larger > 3 {
					t.Errorf("layer %d: %d entries beat the 4th", *la.Layer, larger)
				}
			}
		}
	}
}

type gradOut struct {
	Loss  float64 `json:"loss"`
	Grads []struct {
		Point  string  `json:"point"`
		Layer  *int    `json:"layer"`
		MaxAbs float64 `json:"max_abs"`
	} `json:"grads"`
}

func gradJSON(t *testing.T, args ...string) gradOut {
	t.Helper()
	out, err := runCLI(t, append([]string{"grad", "--model", golden.ModelDir(), "--json"}, args...)...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var g gradOut
	if err := json.Unmarshal([]byte(out), &g); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return g
}

func (g gradOut) max(point string, layer int) float64 {
	for _, x := range g.Grads {
		if x.Point == point && ((x.Layer == nil && layer < 0) || (x.Layer != nil && *x.Layer == layer)) {
			return x.MaxAbs
		}
	}
	return math.NaN()
}

func TestGradLosses(t *testing.T) {
	toks := "464,2068,7586,21831;18045,625"
	diff := gradJSON(t, "--tokens", toks, "--target", "all,last,464", "--loss", "logit-diff", "--distractor", "13")
	plain := gradJSON(t, "--tokens", toks, "--target", "all,last,464+13", "--loss", "logit-diff")
	if diff.Loss == plain.Loss || diff.max("resid.post_emb", -1) == 0 {
		t.Errorf("logit-diff: loss %v (mean target %v), grad %v", diff.Loss, plain.Loss, diff.max("resid.post_emb", -1))
	}
	for _, l := range []string{"logit-minus-mean", "probs"} {
		g := gradJSON(t, "--tokens", toks, "--target", "0,last,464", "--loss", l)
		if g.max("resid.post_emb", -1) == 0 || math.IsNaN(g.Loss) {
			t.Errorf("%s: loss %v, no gradient", l, g.Loss)
		}
	}
	// The zero loss gives zeros, unless a gradient is written; an ablated
	// gradient at post_ln_f stops everything upstream.
	z := gradJSON(t, "--tokens", toks, "--target", "0,last", "--loss", "zero")
	if z.Loss != 0 || z.max("resid.post_emb", -1) != 0 {
		t.Errorf("zero loss: %v, grad %v", z.Loss, z.max("resid.post_emb", -1))
	}
	abl := gradJSON(t, "--tokens", toks, "--target", "0,last,464", "--ablate-grad", "resid.post_ln_f")
	if abl.max("resid.post_ln_f", -1) == 0 || abl.max("resid.torso.post_mlp", 1) != 0 || abl.max("resid.post_emb", -1) != 0 {
		t.Errorf("ablated gradient: post_ln_f %v, post_mlp@1 %v, post_emb %v", abl.max("resid.post_ln_f", -1), abl.max("resid.torso.post_mlp", 1), abl.max("resid.post_emb", -1))
	}
	grab := gradJSON(t, "--tokens", toks, "--target", "0,2", "--loss", "activation", "--grab", "mlp.post_act@0:5")
	if grab.max("mlp.post_act", 0) != 1 || grab.max("mlp.post_act", 1) != 0 || grab.max("resid.post_emb", -1) == 0 {
		t.Errorf("activation loss: at the site %v, downstream %v, post_emb %v", grab.max("mlp.post_act", 0), grab.max("mlp.post_act", 1), grab.max("resid.post_emb", -1))
	}
	det := gradJSON(t, "--tokens", toks, "--target", "0,last,464", "--detach", "qkv,ln-scale")
	if det.max("resid.torso.post_ln_attn", 0) != 0 || det.max("attn.q", 0) == 0 {
		t.Errorf("detach qkv: post_ln_attn@0 %v, attn.q@0 %v", det.max("resid.torso.post_ln_attn", 0), det.max("attn.q", 0))
	}
}

func TestGradCLIErrors(t *testing.T) {
	m := golden.ModelDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"grad", "--model", m, "--tokens", "1,2"}, "--target"},
		{[]string{"grad", "--model", m, "--tokens", "1,2", "--target", "0,1"}, "B,POS,TOKEN"},
		{[]string{"grad", "--model", m, "--tokens", "1,2", "--target", "0,1,2", "--loss", "nope"}, "--loss"},
		{[]string{"grad", "--model", m, "--tokens", "1,2", "--target", "0,1,2", "--distractor", "5"}, "logit-diff"},
		{[]string{"grad", "--model", m, "--tokens", "1,2", "--target", "0,1,2+3"}, "one target"},
		{[]string{"grad", "--model", m, "--tokens", "1,2", "--target", "0,1", "--loss", "activation"}, "--grab"},
		{[]string{"grad", "--model", m, "--tokens", "1,2", "--target", "0,1", "--loss", "activation", "--grab", "mlp.post_act@0"}, "indices"},
		{[]string{"grad", "--model", m, "--tokens", "1,2", "--target", "5,1,2"}, "row 5"},
		{[]string{"grad", "--model", m, "--tokens", "1,2", "--target", "0,1,2", "--detach", "nope"}, "unknown hook point"},
		{[]string{"attribute", "--model", m, "--tokens", "1,2", "--target", "0,1,2", "--point", "resid.ln_f.scale"}, ""},
		{[]string{"attribute", "--model", m, "--tokens", "1,2", "--target", "0,1,2", "-k", "0"}, "-k"},
	} {
		out, err := runCLI(t, c.args...)
		if c.want == "" {
			if err != nil {
				t.Errorf("%v: %v\n%s", c.args, err, out)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want one mentioning %q", c.args, err, c.want)
		}
	}
}

package sae

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/internal/golden"
	"github.com/onnx-tdb/onnx-tdb/internal/goldenmodel"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
)

func TestMain(m *testing.M) {
	code := m.Run()
	goldenmodel.Cleanup()
	os.Exit(code)
}

// goldenModelDir exports the golden checkpoint once per test binary.
func goldenModelDir(t testing.TB) string { return goldenmodel.Dir(t) }

func openModel(t testing.TB) *modelctx.Transformer {
	t.Helper()
	m, err := modelctx.Open(goldenModelDir(t), modelctx.WithDevice(goldenmodel.Device(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// lastLogits picks each row's logits at its last real position.
func lastLogits(lg *hooks.Tensor, last []int) []float32 {
	return golden.LastLogits(lg.Shape, lg.Data, last)
}

// goldenSplice says how each golden SAE intervention is made.
var goldenSplices = map[string]struct {
	sae      string
	addError bool
	ablate   bool // zero the intervention's latent at sae.latents
}{
	"sae_mlp_post_act_add_error":     {"mlp_post_act", true, false},
	"sae_mlp_post_act_no_error":      {"mlp_post_act", false, false},
	"sae_mlp_post_act_ablate_latent": {"mlp_post_act", true, true},
	"sae_resid_delta_mlp_no_error":   {"resid_delta_mlp", false, false},
	"sae_topk_no_error":              {"resid_delta_mlp_topk", false, false},
}

func saeSite(t testing.TB, info golden.SAEInfo) hooks.Site {
	t.Helper()
	p, err := hooks.Parse(info.Location)
	if err != nil {
		t.Fatal(err)
	}
	return hooks.Site{Point: p, Layer: info.Layer}
}

func TestGoldenSpliceInterventions(t *testing.T) {
	c := golden.Load(t)
	m := openModel(t)
	in := c.Input("batch_right")
	aes := map[string]*Autoencoder{}
	for name, info := range c.SAEs {
		aes[name] = loadGolden(t, info)
	}
	n := 0
	for _, iv := range in.Interventions {
		spec, ok := goldenSplices[iv.Name]
		if !ok {
			continue
		}
		n++
		t.Run(iv.Name, func(t *testing.T) {
			info := c.SAEs[spec.sae]
			site := saeSite(t, info)
			h := hooks.New()
			defer Splice(h, aes[spec.sae], site, spec.addError)()
			if spec.ablate {
				if iv.Latent == nil {
					t.Fatal("intervention has no latent")
				}
				h.Add(hooks.SAE.Latents, func(_ *hooks.Context, x *hooks.Tensor) (*hooks.Tensor, error) {
					return x, x.FillTrailing(0, *iv.Latent)
				}, hooks.AtLayers(site.Layer))
			}
			out, err := m.Forward(context.Background(), in.Rows, modelctx.WithHooks(h))
			if err != nil {
				t.Fatal(err)
			}
			golden.Check(t, "logits_last", lastLogits(out.Logits, in.LastRealPosition), iv.LogitsLast)
		})
	}
	if n != len(goldenSplices) {
		t.Errorf("ran %d SAE interventions, want %d", n, len(goldenSplices))
	}
}

// TestSpliceHookPoints checks what sae.latents, sae.reconstruction and
// sae.error see, with and without add_error, and that the splice's writes
// reach the pass.
func TestSpliceHookPoints(t *testing.T) {
	c := golden.Load(t)
	m := openModel(t)
	info := c.SAEs["mlp_post_act"]
	ae := loadGolden(t, info)
	site := saeSite(t, info)
	in := c.Input("prompt")
	ctx := context.Background()

	plain, err := m.Forward(ctx, in.Rows, modelctx.Capture(&modelctx.Filter{Points: []hooks.Point{site.Point}, Layers: []int{site.Layer}}))
	if err != nil {
		t.Fatal(err)
	}
	x := plain.Activations[site]
	wantLat, _ := ae.Encode(ctx, x)
	wantRec, _ := ae.Decode(ctx, wantLat)

	for _, addError := range []bool{true, false} {
		h := hooks.New()
		Splice(h, ae, site, addError)
		// Observers in a second hook set: the splice calls every set of the pass.
		obs := hooks.New()
		got := map[hooks.Point]*hooks.Tensor{}
		after := map[hooks.Point]*hooks.Tensor{}
		for _, p := range []hooks.Point{hooks.SAE.Latents, hooks.SAE.Reconstruction, hooks.SAE.Error} {
			obs.Observe(p, func(hc *hooks.Context, t *hooks.Tensor) error {
				if hc.Layer() != site.Layer {
					return errors.New("wrong layer")
				}
				got[hc.Point()] = t.Clone()
				return nil
			}, hooks.AtLayers(site.Layer))
		}
		obs.Observe(site.Point, func(_ *hooks.Context, t *hooks.Tensor) error {
			after[site.Point] = t.Clone()
			return nil
		}, hooks.AtLayers(site.Layer), hooks.InStage(hooks.Fwd2))
		out, err := m.Forward(ctx, in.Rows, modelctx.WithHooks(h, obs))
		if err != nil {
			t.Fatal(err)
		}
		maxAbs := func(v []float32) float64 {
			m := 0.0
			for _, x := range v {
				m = math.Max(m, math.Abs(float64(x)))
			}
			return m
		}
		check := func(name string, got, want []float32) {
			t.Helper()
			if _, fail := golden.Diff(got, want, golden.Tolerance(maxAbs(want))); fail != "" {
				t.Errorf("add_error=%v: %s: %s", addError, name, fail)
			}
		}
		check("sae.latents", got[hooks.SAELatents].Data, wantLat.Data)
		check("sae.reconstruction", got[hooks.SAEReconstruction].Data, wantRec.Data)
		check("sae.error", got[hooks.SAEError].Data, difference(x, wantRec).Data)
		if addError {
			check("point after splice (add_error)", after[site.Point].Data, x.Data)
			check("logits (add_error)", out.Logits.Data, plain.Logits.Data)
		} else {
			check("point after splice (replace)", after[site.Point].Data, wantRec.Data)
		}
	}
}

// TestSpliceEdits checks the writable SAE points: a reconstruction edit
// reaches the pass, an error edit reaches it only with add_error.
func TestSpliceEdits(t *testing.T) {
	c := golden.Load(t)
	m := openModel(t)
	info := c.SAEs["resid_delta_mlp"]
	ae := loadGolden(t, info)
	site := saeSite(t, info)
	in := c.Input("prompt")
	ctx := context.Background()
	run := func(addError bool, edit hooks.Point) []float32 {
		h := hooks.New()
		Splice(h, ae, site, addError)
		if edit.Valid() {
			h.Add(edit, func(_ *hooks.Context, t *hooks.Tensor) (*hooks.Tensor, error) {
				return t, t.FillTrailing(0)
			}, hooks.AtLayers(site.Layer))
		}
		obs := hooks.New()
		var after []float32
		obs.Observe(site.Point, func(_ *hooks.Context, t *hooks.Tensor) error {
			after = append([]float32(nil), t.Data...)
			return nil
		}, hooks.AtLayers(site.Layer), hooks.InStage(hooks.Fwd2))
		if _, err := m.Forward(ctx, in.Rows, modelctx.WithHooks(h, obs)); err != nil {
			t.Fatal(err)
		}
		return after
	}
	same := func(a, b []float32) bool { _, fail := golden.Diff(a, b, 1e-6); return fail == "" }
	plainErr, plainNo := run(true, 0), run(false, 0)
	if same(plainErr, plainNo) {
		t.Fatal("replacing the activation changed nothing: the test cannot tell the modes apart")
	}
	if got := run(false, hooks.SAE.Error); !same(got, plainNo) {
		t.Error("without add_error, an edit at sae.error changed the pass")
	}
	if got := run(true, hooks.SAE.Error); same(got, plainErr) {
		t.Error("with add_error, zeroing sae.error changed nothing")
	}
	recOnly := run(false, 0)
	if got := run(true, hooks.SAE.Error); !same(got, recOnly) {
		t.Error("with add_error and a zero error, the point is not the reconstruction")
	}
	for _, addError := range []bool{true, false} {
		got := run(addError, hooks.SAE.Reconstruction)
		if addError {
			// rec zeroed: the point is the error alone, x - decode(encode(x)).
			if same(got, plainErr) {
				t.Error("with add_error, zeroing sae.reconstruction changed nothing")
			}
			continue
		}
		for i, v := range got {
			if v != 0 {
				t.Fatalf("without add_error, zeroed reconstruction: value %d is %v", i, v)
			}
		}
	}
}

func TestSpliceErrorsNameTheSite(t *testing.T) {
	c := golden.Load(t)
	m := openModel(t)
	info := c.SAEs["mlp_post_act"]
	ae := loadGolden(t, info)
	in := c.Input("single")
	ctx := context.Background()

	// An SAE on a point of another width.
	h := hooks.New()
	Splice(h, ae, hooks.Site{Point: hooks.Resid.Torso.DeltaMLP, Layer: 0}, true)
	_, err := m.Forward(ctx, in.Rows, modelctx.WithHooks(h))
	if !errors.Is(err, ErrShape) {
		t.Errorf("width mismatch: got %v, want ErrShape", err)
	}

	// A failing latent hook.
	h = hooks.New()
	site := saeSite(t, info)
	Splice(h, ae, site, true)
	boom := errors.New("boom")
	h.Add(hooks.SAE.Latents, func(*hooks.Context, *hooks.Tensor) (*hooks.Tensor, error) { return nil, boom }, hooks.AtLayers(site.Layer))
	_, err = m.Forward(ctx, in.Rows, modelctx.WithHooks(h))
	if !errors.Is(err, boom) || !errors.Is(err, hooks.ErrHookFailed) {
		t.Errorf("failing latent hook: got %v", err)
	}
	for _, s := range []string{"sae.latents layer 1", "mlp.post_act layer 1"} {
		if err == nil || !strings.Contains(err.Error(), s) {
			t.Errorf("error %v does not name %q", err, s)
		}
	}

	// Nil autoencoder.
	h = hooks.New()
	Splice(h, nil, site, true)
	if _, err := m.Forward(ctx, in.Rows, modelctx.WithHooks(h)); !errors.Is(err, ErrNoAutoencoder) {
		t.Errorf("nil autoencoder: got %v", err)
	}
}

func TestSpliceRemove(t *testing.T) {
	c := golden.Load(t)
	m := openModel(t)
	info := c.SAEs["mlp_post_act"]
	ae := loadGolden(t, info)
	in := c.Input("prompt")
	ctx := context.Background()
	h := hooks.New()
	plain, err := m.Forward(ctx, in.Rows)
	if err != nil {
		t.Fatal(err)
	}
	remove := Splice(h, ae, saeSite(t, info), false)
	spliced, err := m.Forward(ctx, in.Rows, modelctx.WithHooks(h))
	if err != nil {
		t.Fatal(err)
	}
	remove()
	again, err := m.Forward(ctx, in.Rows, modelctx.WithHooks(h))
	if err != nil {
		t.Fatal(err)
	}
	if _, fail := golden.Diff(spliced.Logits.Data, plain.Logits.Data, 1e-3); fail == "" {
		t.Error("splice without add_error did not change the logits")
	}
	if _, fail := golden.Diff(again.Logits.Data, plain.Logits.Data, 0); fail != "" {
		t.Errorf("after remove: %s", fail)
	}
}

// TestSpliceGradient checks the backward pass through a splice against
// finite differences of the spliced model (a directional derivative along
// a fixed direction at resid.post_emb), for the golden ReLU and TopK
// autoencoders with and without the error term; that an error-term splice
// with no edits leaves every gradient as it is without the splice (its
// Jacobian is the identity); and that the sae.* points' gradient hooks get
// their gradients.
func TestSpliceGradient(t *testing.T) {
	c := golden.Load(t)
	m := openModel(t)
	rows := [][]int{{464, 2068, 7586, 21831, 18045}}
	const tok = 11
	loss := modelctx.LogitLoss(0, -1, tok)
	postEmb := hooks.Site{Point: hooks.ResidPostEmb, Layer: -1}
	D := m.Manifest().Config.DModel
	dir := make([]float32, len(rows[0])*D)
	for i := range dir {
		dir[i] = float32((i*7919)%13-6) / 6
	}
	// value is the loss (row 0's logit of tok at its last position) with
	// resid.post_emb moved by e along dir.
	value := func(h *hooks.Hooks, e float32) float64 {
		move := hooks.New()
		move.Add(hooks.ResidPostEmb, func(_ *hooks.Context, x *hooks.Tensor) (*hooks.Tensor, error) {
			for i := range x.Data {
				x.Data[i] += e * dir[i]
			}
			return x, nil
		})
		out, err := m.Forward(context.Background(), rows, modelctx.WithHooks(h, move))
		if err != nil {
			t.Fatal(err)
		}
		V, T := out.Logits.Shape[2], out.Logits.Shape[1]
		return float64(out.Logits.Data[(T-1)*V+tok])
	}
	derivative := func(g *modelctx.Grads) float64 {
		s := 0.0
		for i, v := range g.Grads[postEmb].Data {
			s += float64(v) * float64(dir[i])
		}
		return s
	}
	plain, err := m.Backward(context.Background(), rows, loss)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"mlp_post_act", "resid_delta_mlp_topk"} {
		info := c.SAEs[name]
		ae := loadGolden(t, info)
		site := saeSite(t, info)
		for _, addError := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/add_error=%v", name, addError), func(t *testing.T) {
				h := hooks.New()
				defer Splice(h, ae, site, addError)()
				seen := map[hooks.Point][]int{}
				for _, p := range []hooks.Point{hooks.SAELatents, hooks.SAEReconstruction, hooks.SAEError} {
					h.Observe(p, func(hc *hooks.Context, x *hooks.Tensor) error {
						seen[hc.Point()] = x.Shape
						return nil
					}, hooks.InStage(hooks.Bwd), hooks.AtLayers(site.Layer))
				}
				g, err := m.Backward(context.Background(), rows, loss, modelctx.WithHooks(h))
				if err != nil {
					t.Fatal(err)
				}
				// Without the error term the spliced model has the
				// autoencoder's kinks (latents switching on and off):
				// steps of 1e-3 already cross some, so take a smaller one.
				e, tol := float32(1e-3), 2e-2
				if !addError {
					e, tol = 1e-4, 4e-2
				}
				num := (value(h, e) - value(h, -e)) / (2 * float64(e))
				an := derivative(g)
				if math.Abs(an-num) > 2e-3+tol*math.Abs(num) {
					t.Errorf("directional derivative %.6g, finite difference %.6g", an, num)
				} else {
					t.Logf("directional derivative %.6g, finite difference %.6g", an, num)
				}
				if fmt.Sprint(seen[hooks.SAELatents]) != fmt.Sprint([]int{1, 5, info.NLatents}) ||
					fmt.Sprint(seen[hooks.SAEReconstruction]) != fmt.Sprint([]int{1, 5, info.NInputs}) {
					t.Errorf("gradient hooks at the sae points saw %v", seen)
				}
				if _, ok := seen[hooks.SAEError]; ok != addError {
					t.Errorf("gradient hook at sae.error called: %v, want %v", ok, addError)
				}
				// Backward reports the sae.* gradients with the others.
				if gl := g.Grads[hooks.Site{Point: hooks.SAELatents, Layer: site.Layer}]; gl == nil || fmt.Sprint(gl.Shape) != fmt.Sprint(seen[hooks.SAELatents]) {
					t.Errorf("Grads at sae.latents: %v", gl)
				}
				if !addError {
					return
				}
				for s, want := range plain.Grads {
					got := g.Grads[s]
					if got == nil {
						t.Fatalf("no gradient at %s", s)
					}
					maxAbs := 0.0
					for _, v := range want.Data {
						maxAbs = math.Max(maxAbs, math.Abs(float64(v)))
					}
					if _, fail := golden.Diff(got.Data, want.Data, golden.Tolerance(maxAbs)); fail != "" {
						t.Errorf("%s: an unedited error-term splice changed the gradient: %s", s, fail)
					}
				}
			})
		}
	}
}

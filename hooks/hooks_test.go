package hooks

import (
	"errors"
	"strings"
	"testing"
)

func TestParseEveryPoint(t *testing.T) {
	if n := len(TDBPoints()); n != 27 {
		t.Fatalf("%d points, want 27 (21 per layer + 6 once)", n)
	}
	perLayer := 0
	for _, p := range TDBPoints() {
		q, err := Parse(p.Path())
		if err != nil || q != p {
			t.Errorf("Parse(%q) = %v, %v", p.Path(), q, err)
		}
		if p.PerLayer() {
			perLayer++
		}
	}
	if perLayer != 21 {
		t.Errorf("%d per-layer points, want 21", perLayer)
	}
	if _, err := Parse("mlp.postact"); !errors.Is(err, ErrUnknownPoint) {
		t.Errorf("unknown path: %v", err)
	}
}

func TestTreeValues(t *testing.T) {
	cases := map[Point]string{
		MLP.PostAct:                   "mlp.post_act",
		Attn.QKSoftmaxDenominator:     "attn.qk_softmax_denominator",
		Resid.Torso.LnAttn.Scale:      "resid.torso.ln_attn.scale",
		Resid.Torso.LnMLP.PostScale:   "resid.torso.ln_mlp.post_scale",
		Resid.LnF.PostMeanSubtraction: "resid.ln_f.post_mean_subtraction",
		Resid.PostEmb:                 "resid.post_emb",
		Resid.PostLnF:                 "resid.post_ln_f",
		Logits:                        "logits",
		SAE.Latents:                   "sae.latents",
		Resid.Torso.DeltaAttn:         "resid.torso.delta_attn",
	}
	for p, want := range cases {
		if p.Path() != want {
			t.Errorf("%v: path %q, want %q", int(p), p.Path(), want)
		}
	}
	if got := Attn.QKLogits.Shape(); len(got) != 4 || got[2] != Keys || got[3] != Heads {
		t.Errorf("qk_logits shape %v, want [batch seq keys heads]", got)
	}
}

func TestParseSite(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Site
		err  bool
	}{
		{"mlp.post_act@3", Site{Point: MLPPostAct, Layer: 3}, false},
		{"logits", Site{Point: LogitsPoint, Layer: -1}, false},
		{"logits@0", Site{}, true},
		{"mlp.post_act", Site{}, true},
		{"mlp.post_act@-1", Site{}, true},
		{"mlp.post_act@x", Site{}, true},
		{"mlp.post_act@03", Site{}, true},
		{"nope@1", Site{}, true},
	} {
		got, err := ParseSite(tc.in)
		if (err != nil) != tc.err || (!tc.err && got != tc.want) {
			t.Errorf("ParseSite(%q) = %v, %v", tc.in, got, err)
		}
	}
}

func TestOrderFollowsTheOriginal(t *testing.T) {
	n := 2
	seq := []Site{{Point: ResidPostEmb, Layer: -1}, {Point: LnAttnScale, Layer: 0}, {Point: AttnQ, Layer: 0}, {Point: AttnQKLogits, Layer: 0}, {Point: AttnQKSoftmaxDenominator, Layer: 0},
		{Point: AttnQKProbs, Layer: 0}, {Point: PostMLP, Layer: 0}, {Point: LnAttnPostMeanSubtraction, Layer: 1}, {Point: PostMLP, Layer: 1}, {Point: LnFScale, Layer: -1}, {Point: PostLnF, Layer: -1}, {Point: LogitsPoint, Layer: -1}}
	for i := 1; i < len(seq); i++ {
		if seq[i-1].Order(n) >= seq[i].Order(n) {
			t.Errorf("%s should come before %s", seq[i-1], seq[i])
		}
	}
}

func TestUsesAndLayers(t *testing.T) {
	h := New()
	h.Observe(AttnQKProbs, func(*Context, *Tensor) error { return nil })
	h.Add(MLPPostAct, func(_ *Context, x *Tensor) (*Tensor, error) { return x, nil }, AtLayers(1))
	h.Observe(MLPPostAct, func(*Context, *Tensor) error { return nil })
	uses, err := Snapshot(h).Uses(2)
	if err != nil {
		t.Fatal(err)
	}
	want := map[Site]Use{{Point: AttnQKProbs, Layer: 0}: Read, {Point: AttnQKProbs, Layer: 1}: Read, {Point: MLPPostAct, Layer: 0}: Read, {Point: MLPPostAct, Layer: 1}: Write}
	if len(uses) != len(want) {
		t.Fatalf("uses %v", uses)
	}
	for s, u := range want {
		if uses[s] != u {
			t.Errorf("%s: use %v, want %v", s, uses[s], u)
		}
	}
}

func TestBadRegistrationsFailAtRun(t *testing.T) {
	h := New()
	h.Add(LogitsPoint, func(_ *Context, x *Tensor) (*Tensor, error) { return x, nil }, AtLayers(0))
	if _, err := Snapshot(h).Uses(2); !errors.Is(err, ErrBadOption) {
		t.Errorf("AtLayers on a once point: %v", err)
	}
	h2 := New()
	h2.Observe(AttnQ, nil)
	if _, err := Snapshot(h2).Uses(2); !errors.Is(err, ErrBadOption) {
		t.Errorf("nil hook: %v", err)
	}
}

func TestRemove(t *testing.T) {
	h := New()
	r1 := h.Observe(AttnQ, func(*Context, *Tensor) error { return nil })
	r2 := h.Observe(AttnK, func(*Context, *Tensor) error { return nil })
	r1()
	r1()
	if h.Len() != 1 {
		t.Fatalf("len %d after removing one of two", h.Len())
	}
	r2()
	if h.Len() != 0 {
		t.Fatal("not empty")
	}
}

func TestCallOrderAndContext(t *testing.T) {
	h := New()
	var trace []string
	site := Site{Point: MLPPostAct, Layer: 1}
	h.Add(MLPPostAct, func(c *Context, x *Tensor) (*Tensor, error) {
		trace = append(trace, "fwd2")
		return x, nil
	}, InStage(Fwd2))
	h.Add(MLPPostAct, func(c *Context, x *Tensor) (*Tensor, error) {
		v, _ := c.Value("who")
		trace = append(trace, "fwd:"+v.(string))
		if c.Layer() != 1 || c.Point() != MLPPostAct {
			t.Errorf("context %v", c.Site)
		}
		x.Data[0] = 42
		return x, nil
	}, Bind("who", "a"))
	h.Observe(MLPPostAct, func(c *Context, x *Tensor) error {
		trace = append(trace, "obs")
		if x.Data[0] != 42 {
			t.Errorf("observer after a writer sees %v", x.Data[0])
		}
		return nil
	})
	x := Zeros(1, 1, 2)
	out, err := Snapshot(h).Call(site, x, false)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(trace, ","); got != "fwd:a,obs,fwd2" {
		t.Errorf("order %s", got)
	}
	if out.Data[0] != 42 {
		t.Error("edit lost")
	}
}

func TestObserverCannotModifySharedTensor(t *testing.T) {
	h := New()
	h.Observe(AttnQ, func(_ *Context, x *Tensor) error {
		x.Data[0] = 7
		return nil
	})
	x := Zeros(1, 1, 1, 1)
	if _, err := Snapshot(h).Call(Site{Point: AttnQ, Layer: 0}, x, true); err != nil {
		t.Fatal(err)
	}
	if x.Data[0] != 0 {
		t.Fatal("observer changed a shared tensor")
	}
}

// TestProtectiveCopiesReuseGivenScratch: with WithScratch, the observers'
// protective copy is made in memory from take, handed back by
// DoneWithScratch, and the next run's set copies into that same memory.
func TestProtectiveCopiesReuseGivenScratch(t *testing.T) {
	var free [][]float32
	var fresh int
	take := func(n int) []float32 {
		for i, b := range free {
			if len(b) == n {
				free = append(free[:i], free[i+1:]...)
				return b
			}
		}
		fresh++
		return make([]float32, n)
	}
	give := func(bs ...[]float32) { free = append(free, bs...) }
	var seen []*float32
	h := New()
	h.Observe(AttnQ, func(_ *Context, x *Tensor) error {
		seen = append(seen, &x.Data[0])
		x.Data[0] = 7 // the copy's, not the pass's
		return nil
	})
	for run := 0; run < 3; run++ {
		set := Snapshot(h).WithScratch(take, give)
		x := Zeros(1, 2, 1, 4)
		if _, err := set.Call(Site{Point: AttnQ, Layer: 0}, x, true); err != nil {
			t.Fatal(err)
		}
		if x.Data[0] != 0 {
			t.Fatal("observer changed a shared tensor")
		}
		set.DoneWithScratch()
		set.DoneWithScratch() // twice: harmless
	}
	if fresh != 1 || len(free) != 1 || seen[0] != seen[1] || seen[1] != seen[2] {
		t.Fatalf("%d buffers taken fresh, %d given back; copies in one buffer: %v", fresh, len(free), seen[0] == seen[2])
	}
}

func TestHookFailuresNameTheSite(t *testing.T) {
	site := Site{Point: MLPPostAct, Layer: 1}
	for _, tc := range []struct {
		name string
		fn   Func
		want error
	}{
		{"error", func(*Context, *Tensor) (*Tensor, error) { return nil, errors.New("boom") }, ErrHookFailed},
		{"panic", func(*Context, *Tensor) (*Tensor, error) { panic("boom") }, ErrHookPanic},
		{"shape", func(*Context, *Tensor) (*Tensor, error) { return Zeros(1, 1, 3), nil }, ErrHookShape},
		{"nil", func(*Context, *Tensor) (*Tensor, error) { return nil, nil }, ErrHookShape},
		{"short data", func(*Context, *Tensor) (*Tensor, error) {
			return &Tensor{Shape: []int{1, 1, 2}, Data: []float32{1}}, nil
		}, ErrHookShape},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := New()
			h.Add(MLPPostAct, tc.fn)
			_, err := Snapshot(h).Call(site, Zeros(1, 1, 2), false)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), "mlp.post_act layer 1") {
				t.Errorf("error does not name the site: %v", err)
			}
		})
	}
}

func TestTensorEdits(t *testing.T) {
	x := &Tensor{Shape: []int{2, 1, 2, 3}, Data: make([]float32, 12)}
	for i := range x.Data {
		x.Data[i] = 1
	}
	if err := x.FillTrailing(0, 1); err != nil {
		t.Fatal(err)
	}
	want := []float32{1, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0, 0}
	for i := range want {
		if x.Data[i] != want[i] {
			t.Fatalf("FillTrailing(0,1): %v", x.Data)
		}
	}
	if err := x.FillTrailing(5, 0, 2); err != nil {
		t.Fatal(err)
	}
	if x.At(0, 0, 0, 2) != 5 || x.At(1, 0, 0, 2) != 5 || x.At(0, 0, 0, 1) != 1 {
		t.Fatalf("FillTrailing(5,0,2): %v", x.Data)
	}
	if err := x.FillTrailing(0, 2); err == nil {
		t.Error("index out of range accepted")
	}
	if err := x.FillTrailing(0, 0, 0, 0); err == nil {
		t.Error("too many indices accepted")
	}
	y := Zeros(1, 2, 2)
	if err := y.AddTrailing([]float32{1, 2}); err != nil || y.Data[2] != 1 || y.Data[3] != 2 {
		t.Fatalf("AddTrailing: %v %v", y.Data, err)
	}
	if err := y.AddTrailing([]float32{1}); err == nil {
		t.Error("wrong vector length accepted")
	}
}

func TestParseEditTarget(t *testing.T) {
	s, idx, err := ParseEditTarget("attn.v_out@0:2")
	if err != nil || s != (Site{Point: AttnVOut, Layer: 0}) || len(idx) != 1 || idx[0] != 2 {
		t.Fatalf("got %v %v %v", s, idx, err)
	}
	if _, _, err := ParseEditTarget("mlp.post_act@1:7:1"); err == nil {
		t.Error("too many indices for mlp.post_act accepted")
	}
	if _, _, err := ParseEditTarget("logits:50256"); err != nil {
		t.Error(err)
	}
}

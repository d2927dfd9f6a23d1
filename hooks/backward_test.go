package hooks

import (
	"errors"
	"fmt"
	"testing"
)

func TestCallBwdRunsLastRegisteredFirstAndReplaces(t *testing.T) {
	h := New()
	var log []string
	site := Site{Point: MLPPostAct, Layer: 1}
	h.Observe(MLPPostAct, func(c *Context, x *Tensor) error {
		log = append(log, fmt.Sprintf("first saw %v", x.Data[0]))
		return nil
	}, InStage(Bwd))
	h.Add(MLPPostAct, func(c *Context, x *Tensor) (*Tensor, error) {
		if c.Stage != Bwd || c.Layer() != 1 {
			t.Errorf("context %v layer %d", c.Stage, c.Layer())
		}
		log = append(log, "double")
		y := x.Clone()
		for i := range y.Data {
			y.Data[i] *= 2
		}
		return y, nil
	}, InStage(Bwd), AtLayers(1))
	h.Add(MLPPostAct, func(c *Context, x *Tensor) (*Tensor, error) {
		t.Error("fwd hook called by CallBwd")
		return x, nil
	})
	s := Snapshot(h)
	out, err := s.CallBwd(site, &Tensor{Shape: []int{1, 1, 2}, Data: []float32{1, 2}}, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if out.Data[0] != 2 || out.Data[1] != 4 {
		t.Errorf("gradient %v, want the doubled one", out.Data)
	}
	if fmt.Sprint(log) != "[double first saw 2]" {
		t.Errorf("order %v: the last registered bwd hook runs first", log)
	}
	// Layer filter: nothing but the observer at layer 0.
	log = nil
	if _, err := s.CallBwd(Site{Point: MLPPostAct, Layer: 0}, &Tensor{Shape: []int{1}, Data: []float32{1}}, false, nil); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(log) != "[first saw 1]" {
		t.Errorf("layer 0: %v", log)
	}
}

func TestBwdUses(t *testing.T) {
	h := New()
	h.Observe(AttnQ, func(*Context, *Tensor) error { return nil }, InStage(Bwd))
	h.Add(MLPPreAct, func(_ *Context, x *Tensor) (*Tensor, error) { return x, nil }, InStage(Bwd), AtLayers(0))
	h.Add(Logits, func(_ *Context, x *Tensor) (*Tensor, error) { return x, nil }) // fwd: not a bwd use
	s := Snapshot(h)
	if !s.HasBwd() {
		t.Fatal("HasBwd false")
	}
	u, err := s.BwdUses(2)
	if err != nil {
		t.Fatal(err)
	}
	want := map[Site]Use{{Point: AttnQ, Layer: 0}: Read, {Point: AttnQ, Layer: 1}: Read, {Point: MLPPreAct, Layer: 0}: Write}
	if fmt.Sprint(u) != fmt.Sprint(want) {
		t.Errorf("uses %v, want %v", u, want)
	}
	order := SitesInBackwardOrder(u, 2)
	if fmt.Sprint(order) != "[attn.q@1 mlp.pre_act@0 attn.q@0]" {
		t.Errorf("backward order %v", order)
	}
}

func TestCallBwdErrors(t *testing.T) {
	h := New()
	h.Add(DeltaMLP, func(_ *Context, x *Tensor) (*Tensor, error) { return Zeros(1), nil }, InStage(Bwd))
	_, err := Snapshot(h).CallBwd(Site{Point: DeltaMLP, Layer: 0}, Zeros(2), false, nil)
	if !errors.Is(err, ErrHookShape) {
		t.Errorf("shape change: %v", err)
	}
	h = New()
	h.Add(DeltaMLP, func(_ *Context, x *Tensor) (*Tensor, error) { panic("boom") }, InStage(Bwd))
	_, err = Snapshot(h).CallBwd(Site{Point: DeltaMLP, Layer: 0}, Zeros(2), false, nil)
	if !errors.Is(err, ErrHookPanic) {
		t.Errorf("panic: %v", err)
	}
}

func TestCallBwdRunsVJPsAroundTheGradientHooks(t *testing.T) {
	h := New()
	var log []string
	step := func(name string, k float32) Func {
		return func(_ *Context, x *Tensor) (*Tensor, error) {
			log = append(log, fmt.Sprintf("%s(%v)", name, x.Data[0]))
			y := x.Clone()
			y.Data[0] *= k
			return y, nil
		}
	}
	// Registered in an order unlike the one they must run in.
	h.Add(DeltaMLP, step("fwdVJP", 5), InStage(Bwd), VJPOf(Fwd))
	h.Add(DeltaMLP, step("user1", 1), InStage(Bwd))
	h.Add(DeltaMLP, step("fwd2VJP", 2), InStage(Bwd), VJPOf(Fwd2))
	h.Add(DeltaMLP, step("user2", 3), InStage(Bwd))
	var arrived float32
	out, err := Snapshot(h).CallBwd(Site{Point: DeltaMLP, Layer: 0}, &Tensor{Shape: []int{1}, Data: []float32{1}}, false,
		func(x *Tensor) { arrived = x.Data[0] })
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(log) != "[fwd2VJP(1) user2(2) user1(6) fwdVJP(6)]" {
		t.Errorf("order %v", log)
	}
	if arrived != 2 || out.Data[0] != 30 {
		t.Errorf("gradient hooks received %v, result %v", arrived, out.Data[0])
	}
	if err := Snapshot(h).Err(); err != nil {
		t.Fatal(err)
	}
	h.Add(DeltaMLP, step("bad", 1), InStage(Bwd), VJPOf(Bwd))
	if err := Snapshot(h).Err(); !errors.Is(err, ErrBadOption) {
		t.Errorf("VJPOf(Bwd): %v", err)
	}
}

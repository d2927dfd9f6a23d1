package runtime

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/onnx-tdb/onnx-tdb/graphs"
	"github.com/onnx-tdb/onnx-tdb/graphs/onnxpb"
	"github.com/onnx-tdb/onnx-tdb/hooks"
	"google.golang.org/protobuf/proto"
)

// bwdSite is a site the backward pass stops at.
type bwdSite struct {
	site  hooks.Site
	ref   PointRef
	grad  string // the gradient tensor
	write bool   // a bwd hook may replace the gradient: the graph is cut here
	hook  bool   // the site has bwd hooks
	want  bool   // its gradient is returned
}

type bwdSeg struct {
	sess    *session
	inputs  []string
	outputs []string
}

// bwdPlan is a backward graph cut at the sites whose gradient a hook may
// replace, with its sessions.
type bwdPlan struct {
	segs    []*bwdSeg
	sites   []bwdSite    // in backward order, each reached by a gradient
	zero    []hooks.Site // wanted sites no gradient reaches
	root    string
	seed    string   // seed input, "" when no gradient reaches any wanted site
	forward []string // computed forward values the backward graph reads
	inputs  []string // model inputs it reads
	lastUse map[string]int
	// cutSites lists, per cut gradient, the sites whose hooks write it.
	cutSites map[string][]int
}

func (p *bwdPlan) close() error {
	var errs []error
	for _, s := range p.segs {
		errs = append(errs, s.sess.close())
	}
	return errors.Join(errs...)
}

// bwdKey is what a backward plan depends on.
type bwdKey struct {
	root     hooks.Site
	want     map[hooks.Site]bool
	stop     map[hooks.Site]bool
	bwd      map[hooks.Site]hooks.Use // bwd hooks
	written  map[hooks.Site]bool      // sites fwd/fwd2 hooks may write
	switched map[hooks.Site]bool      // sites whose switch is taken
}

func (k bwdKey) String() string {
	var parts []string
	add := func(tag string, m map[hooks.Site]bool) {
		for s, ok := range m {
			if ok {
				parts = append(parts, tag+s.String())
			}
		}
	}
	add("want:", k.want)
	add("stop:", k.stop)
	add("written:", k.written)
	add("switch:", k.switched)
	for s, u := range k.bwd {
		parts = append(parts, fmt.Sprintf("bwd:%s=%d", s, u))
	}
	sort.Strings(parts)
	return "root:" + k.root.String() + "|" + strings.Join(parts, "|")
}

// BackwardPlanCount is the number of backward plans built so far.
func (e *Engine) BackwardPlanCount() int { return e.bwd.len() }

func (e *Engine) backwardPlan(k bwdKey) (*bwdPlan, error) {
	return e.bwd.get(k.String(), func() (*bwdPlan, error) { return e.buildBackward(k) })
}

// buildBackward differentiates the model for one plan key and opens the
// sessions of the backward graph's segments.
func (e *Engine) buildBackward(k bwdKey) (*bwdPlan, error) {
	model := e.g.Model
	cloned := false
	for _, sw := range e.g.Switches {
		for s := range k.switched {
			if sw.Point != s.Point.Path() || sw.Layer != s.Layer {
				continue
			}
			if !cloned {
				model = proto.Clone(model).(*onnxpb.ModelProto)
				cloned = true
			}
			if err := graphs.Rewire(model, sw.Replace, sw.With); err != nil {
				return nil, fmt.Errorf("switch at %s: %w", s, err)
			}
		}
	}
	ref := func(s hooks.Site) (PointRef, error) {
		r, ok := e.g.Points[s]
		if !ok {
			return PointRef{}, fmt.Errorf("%w: %s", ErrNoPoint, s)
		}
		return r, nil
	}
	rootRef, err := ref(k.root)
	if err != nil {
		return nil, err
	}
	// Every site the backward pass visits, in backward order.
	visit := map[hooks.Site]hooks.Use{}
	for s := range k.want {
		visit[s] = hooks.Read
	}
	for s, u := range k.bwd {
		if u > visit[s] {
			visit[s] = u
		}
	}
	order := hooks.SitesInBackwardOrder(visit, e.g.NLayers)
	var wrt, stop, saved, replaced []string
	seen := map[string]bool{}
	for _, s := range order {
		r, err := ref(s)
		if err != nil {
			return nil, err
		}
		if !seen[r.Tensor] {
			seen[r.Tensor] = true
			wrt = append(wrt, r.Tensor)
		}
	}
	for s := range k.stop {
		r, err := ref(s)
		if err != nil {
			return nil, err
		}
		stop = append(stop, r.Tensor)
	}
	for s := range k.written {
		if r, ok := e.g.Points[s]; ok {
			replaced = append(replaced, r.Tensor)
		}
	}
	for _, r := range e.g.Points {
		saved = append(saved, r.Tensor)
	}
	sort.Strings(stop)
	sort.Strings(saved)
	sort.Strings(replaced)
	gr, err := graphs.Backward(model, graphs.GradSpec{
		Seeds: []string{rootRef.Tensor}, Wrt: wrt, Stop: stop, Saved: saved, Replaced: replaced,
	})
	if err != nil {
		return nil, fmt.Errorf("backward plan: %w", err)
	}
	p := &bwdPlan{root: rootRef.Tensor, lastUse: map[string]int{}, cutSites: map[string][]int{}}
	zero := map[string]bool{}
	for _, t := range gr.Zero {
		zero[t] = true
	}
	var cuts, reads []string
	cutSeen := map[string]bool{}
	for _, s := range order {
		r, _ := ref(s)
		if zero[r.Tensor] {
			if k.want[s] {
				p.zero = append(p.zero, s)
			}
			continue
		}
		bs := bwdSite{site: s, ref: r, grad: graphs.GradName(r.Tensor), write: k.bwd[s] == hooks.Write, hook: k.bwd[s] != hooks.Unused, want: k.want[s]}
		if bs.write {
			p.cutSites[bs.grad] = append(p.cutSites[bs.grad], len(p.sites))
		}
		p.sites = append(p.sites, bs)
		if bs.write && !cutSeen[bs.grad] {
			cutSeen[bs.grad] = true
			cuts = append(cuts, bs.grad)
		}
	}
	for _, s := range p.sites {
		if !cutSeen[s.grad] {
			reads = append(reads, s.grad)
		}
	}
	if len(p.sites) == 0 || len(gr.Seeds) == 0 {
		return p, nil
	}
	p.seed = gr.Seeds[0]
	inputs := map[string]bool{}
	for _, in := range e.g.Model.GetGraph().GetInput() {
		inputs[in.GetName()] = true
	}
	for _, f := range gr.Forward {
		if inputs[f] {
			p.inputs = append(p.inputs, f)
		} else {
			p.forward = append(p.forward, f)
		}
	}
	segs, err := graphs.Split(gr.Model, graphs.Spec{Outputs: reads, Cuts: cuts})
	if err != nil {
		return nil, fmt.Errorf("backward plan: %w", err)
	}
	defer e.buildingSessions()()
	for i, sg := range segs {
		tag := fmt.Sprintf("bwd-seg%d-of-%d", i, len(segs))
		sess, err := e.segmentSession(sg.Model, sg.Inputs, sg.Outputs, tag)
		if err != nil {
			p.close()
			return nil, err
		}
		p.segs = append(p.segs, &bwdSeg{sess: sess, inputs: sg.Inputs, outputs: sg.Outputs})
		for _, in := range sg.Inputs {
			p.lastUse[in] = i
		}
	}
	return p, nil
}

// backwardKey says which plan a request needs.
func (e *Engine) backwardKey(req BackwardRequest, fwdUses, bwdUses map[hooks.Site]hooks.Use) bwdKey {
	k := bwdKey{root: req.Root, want: map[hooks.Site]bool{}, stop: map[hooks.Site]bool{}, bwd: bwdUses,
		written: map[hooks.Site]bool{}, switched: map[hooks.Site]bool{}}
	for _, s := range req.Grads {
		k.want[s] = true
	}
	for _, s := range req.Stop {
		k.stop[s] = true
	}
	for s, u := range fwdUses {
		if u == hooks.Write {
			k.written[s] = true
		}
	}
	// A switch (the explicit softmax) is taken where the point has hooks at
	// any stage or its gradient is asked for.
	for _, sw := range e.g.Switches {
		for _, m := range []map[hooks.Site]hooks.Use{fwdUses, bwdUses, toUses(k.want)} {
			for s := range m {
				if sw.Point == s.Point.Path() && sw.Layer == s.Layer {
					k.switched[s] = true
				}
			}
		}
	}
	return k
}

func toUses(m map[hooks.Site]bool) map[hooks.Site]hooks.Use {
	u := map[hooks.Site]hooks.Use{}
	for s := range m {
		u[s] = hooks.Read
	}
	return u
}

// forwardOutputs lists what the forward pass of a plan returns: the
// caller's outputs, the root, the forward values the backward graph reads
// and the values of the sites no gradient reaches (for their shapes).
func (e *Engine) forwardOutputs(p *bwdPlan, asked []string) []string {
	outs := append([]string(nil), asked...)
	have := map[string]bool{}
	for _, o := range outs {
		have[o] = true
	}
	need := append([]string{p.root}, p.forward...)
	for _, s := range p.zero {
		need = append(need, e.g.Points[s].Tensor)
	}
	for _, n := range need {
		if !have[n] {
			have[n] = true
			outs = append(outs, n)
		}
	}
	return outs
}

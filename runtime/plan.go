package runtime

// Plans: for each set of hooked sites (and span, kept outputs and read
// stride) the graph cut into segments, each one session, built once and
// cached by the Engine.

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/onnx-tdb/onnx-tdb/graphs"
	"github.com/onnx-tdb/onnx-tdb/graphs/onnxpb"
	"github.com/onnx-tdb/onnx-tdb/hooks"
	"google.golang.org/protobuf/proto"
)

// siteRef is a hooked site of a plan.
type siteRef struct {
	site  hooks.Site
	ref   PointRef
	write bool
}

type segRun struct {
	sess   *session
	inputs []string
	level  int
}

type plan struct {
	segs     []*segRun
	sites    []siteRef
	cutSites map[string][]int // cut tensor -> indices of the sites it carries
	lastUse  map[string]int   // last segment index that reads a tensor
	lastSite map[string]int   // index of the last site that reads a tensor
	outputs  map[string]bool  // requested outputs
	keep     map[string]bool  // outputs handed back as values, not copied
	shapes   shapeMemory      // output shapes seen, by input shapes (prealloc.go)
}

func planKey(outputs []string, keep map[string]bool, uses map[hooks.Site]hooks.Use) string {
	var parts []string
	for _, o := range outputs {
		parts = append(parts, "out:"+o)
	}
	for o := range keep {
		parts = append(parts, "keep:"+o)
	}
	for s, u := range uses {
		parts = append(parts, fmt.Sprintf("%s=%d", s, u))
	}
	sort.Strings(parts)
	return strings.Join(parts, "|")
}

func (e *Engine) plan(outputs []string, keep map[string]bool, uses map[hooks.Site]hooks.Use, sp span, stride int) (*plan, error) {
	if !e.o.placesOnDevice() {
		keep = nil // kept or copied, outputs come out of the same plan
	}
	key := planKey(outputs, keep, uses) + sp.key() + fmt.Sprintf("|stride:%d", stride)
	return e.plans.get(key, func() (*plan, error) { return e.build(outputs, keep, uses, sp, stride) })
}

// build cuts the graph for one set of hooked sites and opens its sessions.
func (e *Engine) build(outputs []string, keep map[string]bool, uses map[hooks.Site]hooks.Use, sp span, stride int) (*plan, error) {
	sites := hooks.SitesInOrder(uses, e.g.NLayers)
	p := &plan{outputs: map[string]bool{}, keep: map[string]bool{}, lastSite: map[string]int{}}
	for o := range keep {
		p.keep[o] = true
	}
	var cuts, reads []string
	cutSeen, readSeen := map[string]bool{}, map[string]bool{}
	model := e.g.Model
	cloned := false
	if sp.start != nil {
		var err error
		if model, err = startModel(model, e.g.Points[*sp.start].Tensor); err != nil {
			return nil, err
		}
		cloned = true
	}
	for _, s := range sites {
		ref, ok := e.g.Points[s]
		if !ok {
			return nil, fmt.Errorf("%w: %s", ErrNoPoint, s)
		}
		for _, sw := range e.g.Switches {
			if sw.Point == s.Point.Path() && sw.Layer == s.Layer {
				if !cloned {
					model = proto.Clone(model).(*onnxpb.ModelProto)
					cloned = true
				}
				replace, with := sw.Replace, sw.With
				if uses[s] != hooks.Write && sw.ReadReplace != "" {
					replace, with = sw.ReadReplace, sw.ReadWith
				}
				if err := graphs.Rewire(model, replace, with); err != nil {
					return nil, fmt.Errorf("switch at %s: %w", s, err)
				}
			}
		}
		write := uses[s] == hooks.Write
		p.sites = append(p.sites, siteRef{site: s, ref: ref, write: write})
		if write && !cutSeen[ref.Tensor] {
			cutSeen[ref.Tensor] = true
			cuts = append(cuts, ref.Tensor)
		}
	}
	cuts = sp.trimCuts(e.withBoundaries(cuts, cutSeen, uses, stride), cutSeen, e.g)
	for _, s := range p.sites {
		if !s.write && !cutSeen[s.ref.Tensor] && !readSeen[s.ref.Tensor] {
			readSeen[s.ref.Tensor] = true
			reads = append(reads, s.ref.Tensor)
		}
	}
	// A written model input needs no cut: its hooks run before the first
	// segment that reads it.
	inputs := map[string]bool{}
	for _, in := range model.GetGraph().GetInput() {
		inputs[in.GetName()] = true
	}
	cuts = slices.DeleteFunc(cuts, func(c string) bool { return inputs[c] })
	// LayerNorms whose inner points are only read stay one fused kernel.
	model, _ = graphs.FuseReadNorms(model, reads, cuts)
	segs, err := graphs.Split(model, graphs.Spec{Outputs: outputs, Reads: reads, Cuts: cuts})
	if err != nil {
		return nil, fmt.Errorf("plan: %w", err)
	}
	p.cutSites = map[string][]int{}
	for i, s := range p.sites {
		if cutSeen[s.ref.Tensor] {
			p.cutSites[s.ref.Tensor] = append(p.cutSites[s.ref.Tensor], i)
		}
	}
	for _, o := range outputs {
		p.outputs[o] = true
	}
	for i, s := range p.sites {
		p.lastSite[s.ref.Tensor] = i
	}
	p.lastUse = map[string]int{}
	for i, sg := range segs {
		for _, in := range sg.Inputs {
			p.lastUse[in] = i
		}
	}
	siteTensor := map[string]bool{}
	for _, s := range p.sites {
		siteTensor[s.ref.Tensor] = true
	}
	defer e.buildingSessions()()
	for i, sg := range segs {
		sess, err := e.sharedSession(sg, fmt.Sprintf("seg%d-of-%d", i, len(segs)), p.deviceOutputs(sg.Outputs, siteTensor))
		if err != nil {
			return nil, err
		}
		p.segs = append(p.segs, &segRun{sess: sess, inputs: sg.Inputs, level: sg.Level})
	}
	return p, nil
}

// deviceOutputs says which of a segment's outputs may stay in GPU memory:
// those only later segments read, and kept outputs. Hooked tensors and the
// other requested outputs are handed to Go, so they come back to the host.
func (p *plan) deviceOutputs(outputs []string, siteTensor map[string]bool) []bool {
	onDev := make([]bool, len(outputs))
	for i, name := range outputs {
		_, later := p.lastUse[name]
		switch {
		case siteTensor[name]:
		case p.keep[name]:
			onDev[i] = true
		default:
			onDev[i] = later && !p.outputs[name]
		}
	}
	return onDev
}

// segmentSession opens a session of m, forward or backward, with the
// engine's shared weights and prepacked copies; fetch, when given, are the graph's
// names of outputs (graphs.Segment.Fetch), outputs the names the run
// stores them under.
func (e *Engine) segmentSession(m *onnxpb.ModelProto, inputs, outputs []string, tag string, fetch ...string) (*session, error) {
	b, err := proto.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("plan: encode %s: %w", tag, err)
	}
	return e.openSegment(m, b, inputs, outputs, tag, e.o, fetch...)
}

// openSegment is segmentSession for a segment already encoded (b), with
// options o.
func (e *Engine) openSegment(m *onnxpb.ModelProto, b []byte, inputs, outputs []string, tag string, o Options, fetch ...string) (*session, error) {
	if err := checkCUDAPluginOps(e.o, m); err != nil {
		return nil, fmt.Errorf("plan: %s: %w", tag, err)
	}
	var inits []string
	for _, t := range m.GetGraph().GetInitializer() {
		inits = append(inits, t.GetName())
	}
	sess, err := newSession(b, inits, inputs, outputs, e.g.Dir, tag, o, e.ws, e.pp)
	if err != nil || len(fetch) == 0 {
		return sess, err
	}
	if len(fetch) != len(outputs) {
		sess.close()
		return nil, fmt.Errorf("plan: %s: %d graph outputs for %d tensors", tag, len(fetch), len(outputs))
	}
	sess.cs.setFetch(fetch)
	return sess, nil
}

// buildingSessions brackets the creation of a plan's sessions. While ORT
// prepacks, pages it has read stay resident in the weights' mapping beside
// the packed copies; they are dropped every 2 ms as it goes, or less often
// where a drop takes long (runPager keeps dropping under a tenth of the
// time), and the heap is trimmed at the end, so the peak stays near the
// packed size instead of twice the weights.
func (e *Engine) buildingSessions() (done func()) {
	stopPager := e.ws.pager(2 * time.Millisecond)
	return func() {
		stopPager()
		trimHeap()
	}
}

// withBoundaries adds the stage boundaries to a plan's cuts when it reads
// points of two or more layers, keeping the cuts in call order: every
// boundary with stride 1, else the input of every stride-th layer
// (readcuts.go). It adds the head's input (Graph.Head) to every plan.
func (e *Engine) withBoundaries(cuts []string, cutSeen map[string]bool, uses map[hooks.Site]hooks.Use, stride int) []string {
	layers := map[int]bool{}
	for s, u := range uses {
		if u == hooks.Read {
			layers[s.Layer] = true
		}
	}
	var add []hooks.Site
	if (len(layers) >= 2 || e.o.StageCuts) && len(e.g.Boundaries) > 0 {
		for i, b := range e.g.Boundaries {
			if stride > 1 && !e.o.StageCuts && (i == 0 || i%stride != 0) {
				continue
			}
			add = append(add, b)
		}
	}
	// Every plan is cut before the head, so that the head is one segment
	// that every plan with the same outputs shares (sessions are shared by
	// content): ONNX Runtime packs a new session's weights before it finds
	// the packed copy it already has, and a plan that ended at the logits
	// in its own session packed the unembedding again (GPT-2 small: 154 MB,
	// 0.24x its weights, on top of the resident set while the plan was
	// built). The extra session run per forward was within the bench's
	// noise (two instances of each model, 2026-12-06); an earlier
	// one-instance A/B had put it at 2-5%.
	if e.g.Head != nil {
		add = append(add, *e.g.Head)
	}
	if len(add) == 0 {
		return cuts
	}
	order := map[string]int{}
	for s := range uses {
		if ref, ok := e.g.Points[s]; ok && cutSeen[ref.Tensor] {
			if o, seen := order[ref.Tensor]; !seen || s.Order(e.g.NLayers) < o {
				order[ref.Tensor] = s.Order(e.g.NLayers)
			}
		}
	}
	for _, b := range add {
		ref, ok := e.g.Points[b]
		if !ok || cutSeen[ref.Tensor] {
			continue
		}
		cutSeen[ref.Tensor] = true
		cuts = append(cuts, ref.Tensor)
		order[ref.Tensor] = b.Order(e.g.NLayers)
	}
	sort.SliceStable(cuts, func(i, j int) bool { return order[cuts[i]] < order[cuts[j]] })
	return cuts
}

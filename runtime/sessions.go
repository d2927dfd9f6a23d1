package runtime

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/onnx-tdb/onnx-tdb/graphs"
	"google.golang.org/protobuf/proto"
)

// Plans share sessions. Two plans often have segments that are the same
// graph: every plan that is cut has the same head segment (Graph.Head), and
// plans that differ only at their first cut share what follows their
// second. Such a segment gets one session, built by the first plan that has
// it and used by all of them (an ONNX Runtime session runs concurrent calls
// safely). This is what keeps building a further plan from costing memory:
// ONNX Runtime prepacks a new session's weights into fresh buffers before
// it finds them in the shared prepacked-weights container, so every session
// over GPT-2 small's 154 MB unembedding briefly held a second copy of it
// (~0.24x the model's weights above its resident size). The engine owns
// these sessions; its Close releases them.

// sharedSession returns the session of a forward segment, opening it on
// first use. onDev says which outputs stay in device memory (see
// plan.deviceOutputs); it is part of what makes two segments the same. The
// segment's graph loses its name (the index Split gives it), which the
// session does not need and two plans may number differently.
func (e *Engine) sharedSession(sg *graphs.Segment, tag string, onDev []bool) (*session, error) {
	dm, placing := e.o.deviceMemory()
	if !placing {
		onDev = nil
	}
	sg.Model.GetGraph().Name = nil
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(sg.Model)
	if err != nil {
		return nil, fmt.Errorf("plan: encode %s: %w", tag, err)
	}
	o := e.o
	o.noMemPattern = !o.Provider.IsCUDA() && handsOutReads(sg)
	return e.sessions.get(segmentKey(b, sg, onDev), func() (*session, error) {
		sess, err := e.openSegment(sg.Model, b, sg.Inputs, sg.Outputs, tag, o, sg.Fetch...)
		if err != nil || !placing {
			return sess, err
		}
		if err := sess.cs.keepOnDevice(dm, onDev); err != nil {
			sess.close()
			return nil, err
		}
		return sess, nil
	})
}

// segmentKey identifies a segment by content: its encoded graph (b), the
// tensors it reads and writes and where its outputs go.
func segmentKey(b []byte, sg *graphs.Segment, onDev []bool) string {
	h := sha256.New()
	h.Write(b)
	for _, list := range [][]string{sg.Inputs, sg.Outputs, sg.Fetch} {
		fmt.Fprintf(h, "\x00%d", len(list))
		for _, s := range list {
			fmt.Fprintf(h, "\x00%s", s)
		}
	}
	fmt.Fprintf(h, "\x00%v", onDev)
	return hex.EncodeToString(h.Sum(nil))
}

// handsOutReads reports whether a segment exposes read tensors it also
// consumes (through Identities: graphs.ReadName). Such segments run on the
// CPU without ONNX Runtime's memory pattern: the pattern, one block per
// session and input shape planned from the first run, held every read
// tensor's source alive at once (55 MB for GPT-2 small's every point read
// at 1x128, ~0.08x its weights, on top of the arena's own blocks), and
// forwards without it ran within 2% of those with it (same-process A/B).
func handsOutReads(sg *graphs.Segment) bool {
	for i, f := range sg.Fetch {
		if i < len(sg.Outputs) && f != sg.Outputs[i] {
			return true
		}
	}
	return false
}

package modelctx

import (
	"context"
	"fmt"

	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/runtime"
)

// kvStepper runs sampling steps on a model with a KV cache (docs/behaviour.md §1.4): the
// first step runs the left-padded prompts with empty past tensors; each
// later step feeds one new token per row with the cache, the pad flags of
// every cached token plus the new one, and each row's real length so far
// (prev_lens), from which the graph continues the positions.
//
// The cache is the present_k/present_v tensors of the last step ([B,Tk,D]
// per layer, unscaled and unsplit as the original's KeyValueCache), kept
// where ONNX Runtime left them (in GPU memory on CUDA) and fed back as the
// next step's past_k/past_v without a copy. The input tensors and their
// buffers are reused from step to step.
type kvStepper struct {
	t      *Transformer
	B, T0  int
	tokens []int64 // prompt tokens [B,T0], then the fed tokens [B,1]
	pad0   []bool  // prompt pad flags [B,T0]
	pad    []bool  // pad flags of the cache and the new tokens, capacity B*(T0+n)
	prev   []int64 // real tokens in the cache per row (prev_lens)
	tk     int     // tokens in the cache, pads included
	in     map[string]*runtime.Tensor
	tokIn  *runtime.Tensor
	padIn  *runtime.Tensor
	prevIn *runtime.Tensor
	past   []*runtime.Tensor // first step: empty past K then V per KVCache entry
	cache  *runtime.Result   // the last step's kept present K/V
	vals   map[string]*runtime.Value
	outs   []string  // logits, then present K, V per KVCache entry
	keep   []string  // present K, V per KVCache entry
	last   []float32 // [B,V] when the step had T > 1
}

func newKVStepper(t *Transformer, rows [][]int, numTokens int) *kvStepper {
	batch := PadRows(rows, PadLeft)
	B, T0 := len(rows), len(batch.Tokens[0])
	s := &kvStepper{
		t: t, B: B, T0: T0,
		tokens: make([]int64, 0, B*T0),
		pad0:   make([]bool, 0, B*T0),
		pad:    make([]bool, 0, B*(T0+numTokens)),
		prev:   make([]int64, B),
		in:     map[string]*runtime.Tensor{},
	}
	for b := range batch.Tokens {
		for j, id := range batch.Tokens[b] {
			s.tokens = append(s.tokens, int64(id))
			s.pad0 = append(s.pad0, batch.Pad[b][j])
		}
	}
	io := t.man.Inputs
	s.tokIn = &runtime.Tensor{Shape: []int64{int64(B), int64(T0)}, I64: s.tokens}
	s.in[io.Tokens] = s.tokIn
	if io.Pad != "" {
		s.padIn = &runtime.Tensor{Shape: []int64{int64(B), int64(T0)}, Bool: s.pad0}
		s.in[io.Pad] = s.padIn
	}
	if io.PrevLens != "" {
		s.prevIn = &runtime.Tensor{Shape: []int64{int64(B), 1}, I64: s.prev}
		s.in[io.PrevLens] = s.prevIn
	}
	s.outs = []string{io.Logits}
	for _, kv := range t.man.KVCache {
		for _, name := range []string{kv.PastK, kv.PastV} {
			p := &runtime.Tensor{Shape: []int64{int64(B), 0, int64(kv.Width)}, F32: []float32{}}
			s.past = append(s.past, p)
			s.in[name] = p
		}
		s.outs = append(s.outs, kv.PresentK, kv.PresentV)
		s.keep = append(s.keep, kv.PresentK, kv.PresentV)
	}
	return s
}

func (s *kvStepper) close() {
	s.cache.Close()
	s.cache = nil
}

func (s *kvStepper) step(ctx context.Context, fed []int, hs []*hooks.Hooks) ([]float32, int, error) {
	B := s.B
	T := s.T0
	if fed != nil {
		// Feed one token per row; the cache holds s.tk tokens.
		T = 1
		s.tokens = s.tokens[:B]
		for b, id := range fed {
			s.tokens[b] = int64(id)
		}
		s.tokIn.Shape[1], s.tokIn.I64 = 1, s.tokens
		tk := s.tk + 1
		s.pad = s.pad[:B*tk]
		for b := 0; b < B; b++ {
			row := s.pad[b*tk : (b+1)*tk]
			copy(row, s.pad0[b*s.T0:(b+1)*s.T0])
			clear(row[s.T0:])
		}
		if s.padIn != nil {
			s.padIn.Shape[1], s.padIn.Bool = int64(tk), s.pad
		}
	}
	res, err := s.t.eng.RunKeep(ctx, runtime.Request{Inputs: s.in, Values: s.vals, Outputs: s.outs, Keep: s.keep, Hooks: s.t.snapshot(hs...)})
	if err != nil {
		return nil, 0, err
	}
	// This step's inputs are done with: the past becomes the new cache.
	s.cache.Close()
	s.cache = res
	if s.vals == nil {
		s.vals = map[string]*runtime.Value{}
		for _, kv := range s.t.man.KVCache {
			delete(s.in, kv.PastK)
			delete(s.in, kv.PastV)
		}
	}
	tk := s.tk + T
	for _, kv := range s.t.man.KVCache {
		for j, name := range []string{kv.PresentK, kv.PresentV} {
			p := res.Kept[name]
			sh := p.Shape()
			if p == nil || len(sh) != 3 || sh[0] != int64(B) || sh[1] != int64(tk) || sh[2] != int64(kv.Width) {
				return nil, 0, fmt.Errorf("kv cache %s: shape %v, want [%d %d %d]", name, sh, B, tk, kv.Width)
			}
			s.vals[[]string{kv.PastK, kv.PastV}[j]] = p
		}
	}
	// prev_lens counts the real tokens in the cache (pos[:,-1]+1 of the
	// original, for left-padded rows).
	for b := 0; b < B; b++ {
		if fed != nil {
			s.prev[b]++
			continue
		}
		for _, p := range s.pad0[b*s.T0 : (b+1)*s.T0] {
			if !p {
				s.prev[b]++
			}
		}
	}
	s.tk = tk
	return lastPositions(res.Tensors[s.t.man.Inputs.Logits], B, &s.last)
}

func shapeOf(t *runtime.Tensor) []int64 {
	if t == nil {
		return nil
	}
	return t.Shape
}

// lastPositions returns the logits of the last position of each row,
// [B*V]: the tensor's own data when T is 1, else a copy into *buf.
func lastPositions(lg *runtime.Tensor, B int, buf *[]float32) ([]float32, int, error) {
	if lg == nil || len(lg.Shape) != 3 || lg.Shape[0] != int64(B) || lg.Shape[1] < 1 || lg.F32 == nil {
		return nil, 0, fmt.Errorf("%w: logits of shape %v, want [%d T V]", ErrNotCausalLM, shapeOf(lg), B)
	}
	T, V := int(lg.Shape[1]), int(lg.Shape[2])
	if T == 1 {
		return lg.F32, V, nil
	}
	if cap(*buf) < B*V {
		*buf = make([]float32, B*V)
	}
	out := (*buf)[:B*V]
	for b := 0; b < B; b++ {
		copy(out[b*V:(b+1)*V], lg.F32[(b*T+T-1)*V:(b*T+T)*V])
	}
	return out, V, nil
}

// fullStepper samples without a cache: every step runs the whole
// left-padded sequence (prompts and the tokens fed back so far) and takes
// the last position's logits.
type fullStepper struct {
	t    *Transformer
	rows [][]int
	last []float32
}

func (s *fullStepper) close() {}

func (s *fullStepper) step(ctx context.Context, fed []int, hs []*hooks.Hooks) ([]float32, int, error) {
	for b, id := range fed {
		s.rows[b] = append(s.rows[b], id)
	}
	out, err := s.t.Forward(ctx, s.rows, WithPad(PadLeft), WithHooks(hs...))
	if err != nil {
		return nil, 0, err
	}
	lg := out.Logits
	if len(lg.Shape) != 3 {
		return nil, 0, fmt.Errorf("%w: logits of shape %v, want [B T V]", ErrNotCausalLM, lg.Shape)
	}
	return lastPositions(&runtime.Tensor{Shape: []int64{int64(lg.Shape[0]), int64(lg.Shape[1]), int64(lg.Shape[2])}, F32: lg.Data}, len(s.rows), &s.last)
}

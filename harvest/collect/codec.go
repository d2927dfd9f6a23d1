package collect

import (
	"encoding/binary"
	"fmt"
	"math"
)

const partialMagic = "OTDB-HARVEST-PARTIAL-1\n"

// limits on what a decoded partial may claim, before it is checked
// against its own length.
const (
	maxUnits   = 1 << 24
	maxContext = 1 << 20
	maxK       = 1 << 20
)

// Partial is the state of every site of a job over one shard of examples
// [First, First+Count), for one pass.
type Partial struct {
	Pass  int
	First int64
	Count int
	Sites []*Site
}

// Merge adds o's sites into p's, site by site (same order, same sites).
func (p *Partial) Merge(o *Partial) error {
	if p.Pass != o.Pass || len(p.Sites) != len(o.Sites) {
		return fmt.Errorf("%w: pass %d with %d sites and pass %d with %d sites", ErrMismatch, p.Pass, len(p.Sites), o.Pass, len(o.Sites))
	}
	for i := range p.Sites {
		if err := p.Sites[i].Merge(o.Sites[i]); err != nil {
			return err
		}
	}
	return nil
}

// encodedSize bounds the length of p's encoding, so Encode allocates once.
func (p *Partial) encodedSize() int {
	n := len(partialMagic) + 32
	for _, s := range p.Sites {
		n += len(s.ID.Point) + 128 + 4*len(s.bounds) + 4*len(s.maxima)
		sets := func(ss []*set) {
			for _, x := range ss {
				n += binary.MaxVarintLen64 + len(x.items)*(binary.MaxVarintLen64+12+4*x.t)
			}
		}
		sets(s.top)
		sets(s.random)
		sets(s.buckets)
		n += s.Units * (8 + 4*(3+exactLimbs*binary.MaxVarintLen64))
	}
	return n
}

// Encode writes p in a compact binary form that Decode reads back.
func (p *Partial) Encode() []byte {
	b := make([]byte, 0, p.encodedSize())
	b = append(b, partialMagic...)
	b = append(b, byte(p.Pass))
	b = binary.AppendVarint(b, p.First)
	b = binary.AppendUvarint(b, uint64(p.Count))
	b = binary.AppendUvarint(b, uint64(len(p.Sites)))
	for _, s := range p.Sites {
		b = s.encode(b)
	}
	return b
}

func (s *Site) encode(b []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(s.ID.Point)))
	b = append(b, s.ID.Point...)
	for _, v := range []int{s.ID.Layer, s.Units, s.P.Context, s.P.Top, s.P.Random, s.P.Quantiles, s.P.PerQuantile, s.Count} {
		b = binary.AppendUvarint(b, uint64(v))
	}
	b = binary.LittleEndian.AppendUint64(b, s.P.Seed)
	b = binary.AppendVarint(b, s.First)
	b = binary.AppendUvarint(b, uint64(s.n))
	if s.Pass == 2 {
		b = appendF32s(b, s.bounds)
		for _, bs := range s.buckets {
			b = bs.encode(b)
		}
		return b
	}
	for u := 0; u < s.Units; u++ {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(s.lo[u]))
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(s.hi[u]))
		for k := range s.sums {
			b = s.sums[k][u].encode(b)
		}
		b = s.top[u].encode(b)
		b = s.random[u].encode(b)
	}
	if s.maxima != nil {
		b = appendF32s(b, s.maxima)
	}
	return b
}

func (e *Exact) encode(b []byte) []byte {
	c := *e
	c.Normalize()
	lo, hi := 0, exactLimbs
	for lo < hi && c.limbs[lo] == 0 {
		lo++
	}
	for hi > lo && c.limbs[hi-1] == 0 {
		hi--
	}
	flag := byte(0)
	if c.nan {
		flag = 1
	}
	b = append(b, flag)
	b = binary.AppendUvarint(b, uint64(lo))
	b = binary.AppendUvarint(b, uint64(hi-lo))
	for _, v := range c.limbs[lo:hi] {
		b = binary.AppendVarint(b, v)
	}
	return b
}

func (s *set) encode(b []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(s.items)))
	for _, c := range s.sorted() {
		b = binary.AppendVarint(b, c.ex)
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(c.max))
		b = binary.LittleEndian.AppendUint64(b, c.key)
		b = appendF32s(b, s.actsOf(c))
	}
	return b
}

func appendF32s(b []byte, v []float32) []byte {
	n := len(b)
	b = append(b, make([]byte, 4*len(v))...)
	out := b[n:]
	for i, x := range v {
		binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(x))
	}
	return b
}

// reader decodes, remembering the first error.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s", ErrBadPartial, fmt.Sprintf(format, args...))
	}
}

func (r *reader) uvarint(what string, limit uint64) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail("%s: truncated", what)
		return 0
	}
	if v > limit {
		r.fail("%s: %d exceeds %d", what, v, limit)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint(what string) int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail("%s: truncated", what)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) bytes(what string, n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b) {
		r.fail("%s: truncated", what)
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) u32(what string) uint32 {
	if b := r.bytes(what, 4); b != nil {
		return binary.LittleEndian.Uint32(b)
	}
	return 0
}

func (r *reader) u64(what string) uint64 {
	if b := r.bytes(what, 8); b != nil {
		return binary.LittleEndian.Uint64(b)
	}
	return 0
}

func (r *reader) f32s(what string, dst []float32) {
	b := r.bytes(what, 4*len(dst))
	if b == nil {
		return
	}
	for i := range dst {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
}

// Decode reads a partial written by Encode. Corrupt or truncated input
// gives an error wrapping ErrBadPartial, never a panic, and allocates no
// more than its length justifies.
func Decode(data []byte) (*Partial, error) {
	r := &reader{b: data}
	if string(r.bytes("magic", len(partialMagic))) != partialMagic {
		r.fail("not a harvest partial")
		return nil, r.err
	}
	p := &Partial{}
	p.Pass = int(r.uvarint("pass", 2)) // one byte, read as a varint below 128
	p.First = r.varint("first")
	p.Count = int(r.uvarint("count", math.MaxInt32))
	n := int(r.uvarint("sites", uint64(len(r.b))))
	for i := 0; i < n && r.err == nil; i++ {
		s := r.site(p.Pass)
		if r.err == nil {
			p.Sites = append(p.Sites, s)
		}
	}
	if r.err == nil && len(r.b) != 0 {
		r.fail("%d trailing bytes", len(r.b))
	}
	if r.err != nil {
		return nil, r.err
	}
	return p, nil
}

func (r *reader) site(pass int) *Site {
	point := string(r.bytes("point", int(r.uvarint("point length", 256))))
	layer := int(r.uvarint("layer", 1<<20))
	units := int(r.uvarint("units", maxUnits))
	var p Params
	p.Context = int(r.uvarint("context", maxContext))
	p.Top = int(r.uvarint("top", maxK))
	p.Random = int(r.uvarint("random", maxK))
	p.Quantiles = int(r.uvarint("quantiles", 1<<16))
	p.PerQuantile = int(r.uvarint("per-quantile", maxK))
	count := int(r.uvarint("site count", math.MaxInt32))
	p.Seed = r.u64("seed")
	first := r.varint("site first")
	n := int64(r.uvarint("values", math.MaxInt64))
	if r.err != nil {
		return nil
	}
	// Every unit costs at least 8 bytes in either pass: refuse counts the
	// input cannot hold before allocating for them.
	perUnit := 8
	if pass == 2 {
		perUnit = 4*max(p.Quantiles-1, 0) + max(p.Quantiles, 1)
	} else if p.Quantiles > 0 {
		perUnit += 4 * count
	}
	if units*perUnit > len(r.b) || units*perUnit < 0 {
		r.fail("site %s@%d: %d units do not fit in %d bytes", point, layer, units, len(r.b))
		return nil
	}
	var bounds []float32
	if pass == 2 {
		if p.Quantiles <= 0 {
			r.fail("pass 2 without quantiles")
			return nil
		}
		bounds = make([]float32, units*(p.Quantiles-1))
		r.f32s("bounds", bounds)
	}
	s, err := NewSite(SiteID{Point: point, Layer: layer}, units, p, pass, first, count, bounds)
	if err != nil {
		r.fail("%v", err)
		return nil
	}
	s.n = n
	if pass == 2 {
		for _, bs := range s.buckets {
			r.set(bs)
		}
		return s
	}
	for u := 0; u < units && r.err == nil; u++ {
		s.lo[u] = math.Float32frombits(r.u32("lo"))
		s.hi[u] = math.Float32frombits(r.u32("hi"))
		for k := range s.sums {
			r.exact(&s.sums[k][u])
		}
		r.set(s.top[u])
		r.set(s.random[u])
	}
	if s.maxima != nil {
		r.f32s("maxima", s.maxima)
	}
	return s
}

func (r *reader) exact(e *Exact) {
	flag := r.bytes("exact flag", 1)
	lo := int(r.uvarint("exact lo", exactLimbs))
	n := int(r.uvarint("exact limbs", uint64(exactLimbs-lo)))
	if r.err != nil {
		return
	}
	if flag[0] > 1 {
		r.fail("exact flag %d", flag[0])
		return
	}
	e.nan = flag[0] == 1
	for i := 0; i < n && r.err == nil; i++ {
		v := r.varint("limb")
		if lo+i < exactLimbs-1 && (v < 0 || v >= 1<<32) || v < -(1<<40) || v > 1<<40 {
			r.fail("limb %d out of range", lo+i)
			return
		}
		e.limbs[lo+i] = v
	}
}

func (r *reader) set(s *set) {
	n := int(r.uvarint("candidates", uint64(s.k)))
	if r.err != nil || n*(12+4*s.t) > len(r.b) {
		r.fail("%d candidates do not fit", n)
		return
	}
	buf := make([]float32, s.t)
	for i := 0; i < n && r.err == nil; i++ {
		c := cand{ex: r.varint("example")}
		c.max = math.Float32frombits(r.u32("max"))
		c.key = r.u64("key")
		r.f32s("activations", buf)
		s.offer(c, buf, 0, 1)
	}
}

package collect

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"unsafe"
)

const partialMagic = "OTDB-HARVEST-PARTIAL-2\n"

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
		sets := func(ss []set) {
			for i := range ss {
				n += binary.MaxVarintLen64 + len(ss[i].items)*(binary.MaxVarintLen64+12+4*ss[i].t)
			}
		}
		sets(s.top)
		sets(s.random)
		sets(s.buckets)
		n += s.Units * (8 + 4*(3+exactLimbs*binary.MaxVarintLen64))
		if s.sk != nil {
			for _, b := range s.sk.blocks {
				n += 3*binary.MaxVarintLen64 + 4*s.Units*b.stored(s.sk.leaf)
			}
		}
	}
	return n
}

// Encode returns p in the compact binary form that Decode reads back (as
// WriteTo writes it).
func (p *Partial) Encode() []byte {
	var buf bytes.Buffer
	buf.Grow(p.encodedSize())
	p.WriteTo(&buf) // a bytes.Buffer takes every write
	return buf.Bytes()
}

// WriteTo writes p's encoding to w in pieces of a few hundred KiB, so a
// large state (GPT-2 small's every MLP neuron with top and random 20 is
// ~380 MiB) streams to its store without a second copy in memory. It
// orders each kept set in place (it stays a valid set).
func (p *Partial) WriteTo(w io.Writer) (int64, error) {
	e := &encoder{w: w, b: make([]byte, 0, encoderChunk+encoderChunk/2)}
	e.b = append(e.b, partialMagic...)
	e.b = append(e.b, byte(p.Pass))
	e.b = binary.AppendVarint(e.b, p.First)
	e.b = binary.AppendUvarint(e.b, uint64(p.Count))
	e.b = binary.AppendUvarint(e.b, uint64(len(p.Sites)))
	for _, s := range p.Sites {
		s.encode(e)
	}
	e.flush()
	return e.n, e.err
}

// encoderChunk is the size at which an encoder hands its bytes to the writer.
const encoderChunk = 256 << 10

// encoder appends to b and writes b out whenever it passes encoderChunk,
// remembering the first write error (later writes are skipped).
type encoder struct {
	w   io.Writer
	b   []byte
	n   int64
	err error
}

func (e *encoder) flush() {
	if e.err == nil && len(e.b) > 0 {
		var n int
		n, e.err = e.w.Write(e.b)
		e.n += int64(n)
	}
	e.b = e.b[:0]
}

func (e *encoder) maybeFlush() {
	if len(e.b) >= encoderChunk {
		e.flush()
	}
}

// littleEndian says whether this machine stores a float32 as its
// encoding does, so f32s can copy memory as it is.
var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// f32s appends v (little-endian), flushing on the way for long slices.
func (e *encoder) f32s(v []float32) {
	for len(v) > 0 {
		n := min(len(v), encoderChunk/4)
		if littleEndian {
			e.b = append(e.b, unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), 4*n)...)
		} else {
			for _, x := range v[:n] {
				e.b = binary.LittleEndian.AppendUint32(e.b, math.Float32bits(x))
			}
		}
		v = v[n:]
		e.maybeFlush()
	}
}

func (s *Site) encode(e *encoder) {
	e.b = binary.AppendUvarint(e.b, uint64(len(s.ID.Point)))
	e.b = append(e.b, s.ID.Point...)
	for _, v := range []int{s.ID.Layer, s.Units, s.P.Context, s.P.Top, s.P.Random, s.P.Quantiles, s.P.PerQuantile, s.P.SketchLeaf, s.Count} {
		e.b = binary.AppendUvarint(e.b, uint64(v))
	}
	e.b = binary.LittleEndian.AppendUint64(e.b, s.P.Seed)
	e.b = binary.AppendVarint(e.b, s.First)
	e.b = binary.AppendUvarint(e.b, uint64(s.n))
	if s.Pass == 2 {
		e.f32s(s.bounds)
		for i := range s.buckets {
			s.buckets[i].encode(e)
		}
		return
	}
	for u := 0; u < s.Units; u++ {
		e.b = binary.LittleEndian.AppendUint32(e.b, math.Float32bits(s.lo[u]))
		e.b = binary.LittleEndian.AppendUint32(e.b, math.Float32bits(s.hi[u]))
		for k := range s.sums {
			e.b = s.sums[k][u].encode(e.b)
		}
		s.top[u].encode(e)
		s.random[u].encode(e)
	}
	if s.maxima != nil {
		e.f32s(s.maxima)
	}
	if s.sk != nil {
		keys := s.sk.keys()
		e.b = binary.AppendUvarint(e.b, uint64(len(keys)))
		for _, key := range keys {
			b := s.sk.blocks[key]
			e.b = binary.AppendUvarint(e.b, uint64(b.level))
			e.b = binary.AppendVarint(e.b, b.index)
			e.b = binary.AppendUvarint(e.b, uint64(b.count))
			for u := 0; u < s.Units; u++ {
				e.f32s(b.unit(u, s.sk.leaf))
			}
		}
	}
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

// encode writes the kept candidates best first.
func (s *set) encode(e *encoder) {
	e.b = binary.AppendUvarint(e.b, uint64(len(s.items)))
	s.sortWorstFirst()
	for i := len(s.items) - 1; i >= 0; i-- {
		c := &s.items[i]
		e.b = binary.AppendVarint(e.b, c.ex)
		e.b = binary.LittleEndian.AppendUint32(e.b, math.Float32bits(c.max))
		e.b = binary.LittleEndian.AppendUint64(e.b, c.key)
		e.f32s(s.actsOf(*c))
	}
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
	p.SketchLeaf = int(r.uvarint("sketch leaf", maxK))
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
	} else if p.Quantiles > 0 && p.SketchLeaf == 0 {
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
	s, err := newSite(SiteID{Point: point, Layer: layer}, units, p, pass, first, count, bounds, false)
	if err != nil {
		r.fail("%v", err)
		return nil
	}
	s.n = n
	if pass == 2 {
		for i := range s.buckets {
			r.set(&s.buckets[i])
		}
		return s
	}
	for u := 0; u < units && r.err == nil; u++ {
		s.lo[u] = math.Float32frombits(r.u32("lo"))
		s.hi[u] = math.Float32frombits(r.u32("hi"))
		for k := range s.sums {
			r.exact(&s.sums[k][u])
		}
		r.set(&s.top[u])
		r.set(&s.random[u])
	}
	if s.maxima != nil {
		r.f32s("maxima", s.maxima)
	}
	if s.sk != nil {
		r.sketch(s.sk)
	}
	return s
}

// sketch reads a site's sketch blocks: each a full aligned block or a
// partial leaf, at most once.
func (r *reader) sketch(k *sketch) {
	n := int(r.uvarint("sketch blocks", uint64(len(r.b))))
	for i := 0; i < n && r.err == nil; i++ {
		level := int(r.uvarint("sketch level", 62))
		index := r.varint("sketch block")
		count := int(r.uvarint("sketch count", math.MaxInt32))
		if r.err != nil {
			return
		}
		full := int64(k.leaf) << level
		if index < 0 || count <= 0 || int64(count) > full || (level > 0 && int64(count) != full) {
			r.fail("sketch block %d of level %d: %d examples", index, level, count)
			return
		}
		if _, dup := k.blocks[blockKey{level, index}]; dup {
			r.fail("sketch block %d of level %d twice", index, level)
			return
		}
		stored := min(count, k.leaf)
		if k.units*stored > len(r.b)/4 {
			r.fail("sketch block %d of level %d: truncated", index, level)
			return
		}
		b := &block{level: level, index: index, count: count, stride: stored, vals: make([]float32, k.units*stored)}
		r.f32s("sketch values", b.vals)
		k.blocks[blockKey{level, index}] = b
	}
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

package torchpt

// Bounds on what a pickle may make the unpickler hold at once. Real torch.save
// pickles stay in the hundreds for both; the bounds keep a hostile pickle's
// stack and memo to a few tens of megabytes.
const (
	maxPickleStack = 1 << 20 // stack items and marks, together
	maxPickleMemo  = 1 << 20 // PUT and MEMOIZE opcodes
)

// stackDepth follows the unpickler's stack through the opcodes of one pickle
// without running it: the stack effect of every opcode is fixed (see Python's
// pickletools). Items since the last MARK are in depth, the depths saved by
// MARKs in marks.
type stackDepth struct {
	depth int
	total int
	marks []int
	memo  int
}

// pickleOps maps opcodes to their fixed effect on the items since the last
// MARK: >0 pushes, <0 pops. Opcodes missing here act on marks (below).
var pickleOps = func() [256]int8 {
	var t [256]int8
	for _, op := range "NIJKMLFGSTUBCVXcgjhP}])2" {
		t[op] = 1
	}
	for _, op := range []byte{0x88, 0x89, 0x8a, 0x8b, 0x8c, 0x8d, 0x8e, 0x96, 0x8f, 0x97, 0x82, 0x83, 0x84} {
		t[op] = 1
	}
	for _, op := range "0aRb" {
		t[op] = -1
	}
	for _, op := range []byte{0x86, 0x93, 0x81} {
		t[op] = -1
	}
	t['s'], t[0x87], t[0x92] = -2, -2, -2
	return t
}()

func (s *stackDepth) step(op byte) error {
	switch op {
	case 'p', 'q', 'r', 0x94: // PUT, BINPUT, LONG_BINPUT, MEMOIZE
		s.memo++
		if s.memo > maxPickleMemo {
			return unsupportedf("pickle stores more than %d memo entries", maxPickleMemo)
		}
		if s.depth < 1 {
			return corruptf("pickle memoizes from an empty stack")
		}
		return nil
	case 'Q', 0x85, 0x98: // BINPERSID, TUPLE1, READONLY_BUFFER: one in, one out
		return s.need(1)
	case '(': // MARK
		s.marks = append(s.marks, s.depth)
		s.depth = 0
		return s.bound()
	case 't', 'l', 'd', 'o', 'i', 0x91: // build one object from the items since MARK
		if err := s.popMark(); err != nil {
			return err
		}
		s.depth++
		s.total++
		return nil
	case '1', 'e', 'u', 0x90: // POP_MARK, APPENDS, SETITEMS, ADDITEMS
		return s.popMark()
	case '.':
		return s.need(1)
	}
	switch d := int(pickleOps[op]); {
	case d > 0:
		s.depth += d
		s.total += d
		return s.bound()
	case d < 0:
		need := 1 - d // the items consumed; one result is pushed back
		if op == '0' {
			// POP pushes nothing back; from an empty frame it pops the MARK,
			// as Python's does.
			if s.depth == 0 && len(s.marks) > 0 {
				return s.popMark()
			}
			need = 1
		}
		if err := s.need(need); err != nil {
			return err
		}
		s.depth += d
		s.total += d
	}
	return nil
}

func (s *stackDepth) need(n int) error {
	if s.depth < n {
		return corruptf("pickle stack underflow")
	}
	return nil
}

func (s *stackDepth) popMark() error {
	if len(s.marks) == 0 {
		return corruptf("pickle has no MARK to pop to")
	}
	s.total -= s.depth
	s.depth = s.marks[len(s.marks)-1]
	s.marks = s.marks[:len(s.marks)-1]
	return nil
}

func (s *stackDepth) bound() error {
	if s.total+len(s.marks) > maxPickleStack {
		return unsupportedf("pickle stack deeper than %d items", maxPickleStack)
	}
	return nil
}

package tokenizer

import (
	"strings"
	"unicode/utf8"
)

// ReplaceInvalidUTF8 decodes b as Python's b.decode("utf-8", "replace")
// does: every maximal subpart of an ill-formed sequence (Unicode §3.9,
// "U+FFFD substitution of maximal subparts") becomes one U+FFFD. Go's
// strings.ToValidUTF8 differs: it folds a whole run of bad bytes into one.
func ReplaceInvalidUTF8(b string) string {
	if utf8.ValidString(b) {
		return b
	}
	var sb strings.Builder
	sb.Grow(len(b) + 2*utf8.UTFMax)
	for len(b) > 0 {
		r, n := utf8.DecodeRuneInString(b)
		if r == utf8.RuneError && n == 1 {
			n = maximalSubpart(b)
			sb.WriteRune(utf8.RuneError)
		} else {
			sb.WriteString(b[:n])
		}
		b = b[n:]
	}
	return sb.String()
}

// maximalSubpart is the length of the ill-formed prefix of b that one U+FFFD
// replaces: the lead byte plus the continuation bytes that fit Table 3-7 of
// the Unicode standard, stopping at the first that does not. b must not
// start with a well-formed sequence.
func maximalSubpart(b string) int {
	lo, hi := byte(0x80), byte(0xBF)
	var need int
	switch c := b[0]; {
	case c >= 0xC2 && c <= 0xDF:
		need = 1
	case c == 0xE0:
		need, lo = 2, 0xA0
	case c == 0xED:
		need, hi = 2, 0x9F
	case c >= 0xE1 && c <= 0xEF:
		need = 2
	case c == 0xF0:
		need, lo = 3, 0x90
	case c == 0xF4:
		need, hi = 3, 0x8F
	case c >= 0xF1 && c <= 0xF3:
		need = 3
	default:
		return 1
	}
	n := 1
	for n <= need && n < len(b) && b[n] >= lo && b[n] <= hi {
		lo, hi = 0x80, 0xBF
		n++
	}
	return n
}

package hfbpe

import "strings"

// The byte-level alphabet: every byte is a printable rune, the printable
// ASCII and Latin-1 bytes themselves and the others 256 upwards in order
// (so a space is 'Ġ', U+0120, and a newline 'Ċ').
var byteRune, runeByte = func() ([256]rune, map[rune]byte) {
	var br [256]rune
	rb := map[rune]byte{}
	n := 0
	for b := 0; b < 256; b++ {
		if b >= '!' && b <= '~' || b >= 0xA1 && b <= 0xAC || b >= 0xAE {
			br[b] = rune(b)
		} else {
			br[b] = rune(256 + n)
			n++
		}
		rb[br[b]] = byte(b)
	}
	return br, rb
}()

// toByteLevel maps each byte of s to its rune.
func toByteLevel(s string) string {
	var b strings.Builder
	b.Grow(2 * len(s))
	for i := 0; i < len(s); i++ {
		b.WriteRune(byteRune[s[i]])
	}
	return b.String()
}

// fromByteLevel maps a vocab token back to bytes; a rune outside the
// alphabet stands for its own UTF-8 bytes.
func fromByteLevel(tok string) []byte {
	out := make([]byte, 0, len(tok))
	for _, r := range tok {
		if b, ok := runeByte[r]; ok {
			out = append(out, b)
		} else {
			out = append(out, string(r)...)
		}
	}
	return out
}

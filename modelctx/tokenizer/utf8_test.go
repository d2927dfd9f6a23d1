package tokenizer

import "testing"

func TestReplaceInvalidUTF8SubstitutesMaximalSubparts(t *testing.T) {
	// Expected values are Python's bytes.decode("utf-8", "replace").
	for in, want := range map[string]string{
		"abc":               "abc",
		"\xff":              "\uFFFD",
		"\x80\x80":          "\uFFFD\uFFFD",
		"\xf0\x9f\xa4":      "\uFFFD",
		"\xf0\x9f\xa4a":     "\uFFFDa",
		"\xe0\x80":          "\uFFFD\uFFFD", // E0 needs A0..BF next
		"\xed\xa0\x80":      "\uFFFD\uFFFD\uFFFD",
		"\xf4\x90\x80\x80":  "\uFFFD\uFFFD\uFFFD\uFFFD",
		"\xc0\xaf":          "\uFFFD\uFFFD",
		"\xe2\x82":          "\uFFFD",
		"\xe2\x82\xac":      "€",
		"\uFFFD":            "\uFFFD",
		"a\xf1\x80\x80\xf1": "a\uFFFD\uFFFD",
	} {
		if got := ReplaceInvalidUTF8(in); got != want {
			t.Errorf("ReplaceInvalidUTF8(%q) = %q, want %q", in, got, want)
		}
	}
}

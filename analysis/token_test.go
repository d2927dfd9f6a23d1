package analysis

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/onnx-tdb/onnx-tdb/export/arch/gpt2/bpe"
)

func gpt2Encode(t testing.TB) func(string) ([]int, error) {
	tok, err := bpe.GPT2()
	if err != nil {
		t.Fatal(err)
	}
	return tok.EncodeOrdinary
}

func TestParseToken(t *testing.T) {
	enc := gpt2Encode(t)
	for _, c := range []struct {
		spec string
		want int
		err  bool
	}{
		{" Mary", 5335, false},
		{" John", 1757, false},
		{"#5335", 5335, false},
		{"#0", 0, false},
		{"Mary and John", 0, true}, // several tokens
		{"", 0, true},
		{"#", 0, true}, // text "#" is one token: accepted below
		{"#-1", 0, true},
		{"#01", 0, true},
		{"#50257", 0, true}, // out of the vocabulary
		{"#12x", 0, true},
		{"<|endoftext|>", 0, true}, // special tokens are not text
	} {
		got, err := ParseToken(c.spec, 50257, enc)
		if c.spec == "#" {
			if err != nil {
				t.Errorf("%q: %v", c.spec, err)
			}
			continue
		}
		if (err != nil) != c.err || (!c.err && got != c.want) {
			t.Errorf("ParseToken(%q) = %d, %v; want %d, error %v", c.spec, got, err, c.want, c.err)
		}
		if err != nil && !errors.Is(err, ErrToken) {
			t.Errorf("ParseToken(%q): %v is not ErrToken", c.spec, err)
		}
	}
	if _, err := ParseToken(" Mary", 0, nil); !errors.Is(err, ErrToken) {
		t.Errorf("no tokenizer: %v", err)
	}
}

func FuzzParseToken(f *testing.F) {
	for _, s := range []string{" Mary", "#5335", "#", "", "Mary and", "#99999999999999999999", "\xff", "#+1"} {
		f.Add(s)
	}
	enc := gpt2Encode(f)
	f.Fuzz(func(t *testing.T, spec string) {
		id, err := ParseToken(spec, 50257, enc)
		if err != nil {
			if !errors.Is(err, ErrToken) {
				t.Fatalf("%q: error %v is not ErrToken", spec, err)
			}
			return
		}
		if id < 0 || id >= 50257 {
			t.Fatalf("%q: id %d out of range", spec, id)
		}
		if !strings.HasPrefix(spec, "#") && utf8.ValidString(spec) {
			if ids, _ := enc(spec); len(ids) != 1 || ids[0] != id {
				t.Fatalf("%q: id %d, encoding gives %v", spec, id, ids)
			}
		}
	})
}

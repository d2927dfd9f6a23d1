package hfbpe

import (
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/onnx-tdb/onnx-tdb/modelctx/tokenizer"
)

// smallJSON is a tokenizer.json with every byte, a few merges, the
// split-then-ByteLevel layout (ignore_merges) and two special tokens.
func smallJSON(t testing.TB) []byte {
	t.Helper()
	vocab := map[string]int{}
	for b := 0; b < 256; b++ {
		vocab[string(byteRune[b])] = b
	}
	merges := []string{"h e", "l l", "he ll", "hell o", "Ġ hello", "Ġ t", "Ġt he"}
	for i, m := range merges {
		vocab[strings.ReplaceAll(m, " ", "")] = 256 + i
	}
	js, err := json.Marshal(map[string]any{
		"added_tokens": []any{
			map[string]any{"id": 300, "content": "<|begin_of_text|>", "special": true},
			map[string]any{"id": 301, "content": "<|end_of_text|>", "special": true},
		},
		"normalizer": nil,
		"pre_tokenizer": map[string]any{"type": "Sequence", "pretokenizers": []any{
			map[string]any{"type": "Split", "pattern": map[string]any{"Regex": cl100kPattern}, "behavior": "Isolated", "invert": false},
			map[string]any{"type": "ByteLevel", "add_prefix_space": false, "use_regex": false},
		}},
		"model": map[string]any{"type": "BPE", "vocab": vocab, "merges": merges, "ignore_merges": true},
	})
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func TestSmallTokenizer(t *testing.T) {
	tok, err := Parse(smallJSON(t))
	if err != nil {
		t.Fatal(err)
	}
	if tok.NVocab() != 302 || tok.EOT() != 301 || tok.Name() != Name {
		t.Errorf("NVocab %d EOT %d Name %q", tok.NVocab(), tok.EOT(), tok.Name())
	}
	cases := []struct {
		text string
		want []int
	}{
		{"hello the", []int{259, 262}},
		{"<|begin_of_text|>hello<|end_of_text|>", []int{300, 259, 301}},
		{" hello", []int{260}},
		{"hi", []int{'h', 'i'}},
	}
	for _, c := range cases {
		if got := tok.Encode(c.text); !equal(got, c.want) {
			t.Errorf("Encode(%q) = %v, want %v", c.text, got, c.want)
		}
	}
	if _, err := tok.EncodeOrdinary("a <|end_of_text|>"); !errors.Is(err, tokenizer.ErrDisallowedSpecial) {
		t.Errorf("EncodeOrdinary with a special token: %v", err)
	}
	if id, err := tok.EncodeSingleToken(" hello"); err != nil || id != 260 {
		t.Errorf("EncodeSingleToken(\" hello\") = %d, %v", id, err)
	}
	if _, err := tok.EncodeSingleToken("hello there"); !errors.Is(err, tokenizer.ErrInvalidToken) {
		t.Errorf("EncodeSingleToken of two tokens: %v", err)
	}
	if s, err := tok.DecodeToken(0xC3); err != nil || s != "\uFFFD" {
		t.Errorf("DecodeToken of half a character: %q, %v", s, err)
	}
	for _, bad := range [][]int{{-1}, {302}, {270}} {
		if _, err := tok.Decode(bad); !errors.Is(err, tokenizer.ErrTokenOutOfRange) {
			t.Errorf("Decode(%v): %v", bad, err)
		}
	}
}

// TestAddPrefixSpace: ByteLevel's add_prefix_space puts a space before
// each piece that lacks one (here: each text between added tokens).
func TestAddPrefixSpace(t *testing.T) {
	js := strings.Replace(string(smallJSON(t)), `"add_prefix_space":false`, `"add_prefix_space":true`, 1)
	tok, err := Parse([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	if got := tok.Encode("hello<|end_of_text|>hello"); !equal(got, []int{260, 301, 260}) {
		t.Errorf("Encode = %v, want [260 301 260]", got)
	}
}

func TestParseRefuses(t *testing.T) {
	base := string(smallJSON(t))
	cases := []struct {
		name, from, to string
		want           error
	}{
		{"not BPE", `"type":"BPE"`, `"type":"WordPiece"`, ErrUnsupported},
		{"normalizer", `"normalizer":null`, `"normalizer":{"type":"NFC"}`, ErrUnsupported},
		{"no ByteLevel", `{"add_prefix_space":false,"type":"ByteLevel","use_regex":false}`, `{"type":"Whitespace"}`, ErrUnsupported},
		{"bad regex", `"Regex":"(?i:`, `"Regex":"((?i:`, ErrFormat},
		{"merged behaviour", `"behavior":"Isolated"`, `"behavior":"MergedWithPrevious"`, ErrUnsupported},
		{"negative id", `"id":300`, `"id":-5`, ErrFormat},
		{"huge id", `"id":300`, `"id":99999999`, ErrFormat},
		{"three-part merge", `"h e"`, `"h e x"`, ErrFormat},
		{"merges of another type", `"merges":[`, `"merges":{"a":1},"x":[`, ErrFormat},
		{"truncated", `}`, ``, ErrFormat},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			js := strings.Replace(base, c.from, c.to, 1)
			if js == base {
				t.Fatalf("%q not found in the base file", c.from)
			}
			if _, err := Parse([]byte(js)); !errors.Is(err, c.want) {
				t.Errorf("error %v, want %v", err, c.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add(smallJSON(f), "hello <|end_of_text|> wörld 123")
	f.Add([]byte(`{"model":{"type":"BPE","vocab":{"a":0},"merges":[["a","a"]]},"pre_tokenizer":{"type":"ByteLevel"}}`), "aaa")
	f.Add([]byte(`{"model":{"type":"BPE","vocab":{"a":4000000}}}`), "")
	f.Fuzz(func(t *testing.T, b []byte, text string) {
		tok, err := Parse(b)
		if err != nil {
			if !errors.Is(err, ErrFormat) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("error %v is neither ErrFormat nor ErrUnsupported", err)
			}
			return
		}
		ids := tok.Encode(text)
		for _, id := range ids {
			if id < 0 || id >= tok.NVocab() {
				t.Fatalf("Encode gave id %d outside [0,%d)", id, tok.NVocab())
			}
		}
		if _, err := tok.Decode(ids); err != nil {
			t.Fatalf("Decode(Encode(%q)): %v", text, err)
		}
	})
}

// FuzzDecode decodes arbitrary ids: an id the tokenizer has decodes, any
// other is ErrTokenOutOfRange; text round-trips through Encode and Decode.
func FuzzDecode(f *testing.F) {
	tok, err := Parse(smallJSON(f))
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte{0, 1, 255, 44}, "héllo the <|end_of_text|>")
	f.Add([]byte{0x2c, 0x01, 0x2d, 0x01, 0xff, 0x7f}, "")
	f.Fuzz(func(t *testing.T, raw []byte, text string) {
		var ids []int
		for i := 0; i+1 < len(raw); i += 2 {
			ids = append(ids, int(int16(uint16(raw[i])|uint16(raw[i+1])<<8)))
		}
		s, err := tok.Decode(ids)
		if err != nil {
			if !errors.Is(err, tokenizer.ErrTokenOutOfRange) {
				t.Fatalf("Decode(%v): %v", ids, err)
			}
		} else if !utf8.ValidString(s) {
			t.Fatalf("Decode(%v) = %q is not valid UTF-8", ids, s)
		}
		want := tokenizer.ReplaceInvalidUTF8(text)
		if back, err := tok.Decode(tok.Encode(text)); err != nil || back != want {
			t.Fatalf("Decode(Encode(%q)) = %q, %v", text, back, err)
		}
	})
}

// TestConcurrentEncode encodes from several goroutines at once (the
// pre-token cache is shared); run with -race.
func TestConcurrentEncode(t *testing.T) {
	tok, err := Parse(smallJSON(t))
	if err != nil {
		t.Fatal(err)
	}
	want := tok.Encode("hello the hello world 123")
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				tok.Encode(strings.Repeat("x", g+i%7) + " fresh words")
				if got := tok.Encode("hello the hello world 123"); !equal(got, want) {
					errs <- "concurrent Encode differs"
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}

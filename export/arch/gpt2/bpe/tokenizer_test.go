package bpe

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/onnx-tdb/onnx-tdb/internal/golden"
)

func gpt2(t testing.TB) *Tokenizer {
	t.Helper()
	tok, err := GPT2()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestGPT2ReportsTiktokenGPT2Encoding(t *testing.T) {
	tok := gpt2(t)
	if tok.Name() != "gpt2" || tok.NVocab() != 50257 || tok.EOT() != 50256 {
		t.Fatalf("got name %q, n_vocab %d, eot %d", tok.Name(), tok.NVocab(), tok.EOT())
	}
	again, err := GPT2()
	if err != nil || again != tok {
		t.Fatalf("second GPT2() = %p, %v; want the cached %p", again, err, tok)
	}
}

// failingTransport records any HTTP request made through the default client.
type failingTransport struct{ hits int }

func (f *failingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	f.hits++
	return nil, errors.New("network use in an offline test: " + r.URL.String())
}

func TestLoadNeverUsesTheNetwork(t *testing.T) {
	ft := &failingTransport{}
	saved := http.DefaultTransport
	http.DefaultTransport = ft
	defer func() { http.DefaultTransport = saved }()
	t.Setenv("TIKTOKEN_CACHE_DIR", t.TempDir()) // an empty cache, should anything look

	tok, err := load()
	if err != nil {
		t.Fatal(err)
	}
	if ids := tok.Encode("Hello world"); !slices.Equal(ids, []int{15496, 995}) {
		t.Fatalf("Encode = %v", ids)
	}
	if ft.hits != 0 {
		t.Fatalf("%d HTTP requests while loading", ft.hits)
	}
}

func TestEncodeMatchesGoldenCases(t *testing.T) {
	tok := gpt2(t)
	cases := golden.Load(t).Tokenizer.Cases
	if len(cases) == 0 {
		t.Fatal("no tokenizer cases in cases.json")
	}
	for _, c := range cases {
		var got []int
		var err error
		switch {
		case c.AllowedSpecial == nil: // TDB's ModelContext.encode
			got = tok.Encode(c.Text)
		case len(*c.AllowedSpecial) == 0: // tiktoken's default, as in sample
			got, err = tok.EncodeOrdinary(c.Text)
		default:
			t.Fatalf("%q: unexpected allowed_special %v", c.Text, *c.AllowedSpecial)
		}
		if err != nil || !slices.Equal(got, c.IDs) {
			t.Errorf("%q (allowed_special %v): got %v, %v; want %v", c.Text, c.AllowedSpecial, got, err, c.IDs)
		}
		if s, err := tok.Decode(c.IDs); err != nil || s != c.Text {
			t.Errorf("Decode(%v) = %q, %v; want %q", c.IDs, s, err, c.Text)
		}
	}
}

func TestEncodeMatchesGoldenPrompts(t *testing.T) {
	tok := gpt2(t)
	g := golden.Load(t)
	for _, s := range g.Sampling {
		for i, p := range s.Prompts {
			got, err := tok.EncodeOrdinary(p)
			if err != nil || !slices.Equal(got, s.PromptTokens[i]) {
				t.Errorf("%s prompt %q: got %v, %v; want %v", s.Name, p, got, err, s.PromptTokens[i])
			}
		}
	}
	for _, in := range g.Inputs {
		if in.Text != "" {
			if got := tok.Encode(in.Text); !slices.Equal(got, in.Rows[0]) {
				t.Errorf("input %s: got %v, want %v", in.Name, got, in.Rows[0])
			}
		}
	}
}

// Sample builds each continuation by appending decode([tok]) token by token.
func TestDecodeTokensRebuildsGoldenSampleStrings(t *testing.T) {
	tok := gpt2(t)
	for _, s := range golden.Load(t).Sampling {
		for i, ids := range s.Tokens {
			parts, err := tok.DecodeTokens(ids)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(parts, ""); got != s.Strings[i] {
				t.Errorf("%s row %d: got %q, want %q", s.Name, i, got, s.Strings[i])
			}
		}
	}
}

func TestEncodeMatchesNpmTiktoken(t *testing.T) {
	tok := gpt2(t)
	f, err := os.Open("testdata/npm_tiktoken_gpt2.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		var c struct {
			Text string `json:"text"`
			IDs  []int  `json:"ids"`
		}
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			t.Fatal(err)
		}
		n++
		if got := tok.Encode(c.Text); !slices.Equal(got, c.IDs) && len(got)+len(c.IDs) > 0 {
			t.Errorf("%q: got %v, want %v", c.Text, got, c.IDs)
		}
	}
	if err := sc.Err(); err != nil || n < 300 {
		t.Fatalf("read %d cases: %v", n, err)
	}
}

func TestDecodeTokenOfEveryIDMatchesNpmTiktoken(t *testing.T) {
	tok := gpt2(t)
	want, err := os.ReadFile("testdata/npm_tiktoken_gpt2_decode.sha256")
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	for id := range tok.NVocab() {
		s, err := tok.DecodeToken(id)
		if err != nil {
			t.Fatal(err)
		}
		h.Write(binary.LittleEndian.AppendUint32(nil, uint32(len(s))))
		h.Write([]byte(s))
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != strings.TrimSpace(string(want)) {
		t.Fatalf("hash of all decoded tokens = %s, want %s", got, want)
	}
}

func TestDecodeReplacesPartialUTF8LikeTiktoken(t *testing.T) {
	tok := gpt2(t)
	for _, c := range []struct {
		ids  []int
		want string
	}{
		{[]int{12520}, " \uFFFD"},        // " \xf0\x9f": first half of 🤖
		{[]int{97}, "\uFFFD"},            // "\xa4"
		{[]int{244}, "\uFFFD"},           // "\x96"
		{[]int{97, 244}, "\uFFFD\uFFFD"}, // two stray continuation bytes: one U+FFFD each
		{[]int{12520, 97, 244}, " 🤖"},
		{[]int{12520, 97}, " \uFFFD"}, // a truncated sequence is one U+FFFD
		{[]int{50256}, EndOfText},
		{[]int{}, ""},
	} {
		got, err := tok.Decode(c.ids)
		if err != nil || got != c.want {
			t.Errorf("Decode(%v) = %q, %v; want %q", c.ids, got, err, c.want)
		}
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	tok := gpt2(t)
	for _, s := range []string{
		"", "Hello world", " leading and trailing  ", "tabs\tand\nnewlines\r\n",
		"Unicode: café, naïve, 日本語, emoji 🤖👍🏽", "<|endoftext|>a<|endoftext|>",
		"numbers 1234567890 3.14159", "\u00a0\u2028\u3000", strings.Repeat("ab ", 200),
	} {
		ids := tok.Encode(s)
		got, err := tok.Decode(ids)
		if err != nil || got != s {
			t.Errorf("Decode(Encode(%q)) = %q, %v", s, got, err)
		}
		parts, err := tok.DecodeTokens(ids)
		if err != nil || len(parts) != len(ids) {
			t.Errorf("DecodeTokens(%v) = %d parts, %v", ids, len(parts), err)
		}
	}
}

func TestEncodeReadsInvalidUTF8AsReplacementChar(t *testing.T) {
	tok := gpt2(t)
	if got, want := tok.Encode("a\xffb"), tok.Encode("a\uFFFDb"); !slices.Equal(got, want) {
		t.Fatalf("Encode(a\\xffb) = %v, want %v", got, want)
	}
}

func TestEncodeOrdinaryRejectsEndOfText(t *testing.T) {
	tok := gpt2(t)
	for _, s := range []string{"<|endoftext|>", "Hello <|endoftext|> world", "x<|endoftext|>"} {
		ids, err := tok.EncodeOrdinary(s)
		if !errors.Is(err, ErrDisallowedSpecial) || ids != nil {
			t.Errorf("EncodeOrdinary(%q) = %v, %v; want ErrDisallowedSpecial", s, ids, err)
		}
	}
	// Partial special-token text is ordinary text.
	ids, err := tok.EncodeOrdinary("<|endoftext")
	if err != nil || !slices.Equal(ids, tok.Encode("<|endoftext")) {
		t.Errorf("EncodeOrdinary(<|endoftext) = %v, %v", ids, err)
	}
	if got := tok.Encode("Hello <|endoftext|> world"); !slices.Contains(got, 50256) {
		t.Errorf("Encode kept no EOT: %v", got)
	}
}

func TestDecodeRejectsOutOfRangeIDs(t *testing.T) {
	tok := gpt2(t)
	for _, ids := range [][]int{{-1}, {50257}, {15496, 1 << 40}} {
		if s, err := tok.Decode(ids); !errors.Is(err, ErrTokenOutOfRange) || s != "" {
			t.Errorf("Decode(%v) = %q, %v; want ErrTokenOutOfRange", ids, s, err)
		}
		if s, err := tok.DecodeTokens(ids); !errors.Is(err, ErrTokenOutOfRange) || s != nil {
			t.Errorf("DecodeTokens(%v) = %q, %v; want ErrTokenOutOfRange", ids, s, err)
		}
	}
	if _, err := tok.DecodeToken(50257); !errors.Is(err, ErrTokenOutOfRange) {
		t.Errorf("DecodeToken(50257) = %v", err)
	}
}

func TestEncodeSingleToken(t *testing.T) {
	tok := gpt2(t)
	for s, want := range map[string]int{" the": 262, "Hello": 15496, EndOfText: 50256, "\n": 198} {
		if got, err := tok.EncodeSingleToken(s); err != nil || got != want {
			t.Errorf("EncodeSingleToken(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"", "Hello world", " 🤖"} {
		_, err := tok.EncodeSingleToken(s)
		if !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), "tokens, not 1") {
			t.Errorf("EncodeSingleToken(%q) error = %v; want ErrInvalidToken with the count", s, err)
		}
	}
	ids, err := tok.EncodeSingleTokens([]string{" the", "Hello", EndOfText})
	if err != nil || !slices.Equal(ids, []int{262, 15496, 50256}) {
		t.Errorf("EncodeSingleTokens = %v, %v", ids, err)
	}
	_, err = tok.EncodeSingleTokens([]string{" the", "two words"})
	if !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), `string 1`) || !strings.Contains(err.Error(), `"two words" is 2 tokens`) {
		t.Errorf("EncodeSingleTokens error = %v", err)
	}
}

func TestConcurrentUse(t *testing.T) {
	texts := []string{"Hello world", "Unicode: café 🤖", "<|endoftext|>x", strings.Repeat("go ", 100)}
	var wg sync.WaitGroup
	errs := make(chan error, 8*len(texts))
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok, err := GPT2() // the first calls race on the cache
			if err != nil {
				errs <- err
				return
			}
			for i := range 50 {
				s := texts[(g+i)%len(texts)]
				got, err := tok.Decode(tok.Encode(s))
				if err != nil || got != s {
					errs <- errors.New("round trip of " + s + " gave " + got)
				}
				if _, err := tok.DecodeTokens(tok.Encode(s)); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func BenchmarkEncode1KB(b *testing.B) {
	tok := gpt2(b)
	base := "The quick brown fox jumps over the lazy dog. It's 2024, and numbers like 3.14159 " +
		"appear next to café, naïve and 日本語; emoji 🤖 too.\n\n"
	text := strings.Repeat(base, 1024/len(base)+1)[:1024]
	for !utf8.ValidString(text) {
		text = text[:len(text)-1]
	}
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		tok.Encode(text)
	}
}

func BenchmarkLoad(b *testing.B) {
	for b.Loop() {
		if _, err := load(); err != nil {
			b.Fatal(err)
		}
	}
}

func TestEncodeSplitsOnEveryEndOfText(t *testing.T) {
	tok := gpt2(t)
	ids := tok.Encode(strings.Repeat("a<|endoftext|>", 20000))
	if len(ids) != 40000 {
		t.Fatalf("got %d ids, want 40000", len(ids))
	}
	for i := 0; i < len(ids); i += 2 {
		if ids[i] != 64 || ids[i+1] != 50256 {
			t.Fatalf("ids[%d:%d] = %v, want [64 50256]", i, i+2, ids[i:i+2])
		}
	}
}

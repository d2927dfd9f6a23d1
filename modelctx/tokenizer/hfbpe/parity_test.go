package hfbpe

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	tiktoken "github.com/pkoukk/tiktoken-go"
	"github.com/pkoukk/tiktoken-go-loader/assets"

	"github.com/onnx-tdb/onnx-tdb/internal/golden"
)

// The reference: tiktoken's own encodings (tiktoken-go, ranks embedded by
// tiktoken-go-loader), turned into tokenizer.json files the way Hugging
// Face converts tiktoken vocabularies: byte-level vocab, merges in rank
// order, each merge the split BPE reaches with the lower ranks.

// cl100kPattern is the pre-tokenizer split of cl100k_base, the same as
// the Split pattern of tokenizer.json files converted from cl100k-style
// vocabularies.
const cl100kPattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`

type refEncoding struct {
	file    string
	pattern string
	special map[string]int
	// splitFirst: Split(pattern) then ByteLevel without its regex, and
	// ignore_merges; else ByteLevel with its own regex.
	splitFirst bool
}

var (
	r50k   = refEncoding{file: "r50k_base.tiktoken", pattern: `'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`, special: map[string]int{"<|endoftext|>": 50256}}
	cl100k = refEncoding{file: "cl100k_base.tiktoken", pattern: cl100kPattern, splitFirst: true, special: map[string]int{
		"<|endoftext|>": 100257, "<|fim_prefix|>": 100258, "<|fim_middle|>": 100259, "<|fim_suffix|>": 100260, "<|endofprompt|>": 100276}}
)

type built struct {
	once sync.Once
	json []byte
	ref  *tiktoken.Tiktoken
	err  error
}

var builtEncodings sync.Map // file -> *built

func (e refEncoding) build(t testing.TB) ([]byte, *tiktoken.Tiktoken) {
	t.Helper()
	v, _ := builtEncodings.LoadOrStore(e.file, &built{})
	b := v.(*built)
	b.once.Do(func() { b.json, b.ref, b.err = e.make() })
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.json, b.ref
}

func (e refEncoding) make() ([]byte, *tiktoken.Tiktoken, error) {
	raw, err := assets.Assets.ReadFile(e.file)
	if err != nil {
		return nil, nil, err
	}
	ranks := map[string]int{}
	for _, line := range bytes.Split(raw, []byte{'\n'}) {
		tok, rank, ok := strings.Cut(string(line), " ")
		if !ok {
			continue
		}
		b, err := base64.StdEncoding.DecodeString(tok)
		if err != nil {
			return nil, nil, err
		}
		r, err := strconv.Atoi(rank)
		if err != nil {
			return nil, nil, err
		}
		ranks[string(b)] = r
	}
	core, err := tiktoken.NewCoreBPE(ranks, e.special, e.pattern)
	if err != nil {
		return nil, nil, err
	}
	specials := map[string]any{}
	for s := range e.special {
		specials[s] = true
	}
	ref := tiktoken.NewTiktoken(core, &tiktoken.Encoding{PatStr: e.pattern, MergeableRanks: ranks, SpecialTokens: e.special}, specials)
	js, err := json.Marshal(e.tokenizerJSON(ranks))
	return js, ref, err
}

func (e refEncoding) tokenizerJSON(ranks map[string]int) map[string]any {
	vocab := map[string]int{}
	type merge struct {
		rank int
		a, b string
	}
	var merges []merge
	for tok, r := range ranks {
		vocab[toByteLevel(tok)] = r
		if len(tok) > 1 {
			parts := rankMerge(ranks, tok, r)
			if len(parts) == 2 {
				merges = append(merges, merge{r, toByteLevel(parts[0]), toByteLevel(parts[1])})
			}
		}
	}
	sort.Slice(merges, func(i, j int) bool { return merges[i].rank < merges[j].rank })
	ms := make([]string, len(merges))
	for i, m := range merges {
		ms[i] = m.a + " " + m.b
	}
	var added []map[string]any
	for s, id := range e.special {
		added = append(added, map[string]any{"id": id, "content": s, "special": true})
	}
	pre := map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}
	if e.splitFirst {
		pre = map[string]any{"type": "Sequence", "pretokenizers": []any{
			map[string]any{"type": "Split", "pattern": map[string]any{"Regex": e.pattern}, "behavior": "Isolated", "invert": false},
			map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false},
		}}
	}
	return map[string]any{
		"version": "1.0", "added_tokens": added, "normalizer": nil, "pre_tokenizer": pre,
		"decoder": map[string]any{"type": "ByteLevel"},
		"model":   map[string]any{"type": "BPE", "vocab": vocab, "merges": ms, "ignore_merges": e.splitFirst},
	}
}

// rankMerge runs tiktoken's byte-pair merge on tok with ranks below max.
func rankMerge(ranks map[string]int, tok string, max int) []string {
	parts := make([]string, len(tok))
	for i := 0; i < len(tok); i++ { // bytes, not runes
		parts[i] = tok[i : i+1]
	}
	for len(parts) > 1 {
		best, bestRank := -1, max
		for i := 0; i+1 < len(parts); i++ {
			if r, ok := ranks[parts[i]+parts[i+1]]; ok && r < bestRank {
				best, bestRank = i, r
			}
		}
		if best < 0 {
			break
		}
		parts[best] += parts[best+1]
		parts = append(parts[:best+1], parts[best+2:]...)
	}
	return parts
}

// parityTexts are strings that exercise the pre-tokenizers: contractions in
// both cases, digit runs, punctuation runs with newlines, whitespace runs,
// non-Latin scripts, emoji, and special tokens' text.
var parityTexts = []string{
	"Hello, world! It's 2024 and we're testing the tokenizer.",
	"I'LL SAY IT'S FINE: don't, won't, shouldn't've",
	"1234567890 3.14159 0x1F600 1,000,000",
	"def f(x):\n    return x**2  # square\n\n\n\tindented\r\nwindows",
	"   leading and trailing spaces   ",
	"Ünïcödé façade – naïve café — “quotes” ‘single’",
	"日本語のテキストと中文文本，한국어 텍스트",
	"emoji 🤖🧠👩‍🔬 and symbols ∑∫√∞ ≠ ≈",
	"<|endoftext|> between <|endoftext|>texts",
	"!!!???...---***",
	"a\n\nb\n \n c",
	"",
}

func parityInputs(t *testing.T) []string {
	texts := append([]string(nil), parityTexts...)
	if c, err := golden.LoadCases(); err == nil {
		for _, tc := range c.Tokenizer.Cases {
			texts = append(texts, tc.Text)
		}
	}
	return texts
}

func testParity(t *testing.T, e refEncoding) {
	js, ref := e.build(t)
	tok, err := Parse(js)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range parityInputs(t) {
		allowed := make([]string, 0, len(e.special))
		for sp := range e.special {
			allowed = append(allowed, sp)
		}
		want := ref.Encode(s, allowed, nil)
		got := tok.Encode(s)
		if !equal(got, want) {
			t.Errorf("Encode(%q):\n got %v\nwant %v", s, got, want)
			continue
		}
		back, err := tok.Decode(got)
		if err != nil || back != s {
			t.Errorf("Decode(Encode(%q)) = %q, %v", s, back, err)
		}
	}
}

// TestMatchesTiktokenR50k compares a tokenizer.json of the original layout (ByteLevel
// with its own regex, merges applied) with tiktoken's r50k_base.
func TestMatchesTiktokenR50k(t *testing.T) { testParity(t, r50k) }

// TestMatchesTiktokenCl100k compares a split-first tokenizer.json (a
// Split regex, then ByteLevel, ignore_merges) with tiktoken's cl100k_base,
// whose split it uses.
func TestMatchesTiktokenCl100k(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 100k-token tokenizer.json")
	}
	testParity(t, cl100k)
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func BenchmarkEncode(b *testing.B) {
	js, _ := cl100k.build(b)
	tok, err := Parse(js)
	if err != nil {
		b.Fatal(err)
	}
	text := strings.Repeat(strings.Join(parityTexts, " "), 4)
	b.SetBytes(int64(len(text)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tok.Encode(text)
	}
}

// BenchmarkEncodeTiktoken is the reference encoder on the same text, for
// comparison.
func BenchmarkEncodeTiktoken(b *testing.B) {
	_, ref := cl100k.build(b)
	text := strings.Repeat(strings.Join(parityTexts, " "), 4)
	b.SetBytes(int64(len(text)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ref.EncodeOrdinary(text)
	}
}

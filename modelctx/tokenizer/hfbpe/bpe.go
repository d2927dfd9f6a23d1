package hfbpe

import (
	"fmt"
	"strings"
	"sync"

	"github.com/dlclark/regexp2"
	"github.com/onnx-tdb/onnx-tdb/modelctx/tokenizer"
)

// Tokenizer is a byte-level BPE read from a tokenizer.json. It implements
// tokenizer.Tokenizer and is safe for concurrent use.
type Tokenizer struct {
	vocab          map[string]int    // byte-level token text -> id
	ranks          map[pair]int      // merge -> rank (lower merges first)
	added          []addedToken      // longest first
	splits         []*regexp2.Regexp // the Split steps, in order
	byteRegex      *regexp2.Regexp   // ByteLevel's own split (use_regex), or nil
	addPrefixSpace bool
	ignoreMerges   bool
	unk, eot       int
	nVocab         int
	decode         []string // id -> the token's bytes ("" for ids no token has)
	isAdded        []bool

	mu    sync.Mutex
	cache map[string][]int // pre-token (byte-level) -> ids
}

type pair struct{ a, b string }

type addedToken struct {
	id      int
	content string
	special bool
}

var _ tokenizer.Tokenizer = (*Tokenizer)(nil)

// maxCache bounds the pre-token cache; it is emptied when full.
const maxCache = 1 << 16

// Name names the encoding.
func (t *Tokenizer) Name() string { return Name }

// NVocab is one more than the largest id of the vocab and added tokens.
func (t *Tokenizer) NVocab() int { return t.nVocab }

// EOT is the id of the first of <|end_of_text|>, <|endoftext|> and </s>
// among the added tokens, or -1.
func (t *Tokenizer) EOT() int { return t.eot }

// Encode encodes text; the text of an added token becomes that token. No
// BOS is added (the post-processor's template is not applied). Invalid
// UTF-8 is read as U+FFFD, one per maximal ill-formed subsequence.
func (t *Tokenizer) Encode(s string) []int {
	s = tokenizer.ReplaceInvalidUTF8(s)
	var ids []int
	for len(s) > 0 {
		at, a := t.nextAdded(s)
		ids = t.encodeText(ids, s[:at])
		if a == nil {
			break
		}
		ids = append(ids, a.id)
		s = s[at+len(a.content):]
	}
	return ids
}

// EncodeOrdinary encodes a prompt: text holding a special token's text is
// refused with tokenizer.ErrDisallowedSpecial.
func (t *Tokenizer) EncodeOrdinary(s string) ([]int, error) {
	for _, a := range t.added {
		if a.special && strings.Contains(s, a.content) {
			return nil, fmt.Errorf("%w: %q", tokenizer.ErrDisallowedSpecial, a.content)
		}
	}
	return t.Encode(s), nil
}

// nextAdded finds the leftmost added token in s (the longest at that
// place): its byte offset and the token, or len(s) and nil.
func (t *Tokenizer) nextAdded(s string) (int, *addedToken) {
	best, bestAt := -1, len(s)
	for i := range t.added {
		at := strings.Index(s[:min(len(s), bestAt+len(t.added[i].content))], t.added[i].content)
		if at >= 0 && (at < bestAt || best < 0 && at == bestAt) {
			best, bestAt = i, at
		}
	}
	if best < 0 {
		return len(s), nil
	}
	return bestAt, &t.added[best]
}

// encodeText pre-tokenizes text without added tokens and appends the BPE
// ids of each piece.
func (t *Tokenizer) encodeText(ids []int, text string) []int {
	if text == "" {
		return ids
	}
	pieces := [][]rune{[]rune(text)}
	for _, re := range t.splits {
		pieces = isolateAll(re, pieces)
	}
	// ByteLevel: a space before each piece that lacks one, then its own
	// split.
	if t.addPrefixSpace {
		for i, p := range pieces {
			if len(p) == 0 || p[0] != ' ' {
				pieces[i] = append([]rune{' '}, p...)
			}
		}
	}
	if t.byteRegex != nil {
		pieces = isolateAll(t.byteRegex, pieces)
	}
	for _, p := range pieces {
		ids = append(ids, t.bpe(toByteLevel(string(p)))...)
	}
	return ids
}

func isolateAll(re *regexp2.Regexp, pieces [][]rune) [][]rune {
	var next [][]rune
	for _, p := range pieces {
		next = isolate(re, p, next)
	}
	return next
}

// isolate appends the pieces of p: every match of re, and the text between
// matches. A match that fails (a timeout) ends the splitting: the rest is
// one piece.
func isolate(re *regexp2.Regexp, p []rune, out [][]rune) [][]rune {
	last := 0
	m, err := re.FindRunesMatch(p)
	for err == nil && m != nil {
		if m.Length == 0 {
			m, err = re.FindNextMatch(m)
			continue
		}
		if m.Index > last {
			out = append(out, p[last:m.Index])
		}
		out = append(out, p[m.Index:m.Index+m.Length])
		last = m.Index + m.Length
		m, err = re.FindNextMatch(m)
	}
	if last < len(p) {
		out = append(out, p[last:])
	}
	return out
}

// bpe encodes one byte-level pre-token.
func (t *Tokenizer) bpe(word string) []int {
	t.mu.Lock()
	if ids, ok := t.cache[word]; ok {
		t.mu.Unlock()
		return ids
	}
	t.mu.Unlock()
	ids := t.merge(word)
	t.mu.Lock()
	if len(t.cache) >= maxCache {
		clear(t.cache)
	}
	t.cache[word] = ids
	t.mu.Unlock()
	return ids
}

func (t *Tokenizer) merge(word string) []int {
	if id, ok := t.vocab[word]; ok && t.ignoreMerges {
		return []int{id}
	}
	syms := make([]string, 0, len(word))
	for _, r := range word {
		syms = append(syms, string(r))
	}
	for len(syms) > 1 {
		best, bestRank := -1, 0
		for i := 0; i+1 < len(syms); i++ {
			if r, ok := t.ranks[pair{syms[i], syms[i+1]}]; ok && (best < 0 || r < bestRank) {
				best, bestRank = i, r
			}
		}
		if best < 0 {
			break
		}
		syms[best] += syms[best+1]
		syms = append(syms[:best+1], syms[best+2:]...)
	}
	ids := make([]int, 0, len(syms))
	for _, s := range syms {
		if id, ok := t.vocab[s]; ok {
			ids = append(ids, id)
		} else if t.unk >= 0 {
			ids = append(ids, t.unk)
		}
	}
	return ids
}

func (t *Tokenizer) check(ids []int) error {
	for _, id := range ids {
		if id < 0 || id >= t.nVocab || t.decode[id] == "" {
			return fmt.Errorf("%w: %d (vocabulary [0,%d))", tokenizer.ErrTokenOutOfRange, id, t.nVocab)
		}
	}
	return nil
}

// Decode joins the tokens' bytes and decodes them as UTF-8.
func (t *Tokenizer) Decode(ids []int) (string, error) {
	if err := t.check(ids); err != nil {
		return "", err
	}
	var b strings.Builder
	for _, id := range ids {
		b.WriteString(t.decode[id])
	}
	return tokenizer.ReplaceInvalidUTF8(b.String()), nil
}

// DecodeToken decodes one token on its own.
func (t *Tokenizer) DecodeToken(id int) (string, error) { return t.Decode([]int{id}) }

// DecodeTokens decodes each id on its own.
func (t *Tokenizer) DecodeTokens(ids []int) ([]string, error) {
	if err := t.check(ids); err != nil {
		return nil, err
	}
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = tokenizer.ReplaceInvalidUTF8(t.decode[id])
	}
	return out, nil
}

// EncodeSingleToken returns the id of s, which must be one token: an added
// token's text or one vocab entry's bytes.
func (t *Tokenizer) EncodeSingleToken(s string) (int, error) {
	for _, a := range t.added {
		if a.content == s {
			return a.id, nil
		}
	}
	if id, ok := t.vocab[toByteLevel(s)]; ok && s != "" {
		return id, nil
	}
	return 0, fmt.Errorf("%w: %q is not one token", tokenizer.ErrInvalidToken, s)
}

// EncodeSingleTokens applies EncodeSingleToken to each string.
func (t *Tokenizer) EncodeSingleTokens(ss []string) ([]int, error) {
	out := make([]int, len(ss))
	for i, s := range ss {
		id, err := t.EncodeSingleToken(s)
		if err != nil {
			return nil, err
		}
		out[i] = id
	}
	return out, nil
}

package corpus

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/onnx-tdb/onnx-tdb/export/npy"
)

// Errors callers branch on.
var (
	// ErrEmpty: the corpus holds no document, or fewer tokens than one window.
	ErrEmpty = errors.New("corpus too short")
	// ErrBadFile: a corpus file cannot be read as a corpus.
	ErrBadFile = errors.New("bad corpus file")
)

// Tokenizer is what the corpus needs of one: text to ids (with a literal
// <|endoftext|> becoming that token) and the id placed between documents.
type Tokenizer interface {
	Encode(text string) []int
	EOT() int
}

// File describes one corpus file as the harvest manifest records it.
type File struct {
	Path      string `json:"path"`
	SHA256    string `json:"sha256"`
	Bytes     int64  `json:"bytes"`
	Documents int    `json:"documents"`
}

// Corpus is a harvest's examples: N windows of Context tokens.
type Corpus struct {
	Files        []File
	Context      int
	StreamTokens int     // tokens of the joined stream (before cutting)
	Tokens       []int32 // N*Context ids, window i at [i*Context, (i+1)*Context)
}

// N is the number of examples.
func (c *Corpus) N() int { return len(c.Tokens) / c.Context }

// Window returns the token ids of example i.
func (c *Corpus) Window(i int) []int32 { return c.Tokens[i*c.Context : (i+1)*c.Context] }

// Load reads the corpus files (.txt: one document; .jsonl: one document per
// non-blank line, its "text"; .npy: 1-D integer ids = one tokenized
// document, or 2-D [N, context] = N ready examples, then the only file) and
// cuts them into windows of context tokens. tok may be nil when every file
// is .npy.
func Load(paths []string, context int, tok Tokenizer) (*Corpus, error) {
	if context <= 0 {
		return nil, fmt.Errorf("context %d: want a positive window length", context)
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("%w: no corpus file given", ErrEmpty)
	}
	c := &Corpus{Context: context}
	var stream []int32
	docs := 0
	add := func(ids []int32) {
		if docs > 0 {
			stream = append(stream, int32(tok.EOT()))
		}
		stream = append(stream, ids...)
		docs++
	}
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadFile, err)
		}
		sum := sha256.Sum256(raw)
		f := File{Path: p, SHA256: hex.EncodeToString(sum[:]), Bytes: int64(len(raw))}
		switch ext := strings.ToLower(filepath.Ext(p)); ext {
		case ".txt", ".jsonl":
			if tok == nil {
				return nil, fmt.Errorf("%w: %s: text needs a tokenizer, and the model has none (give .npy token ids)", ErrBadFile, p)
			}
			texts, err := documents(raw, ext == ".jsonl")
			if err != nil {
				return nil, fmt.Errorf("%w: %s: %v", ErrBadFile, p, err)
			}
			for _, s := range texts {
				add(toInt32(tok.Encode(s)))
			}
			f.Documents = len(texts)
		case ".npy":
			shape, ids, err := readIDs(p)
			if err != nil {
				return nil, fmt.Errorf("%w: %s: %v", ErrBadFile, p, err)
			}
			if len(shape) == 2 {
				if len(paths) != 1 {
					return nil, fmt.Errorf("%w: %s: a 2-D .npy of ready examples must be the only corpus file", ErrBadFile, p)
				}
				if shape[1] != context {
					return nil, fmt.Errorf("%w: %s: examples of %d tokens, the context is %d", ErrBadFile, p, shape[1], context)
				}
				if shape[0] == 0 {
					return nil, fmt.Errorf("%w: %s holds no example", ErrEmpty, p)
				}
				f.Documents = shape[0]
				c.Files, c.StreamTokens, c.Tokens = []File{f}, len(ids), ids
				return c, nil
			}
			if tok == nil && docs > 0 {
				return nil, fmt.Errorf("%w: %s: joining documents needs the tokenizer's <|endoftext|>", ErrBadFile, p)
			}
			add(ids)
			f.Documents = 1
		default:
			return nil, fmt.Errorf("%w: %s: want .txt, .jsonl or .npy", ErrBadFile, p)
		}
		c.Files = append(c.Files, f)
	}
	c.StreamTokens = len(stream)
	n := len(stream) / context
	if n == 0 {
		return nil, fmt.Errorf("%w: %d documents give %d tokens, fewer than one window of %d", ErrEmpty, docs, len(stream), context)
	}
	c.Tokens = stream[: n*context : n*context]
	return c, nil
}

// documents splits a file's text into documents.
func documents(raw []byte, jsonl bool) ([]string, error) {
	if !jsonl {
		if len(raw) == 0 {
			return nil, nil
		}
		return []string{string(raw)}, nil
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 64*1024), len(raw)+1)
	for line := 1; sc.Scan(); line++ {
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var doc struct {
			Text *string `json:"text"`
		}
		if err := json.Unmarshal(b, &doc); err != nil {
			return nil, fmt.Errorf("line %d: %v", line, err)
		}
		if doc.Text == nil {
			return nil, fmt.Errorf("line %d has no \"text\" string", line)
		}
		out = append(out, *doc.Text)
	}
	return out, sc.Err()
}

// readIDs reads a 1-D or 2-D .npy of integer token ids.
func readIDs(p string) ([]int, []int32, error) {
	shape, data, err := npy.Read(p)
	if err != nil {
		return nil, nil, err
	}
	if len(shape) != 1 && len(shape) != 2 {
		return nil, nil, fmt.Errorf("shape %v: want 1-D token ids or 2-D [examples, context]", shape)
	}
	ids := make([]int32, len(data))
	for i, v := range data {
		if v != float32(math.Trunc(float64(v))) || v < 0 || v > math.MaxInt32 {
			return nil, nil, fmt.Errorf("value %v at %d is not a token id", v, i)
		}
		ids[i] = int32(v)
	}
	return shape, ids, nil
}

func toInt32(ids []int) []int32 {
	out := make([]int32, len(ids))
	for i, v := range ids {
		out[i] = int32(v)
	}
	return out
}

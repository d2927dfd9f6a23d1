package corpus

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/export/arch/gpt2/bpe"
	"github.com/onnx-tdb/onnx-tdb/export/npy"
	"github.com/onnx-tdb/onnx-tdb/internal/golden"
)

func gpt2(t *testing.T) Tokenizer {
	t.Helper()
	tok, err := bpe.GPT2()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// The reference corpus gives the reference stream and the reference windows.
func TestGoldenWindows(t *testing.T) {
	dir := golden.RequireShared(t, "harvest")
	paths := []string{filepath.Join(dir, "corpus", "essay.txt"), filepath.Join(dir, "corpus", "notes.jsonl")}
	for _, c := range []struct {
		context  int
		examples string
	}{{16, "a_mlp_post_act/examples.json"}, {32, "b_delta_mlp_quantiles/examples.json"}} {
		got, err := Load(paths, c.context, gpt2(t))
		if err != nil {
			t.Fatal(err)
		}
		raw, err := os.ReadFile(filepath.Join(dir, c.examples))
		if err != nil {
			t.Fatal(err)
		}
		var want struct {
			TokenIDs [][]int `json:"token_ids"`
		}
		if err := json.Unmarshal(raw, &want); err != nil {
			t.Fatal(err)
		}
		if got.StreamTokens != 3823 || got.N() != len(want.TokenIDs) {
			t.Fatalf("context %d: stream %d tokens, %d examples; want 3823, %d", c.context, got.StreamTokens, got.N(), len(want.TokenIDs))
		}
		for i, w := range want.TokenIDs {
			for j, id := range got.Window(i) {
				if int(id) != w[j] {
					t.Fatalf("context %d: example %d token %d = %d, want %d", c.context, i, j, id, w[j])
				}
			}
		}
		if got.Files[0].SHA256 != "1f9a598e48086604b7c9966ba6d3c1c8b939d8912ad6ff8eda98d83d955c09c6" || got.Files[1].Documents != 17 {
			t.Fatalf("files described as %+v", got.Files)
		}
	}
}

func TestDocumentsJoinWithOneEOT(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ids := filepath.Join(dir, "ids.npy")
	if err := npy.Write(ids, []int{3}, []float32{7, 8, 9}); err != nil {
		t.Fatal(err)
	}
	a := write("a.txt", "Hello")
	b := write("b.jsonl", "{\"text\":\" world\",\"id\":1}\n\n   \n{\"text\":\"<|endoftext|>\"}\n")
	c, err := Load([]string{a, b, ids}, 2, gpt2(t))
	if err != nil {
		t.Fatal(err)
	}
	// Hello | EOT | " world" | EOT | <|endoftext|> | EOT | 7 8 9  = 9 tokens, 4 windows of 2.
	want := []int32{15496, 50256, 995, 50256, 50256, 50256, 7, 8}
	if c.StreamTokens != 9 || len(c.Tokens) != len(want) {
		t.Fatalf("stream %d tokens, windows %v", c.StreamTokens, c.Tokens)
	}
	for i := range want {
		if c.Tokens[i] != want[i] {
			t.Fatalf("tokens %v, want %v", c.Tokens, want)
		}
	}
}

func TestBadCorpora(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(s), 0o644)
		return p
	}
	two := filepath.Join(dir, "two.npy")
	npy.Write(two, []int{2, 4}, make([]float32, 8))
	frac := filepath.Join(dir, "frac.npy")
	npy.Write(frac, []int{2}, []float32{1.5, 2})
	for _, c := range []struct {
		name  string
		paths []string
		ctx   int
		want  error
	}{
		{"no file", nil, 4, ErrEmpty},
		{"empty text", []string{write("e.txt", "")}, 4, ErrEmpty},
		{"shorter than a window", []string{write("s.txt", "Hi")}, 64, ErrEmpty},
		{"missing file", []string{filepath.Join(dir, "nope.txt")}, 4, ErrBadFile},
		{"jsonl without text", []string{write("x.jsonl", "{\"body\":\"a\"}\n")}, 1, ErrBadFile},
		{"jsonl not json", []string{write("y.jsonl", "hello\n")}, 1, ErrBadFile},
		{"other extension", []string{write("z.csv", "a,b")}, 1, ErrBadFile},
		{"2-D npy beside others", []string{write("t.txt", "Hello there"), two}, 4, ErrBadFile},
		{"2-D npy of another context", []string{two}, 8, ErrBadFile},
		{"fractional ids", []string{frac}, 1, ErrBadFile},
	} {
		if _, err := Load(c.paths, c.ctx, gpt2(t)); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
	c, err := Load([]string{two}, 4, nil)
	if err != nil || c.N() != 2 {
		t.Fatalf("2-D npy: %v, %v", c, err)
	}
}

package main

import (
	"encoding/json"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/internal/golden"
)

func TestForwardDrawsAttentionPictures(t *testing.T) {
	dir := t.TempDir()
	html, pic := filepath.Join(dir, "attn.html"), filepath.Join(dir, "attn.png")
	out, err := runCLI(t, "forward", "--model", golden.ModelDir(), "--prompt", "The quick brown fox", "--prompt", "Hi",
		"--attention-html", html, "--attention-png", pic, "--attention-layer", "1", "--attention-head", "3", "--attention-row", "1",
		"--save-activations", dir, "--points", "attn.qk_probs")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	f, err := os.Open(pic)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(f)
	f.Close()
	if err != nil || img.Bounds().Dx() < 4*24 {
		t.Fatalf("png: %v %v", err, img.Bounds())
	}
	page, err := os.ReadFile(html)
	if err != nil {
		t.Fatal(err)
	}
	s := string(page)
	i := strings.Index(s, "const data = ")
	j := strings.Index(s[i:], ";\n")
	var data struct {
		Tokens []string
		Layers []struct {
			Layer int
			Heads [][][]float32
		}
	}
	if err := json.Unmarshal([]byte(s[i+len("const data = "):i+j]), &data); err != nil {
		t.Fatal(err)
	}
	if len(data.Layers) != 2 || strings.Join(data.Tokens, "|") != "Hi|<pad>|<pad>|<pad>" {
		t.Fatalf("page data: %d layers, tokens %q", len(data.Layers), data.Tokens)
	}
	shape, probs := readNpy(t, filepath.Join(dir, "attn.qk_probs.L1.npy")) // [B,T,Tk,H]
	T, Tk, H := shape[1], shape[2], shape[3]
	for q := 0; q < T; q++ {
		for k := 0; k < Tk; k++ {
			if got, want := data.Layers[1].Heads[3][q][k], probs[((1*T+q)*Tk+k)*H+3]; got != want {
				t.Fatalf("row 1 layer 1 head 3 q=%d k=%d: page %v, npy %v", q, k, got, want)
			}
		}
	}
	if _, err := runCLI(t, "forward", "--model", golden.ModelDir(), "--tokens", "1,2", "--attention-png", pic, "--attention-layer", "2"); err == nil || !strings.Contains(err.Error(), "--attention-layer 2 out of range") {
		t.Fatalf("bad layer: %v", err)
	}
}

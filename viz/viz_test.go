package viz

import (
	"bytes"
	"errors"
	"fmt"
	"image/color"
	"image/png"
	"os"
	"strings"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/hooks"
)

// causal makes qk_probs [1,T,T,H] with row q spread evenly over keys 0..q,
// head h scaled towards the diagonal.
func causal(T, H int) *hooks.Tensor {
	t := hooks.Zeros(1, T, T, H)
	for q := 0; q < T; q++ {
		for k := 0; k <= q; k++ {
			for h := 0; h < H; h++ {
				v := float32(1) / float32(q+1)
				if h == 1 {
					v = 0
					if k == q {
						v = 1
					}
				}
				t.Data[((q*T)+k)*H+h] = v
			}
		}
	}
	return t
}

func TestAttentionPNGCellsShowTheProbabilities(t *testing.T) {
	toks := []string{"The", " quick", " brown", " fox"}
	p := causal(4, 2)
	for head := 0; head < 2; head++ {
		var b bytes.Buffer
		lay, err := WriteAttentionPNG(&b, p, 0, head, toks, HeatmapOptions{Title: fmt.Sprintf("layer 0 head %d", head)})
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(&b)
		if err != nil {
			t.Fatal(err)
		}
		for q := 0; q < 4; q++ {
			for k := 0; k < 4; k++ {
				got := color.RGBAModel.Convert(img.At(lay.X0+k*lay.Cell+lay.Cell/2, lay.Y0+q*lay.Cell+lay.Cell/2)).(color.RGBA)
				want := color.RGBA{0xf0, 0xf0, 0xf0, 0xff}
				if k <= q {
					want = shade(p.Data[((q*4)+k)*2+head])
				}
				if got != want {
					t.Fatalf("head %d cell q=%d k=%d is %v, want %v", head, q, k, got, want)
				}
			}
		}
	}
}

func TestAttentionRejectsBadInput(t *testing.T) {
	var b bytes.Buffer
	if _, err := WriteAttentionPNG(&b, hooks.Zeros(1, 2, 2), 0, 0, []string{"a", "b"}, HeatmapOptions{}); !errors.Is(err, ErrShape) {
		t.Fatalf("3-d tensor: %v", err)
	}
	for _, c := range []struct {
		row, head int
		toks      []string
		want      string
	}{
		{1, 0, []string{"a", "b"}, "row 1 out of range"},
		{0, 2, []string{"a", "b"}, "head 2 out of range"},
		{0, 0, []string{"a"}, "1 tokens for 2 key positions"},
	} {
		if _, err := WriteAttentionPNG(&b, causal(2, 2), c.row, c.head, c.toks, HeatmapOptions{}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("%+v: %v", c, err)
		}
	}
	if err := WriteAttentionHTML(&b, Attention{Tokens: []string{"a"}}); !errors.Is(err, ErrShape) {
		t.Fatalf("no layers: %v", err)
	}
}

func TestAttentionHTMLHoldsEveryHeadAndEscapesTokens(t *testing.T) {
	var b bytes.Buffer
	toks := []string{"</script><b>", " x", " y"}
	err := WriteAttentionHTML(&b, Attention{Title: "a <title>", Tokens: toks, Probs: map[int]*hooks.Tensor{0: causal(3, 2), 1: causal(3, 2)}})
	if err != nil {
		t.Fatal(err)
	}
	s := b.String()
	if strings.Contains(s, "</script><b>") || strings.Contains(s, "a <title>") {
		t.Fatal("a token or the title went into the page unescaped")
	}
	if strings.Count(s, `"layer":`) != 2 || !strings.Contains(s, `"heads":[[[1,0,0],[0.5,0.5,0],`) {
		t.Fatalf("page data: %s", s[strings.Index(s, "const data"):][:200])
	}
	if strings.Contains(s, "http://") || strings.Contains(s, "https://") {
		t.Fatal("the page fetches something from elsewhere")
	}
}

const sampleRecord = `{"neuron_id": {"layer_index": 3, "neuron_index": 7},
 "most_positive_activation_records": [{"tokens": ["a", " <b>", " c"], "activations": [0, 2, 4]}],
 "random_sample": [{"tokens": ["x"], "activations": [-1]}],
 "max_activation": 4, "extra": {"ignored": true}}`

func TestRecordHTMLShadesTokens(t *testing.T) {
	r, err := ParseRecord([]byte(sampleRecord))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := WriteRecordHTML(&b, r, ""); err != nil {
		t.Fatal(err)
	}
	s := b.String()
	for _, want := range []string{
		`rgba(46, 160, 67, 0.000)" title="0">a</span>`,
		`rgba(46, 160, 67, 0.500)" title="2"> &lt;b&gt;</span>`,
		`rgba(46, 160, 67, 1.000)" title="4"> c</span>`,
		`rgba(46, 160, 67, 0.000)" title="-1">x</span>`,
		`<title>neuron {&#34;layer_index&#34;: 3, &#34;neuron_index&#34;: 7}</title>`,
	} {
		if !strings.Contains(s, want) {
			t.Fatalf("page lacks %s:\n%s", want, s)
		}
	}
}

func TestParseRecordRejects(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{"not JSON", `{`, "not a neuron record"},
		{"no sequences", `{"neuron_id": 1}`, "no most_positive_activation_records"},
		{"lengths differ", `{"most_positive_activation_records": [{"tokens": ["a"], "activations": [1, 2]}]}`, "1 tokens and 2 activations"},
		{"tokens not strings", `{"most_positive_activation_records": [{"tokens": [1], "activations": [1]}]}`, "not a neuron record"},
	} {
		if _, err := ParseRecord([]byte(c.in)); !errors.Is(err, ErrRecord) || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("%s: %v", c.name, err)
		}
	}
}

func FuzzParseRecord(f *testing.F) {
	f.Add([]byte(sampleRecord))
	f.Add([]byte(`{"most_positive_activation_records": [{"tokens": [], "activations": []}]}`))
	f.Add([]byte(`{"random_sample": [{"tokens": ["a"], "activations": [1e308]}], "max_activation": -1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseRecord(data)
		if err != nil {
			return
		}
		var b bytes.Buffer
		if err := WriteRecordHTML(&b, r, ""); err != nil {
			t.Fatalf("a parsed record did not render: %v", err)
		}
	})
}

func ExampleWriteRecordHTML() {
	r, err := ParseRecord([]byte(`{"neuron_id": {"layer_index": 0, "neuron_index": 5},
		"most_positive_activation_records": [{"tokens": ["Hello", ",", " world"], "activations": [0.5, 0, 2]}]}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	var b bytes.Buffer
	if err := WriteRecordHTML(&b, r, "layer 0 neuron 5"); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(strings.Count(b.String(), `class="tok"`), "tokens shaded; max", r.max())
	// Output: 3 tokens shaded; max 2
}

func ExampleWriteAttentionPNG() {
	probs := causal(3, 1) // attn.qk_probs of one layer: [batch, query, key, head]
	f, err := os.CreateTemp("", "attention-*.png")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.Remove(f.Name())
	defer f.Close()
	lay, err := WriteAttentionPNG(f, probs, 0, 0, []string{"The", " quick", " fox"}, HeatmapOptions{Cell: 20})
	fmt.Println(lay.Cell, err)
	// Output: 20 <nil>
}

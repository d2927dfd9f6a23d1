package modelctx

import (
	"math"
	"math/rand/v2"
	"reflect"
	"sort"
	"testing"
)

// logitsOf returns log-probabilities: softmax(logitsOf(p)) = p.
func logitsOf(p ...float64) []float32 {
	out := make([]float32, len(p))
	for i, x := range p {
		out[i] = float32(math.Log(x))
	}
	return out
}

func TestNucleusExclusionRule(t *testing.T) {
	negInf := float32(math.Inf(-1))
	for _, tc := range []struct {
		name   string
		logits []float32
		topP   float64
		want   []int
	}{
		// probabilities: token 2 0.5, token 0 0.3, token 1 0.2; cumulative 0.5 0.8 1.0
		{"crossing token excluded", logitsOf(0.3, 0.2, 0.5), 0.75, []int{2}}, // HF would keep [2 0]
		{"two within", logitsOf(0.3, 0.2, 0.5), 0.85, []int{2, 0}},
		{"just under the last", logitsOf(0.3, 0.2, 0.5), 0.999, []int{2, 0}},
		{"top token kept when top-p is below it", logitsOf(0.3, 0.2, 0.5), 0.3, []int{2}},
		{"top-p 0 keeps the top token", logitsOf(0.3, 0.2, 0.5), 0, []int{2}},
		// 0.4 0.3 0.2 0.1: cumulative 0.4 0.7 0.9 1.0
		{"three of four", logitsOf(0.1, 0.2, 0.4, 0.3), 0.95, []int{2, 3, 1}},
		{"between second and third", logitsOf(0.1, 0.2, 0.4, 0.3), 0.8, []int{2, 3}},
		{"dominant top", logitsOf(0.05, 0.9, 0.05), 0.5, []int{1}},
		// equal logits: lowest index first; cumulative 0.25 0.5 0.75 1
		{"ties by index", []float32{1, 1, 1, 1}, 0.6, []int{0, 1}},
		{"masked tokens last", []float32{negInf, 0, negInf, 0}, 0.7, []int{1}},
		{"masked tokens within 1", []float32{negInf, 0, negInf, 0}, 1, []int{1, 3, 0, 2}},
		{"one token", []float32{3}, 0.1, []int{0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := nucleusKeep(tc.logits, tc.topP); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("nucleusKeep(top-p %v) = %v, want %v", tc.topP, got, tc.want)
			}
		})
	}
}

// TestNucleusOrder checks the heap order against a sort on random logits.
func TestNucleusOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	s := make([]float32, 5000)
	for i := range s {
		s[i] = float32(r.NormFloat64() * 3)
		if i%7 == 0 {
			s[i] = s[i/2] // some ties
		}
	}
	want := make([]int, len(s))
	for i := range want {
		want[i] = i
	}
	sort.SliceStable(want, func(a, b int) bool { return s[want[a]] > s[want[b]] })
	got := nucleusKeep(s, 0.999999)
	if len(got) < 100 || !reflect.DeepEqual(got, want[:len(got)]) {
		t.Fatalf("kept %d tokens, not the most likely in order", len(got))
	}
	// The kept mass is within top-p and the next token would cross it.
	m := float64(s[want[0]])
	z := 0.0
	for _, v := range s {
		z += math.Exp(float64(v) - m)
	}
	cum := 0.0
	for _, i := range got {
		cum += math.Exp(float64(s[i])-m) / z
	}
	next := math.Exp(float64(s[want[len(got)]])-m) / z
	if cum > 0.999999 || cum+next <= 0.999999 {
		t.Errorf("kept mass %v, with the next token %v", cum, cum+next)
	}
}

func TestArgmaxFirstOnTies(t *testing.T) {
	for _, tc := range []struct {
		s    []float32
		want int
	}{
		{[]float32{1, 3, 3, 2}, 1},
		{[]float32{-5}, 0},
		{[]float32{float32(math.Inf(-1)), -1e30, -1e30}, 1},
		{[]float32{2, 2}, 0},
	} {
		if got := argmax(tc.s); got != tc.want {
			t.Errorf("argmax(%v) = %d, want %d", tc.s, got, tc.want)
		}
	}
	// Temperature 0 is argmax and ignores top-p.
	c := newChooser(0, 0.5, true, rand.New(rand.NewPCG(1, 0)))
	if id, err := c.choose([]float32{0.1, 0.7, 0.7, 0.2}); err != nil || id != 1 {
		t.Errorf("greedy choice %d (%v), want 1", id, err)
	}
}

// frequencies draws n tokens with c from logits.
func frequencies(t *testing.T, c *chooser, logits []float32, n int) []float64 {
	t.Helper()
	f := make([]float64, len(logits))
	for i := 0; i < n; i++ {
		id, err := c.choose(logits)
		if err != nil {
			t.Fatal(err)
		}
		f[id] += 1 / float64(n)
	}
	return f
}

func TestChooserDistributions(t *testing.T) {
	const n = 40000
	rng := func() *rand.Rand { return rand.New(rand.NewPCG(42, 0)) }
	for _, tc := range []struct {
		name   string
		c      *chooser
		logits []float32
		want   []float64
	}{
		{"categorical", newChooser(1, 0, false, rng()), logitsOf(0.5, 0.3, 0.2), []float64{0.5, 0.3, 0.2}},
		// beta = 1/0.5 = 2 squares the probabilities: 1:4 -> 0.2 0.8.
		{"temperature 0.5", newChooser(0.5, 0, false, rng()), logitsOf(1.0/3, 2.0/3), []float64{0.2, 0.8}},
		// temperature 2 takes square roots: 1:9 -> 1:3.
		{"temperature 2", newChooser(2, 0, false, rng()), logitsOf(0.1, 0.9), []float64{0.25, 0.75}},
		// the kept tokens 0.5 and 0.3 renormalised: 0.625 0.375.
		{"nucleus", newChooser(1, 0.85, true, rng()), logitsOf(0.3, 0.2, 0.5), []float64{0.375, 0, 0.625}},
		{"nucleus crossing", newChooser(1, 0.75, true, rng()), logitsOf(0.3, 0.2, 0.5), []float64{0, 0, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := frequencies(t, tc.c, tc.logits, n)
			for i := range got {
				if math.Abs(got[i]-tc.want[i]) > 0.01 {
					t.Errorf("frequencies %v, want %v", got, tc.want)
					break
				}
			}
		})
	}
}

func TestChooserBadLogits(t *testing.T) {
	nan := float32(math.NaN())
	inf := float32(math.Inf(1))
	for _, c := range []*chooser{
		newChooser(0, 0, false, nil),
		newChooser(1, 0, false, rand.New(rand.NewPCG(1, 0))),
		newChooser(1, 0.9, true, rand.New(rand.NewPCG(1, 0))),
	} {
		if _, err := c.choose([]float32{0, nan}); err == nil {
			t.Error("NaN logits accepted")
		}
		if c.greedy {
			continue
		}
		if _, err := c.choose([]float32{0, inf}); err == nil {
			t.Error("+Inf logit accepted")
		}
	}
}

func TestPickEdges(t *testing.T) {
	w := []float64{0, 1, 0, 3, 0}
	for _, tc := range []struct {
		u    float64
		want int
	}{{0, 1}, {0.2499, 1}, {0.25, 3}, {0.9999999999, 3}} {
		if got := pick(w, tc.u); got != tc.want {
			t.Errorf("pick(u=%v) = %d, want %d", tc.u, got, tc.want)
		}
	}
}

func BenchmarkChoose(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	s := make([]float32, 50257)
	for i := range s {
		s[i] = float32(r.NormFloat64() * 3)
	}
	for _, bc := range []struct {
		name string
		c    *chooser
	}{
		{"greedy", newChooser(0, 0, false, r)},
		{"categorical", newChooser(1, 0, false, r)},
		{"topp0.9", newChooser(1, 0.9, true, r)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, err := bc.c.choose(s); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

package modelctx

import (
	"context"
	"errors"
	"reflect"
	goruntime "runtime"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/export/arch/gpt2/bpe"

	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/internal/golden"
	"github.com/onnx-tdb/onnx-tdb/modelctx/tokenizer"
)

// goldenSampleHooks are the hooks of a golden sampling case (nil for none).
func goldenSampleHooks(t *testing.T, sc golden.Sampling) *hooks.Hooks {
	t.Helper()
	switch sc.Hooks {
	case "":
		return nil
	case "mlp.post_act fwd hook at layer 1: set neuron 7 to 0 (all positions)":
		h := hooks.New()
		hooks.Edit{Site: hooks.Site{Point: hooks.MLPPostAct, Layer: 1}, Index: []int{7}, Kind: hooks.Ablate}.Register(h)
		return h
	}
	t.Fatalf("golden case %s: unknown hooks %q", sc.Name, sc.Hooks)
	return nil
}

func TestSampleGoldenGreedy(t *testing.T) {
	c := golden.Load(t)
	m := openGolden(t)
	if len(c.Sampling) != 2 {
		t.Fatalf("%d golden sampling cases, want 2", len(c.Sampling))
	}
	for _, sc := range c.Sampling {
		for _, path := range []struct {
			name    string
			noCache bool
		}{{"kv", false}, {"nocache", true}} {
			t.Run(sc.Name+"/"+path.name, func(t *testing.T) {
				opts := []SampleOption{WithNumTokens(len(sc.Tokens[0])), WithTemperature(0)}
				if h := goldenSampleHooks(t, sc); h != nil {
					opts = append(opts, WithHooks(h))
				}
				if path.noCache {
					opts = append(opts, sampleOptionFunc(func(c *sampleConfig) { c.noCache = true }))
				}
				res, err := m.Sample(context.Background(), TextPrompts(sc.Prompts...), opts...)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(res.Tokens, sc.Tokens) {
					t.Errorf("tokens\n got %v\nwant %v", res.Tokens, sc.Tokens)
				}
				if !reflect.DeepEqual(res.Strings, sc.Strings) {
					t.Errorf("strings\n got %q\nwant %q", res.Strings, sc.Strings)
				}
			})
		}
		t.Run(sc.Name+"/tokens", func(t *testing.T) {
			opts := []SampleOption{WithNumTokens(len(sc.Tokens[0])), WithTemperature(0), WithHooks(goldenSampleHooks(t, sc))}
			res, err := m.Sample(context.Background(), TokenPrompts(sc.PromptTokens...), opts...)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(res.Tokens, sc.Tokens) {
				t.Errorf("tokens\n got %v\nwant %v", res.Tokens, sc.Tokens)
			}
		})
	}
}

// TestSampleKVCacheMatchesFullForward checks every step's logits, seen by a
// hook on the logits point, against a forward pass over the whole
// left-padded sequence so far.
func TestSampleKVCacheMatchesFullForward(t *testing.T) {
	m := openGolden(t)
	for _, tc := range []struct {
		name    string
		prompts [][]int
	}{
		{"left-padded batch", [][]int{{15496, 11, 616, 1438, 318}, {818, 7795, 262}}},
		{"one row", [][]int{{7454, 2402, 257, 640}}},
		{"three lengths", [][]int{{818}, {15496, 11, 616, 1438, 318, 11, 616}, {7795, 262}}},
	} {
		prompts := tc.prompts
		t.Run(tc.name, func(t *testing.T) {
			var steps []*hooks.Tensor
			var keyShapes [][]int
			h := hooks.New()
			h.Observe(hooks.Logits, func(_ *hooks.Context, x *hooks.Tensor) error {
				steps = append(steps, x.Clone())
				return nil
			})
			h.Observe(hooks.AttnK, func(_ *hooks.Context, x *hooks.Tensor) error {
				keyShapes = append(keyShapes, append([]int(nil), x.Shape...))
				return nil
			}, hooks.AtLayers(1))
			const n = 6
			res, err := m.Sample(context.Background(), TokenPrompts(prompts...), WithNumTokens(n), WithTemperature(1), WithSeed(3), WithHooks(h))
			if err != nil {
				t.Fatal(err)
			}
			if len(steps) != n || len(keyShapes) != n {
				t.Fatalf("hooks ran %d and %d times, want %d (every step)", len(steps), len(keyShapes), n)
			}
			T0 := 0
			for _, p := range prompts {
				T0 = max(T0, len(p))
			}
			for k := 0; k < n; k++ {
				wantT := 1
				if k == 0 {
					wantT = T0
				}
				if got := steps[k].Shape; got[0] != len(prompts) || got[1] != wantT {
					t.Fatalf("step %d: logits shape %v, want [%d %d V]", k, got, len(prompts), wantT)
				}
				// attn.k sees the whole key axis: cached and new.
				if got := keyShapes[k]; got[1] != T0+k {
					t.Errorf("step %d: attn.k shape %v, want %d keys", k, got, T0+k)
				}
				rows := make([][]int, len(prompts))
				for b := range prompts {
					rows[b] = append(append([]int(nil), prompts[b]...), res.Tokens[b][:k]...)
				}
				full, err := m.Forward(context.Background(), rows, WithPad(PadLeft))
				if err != nil {
					t.Fatal(err)
				}
				var want, got []float32
				V := full.Logits.Shape[2]
				Tf := full.Logits.Shape[1]
				Ts := steps[k].Shape[1]
				maxAbs := 0.0
				for b := range rows {
					want = append(want, full.Logits.Data[(b*Tf+Tf-1)*V:(b*Tf+Tf)*V]...)
					got = append(got, steps[k].Data[(b*Ts+Ts-1)*V:(b*Ts+Ts)*V]...)
				}
				for _, v := range want {
					maxAbs = max(maxAbs, float64(abs32(v)))
				}
				if worst, fail := golden.Diff(got, want, golden.Tolerance(maxAbs)); fail != "" {
					t.Errorf("step %d: cached logits differ from a full forward: %s", k, fail)
				} else {
					t.Logf("step %d: worst |diff| %.2g", k, worst)
				}
			}
		})
	}
}

func abs32(v float32) float32 {
	if v < 0 {
		return -v
	}
	return v
}

func TestSampleSeedReproducible(t *testing.T) {
	m := openGolden(t)
	ctx := context.Background()
	p := TextPrompts("Hello, my name is", "In 1998 the")
	for _, opts := range [][]SampleOption{
		{WithTemperature(1)},
		{WithTemperature(0.7), WithTopP(0.9)},
	} {
		run := func(seed uint64) *SampleResult {
			res, err := m.Sample(ctx, p, append([]SampleOption{WithNumTokens(12), WithSeed(seed)}, opts...)...)
			if err != nil {
				t.Fatal(err)
			}
			return res
		}
		a, b, c := run(7), run(7), run(8)
		if !reflect.DeepEqual(a, b) {
			t.Errorf("same seed, different samples:\n%v\n%v", a.Tokens, b.Tokens)
		}
		if reflect.DeepEqual(a.Tokens, c.Tokens) {
			t.Errorf("seeds 7 and 8 gave the same samples %v", a.Tokens)
		}
		// Both paths draw the same numbers from the same logits.
		nc, err := m.Sample(ctx, p, append([]SampleOption{WithNumTokens(12), WithSeed(7), sampleOptionFunc(func(c *sampleConfig) { c.noCache = true })}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(a.Tokens, nc.Tokens) {
			t.Errorf("cache-free path differs:\n%v\n%v", a.Tokens, nc.Tokens)
		}
	}
}

// forceTokenAt returns hooks that make row row choose token id at step
// step (by raising its logit), counting steps by the calls.
func forceTokenAt(row, step, id int) (*hooks.Hooks, *int) {
	calls := 0
	h := hooks.New()
	h.Add(hooks.Logits, func(_ *hooks.Context, x *hooks.Tensor) (*hooks.Tensor, error) {
		if calls == step {
			T, V := x.Shape[1], x.Shape[2]
			x.Data[(row*T+T-1)*V+id] = 1e4
		}
		calls++
		return x, nil
	})
	return h, &calls
}

func TestSampleStopAtEOT(t *testing.T) {
	m := openGolden(t)
	ctx := context.Background()
	tok, err := bpe.GPT2()
	if err != nil {
		t.Fatal(err)
	}
	eot := tok.EOT()
	p := TextPrompts("Hello, my name is", "In 1998 the")
	h, _ := forceTokenAt(0, 2, eot)
	plain, err := m.Sample(ctx, p, WithNumTokens(6), WithSeed(1), WithHooks(h))
	if err != nil {
		t.Fatal(err)
	}
	h, _ = forceTokenAt(0, 2, eot)
	var streamed []SampledToken
	stop, err := m.Sample(ctx, p, WithNumTokens(6), WithSeed(1), WithHooks(h), WithStopAtEOT(),
		WithOnToken(func(st SampledToken) error { streamed = append(streamed, st); return nil }))
	if err != nil {
		t.Fatal(err)
	}
	if plain.Tokens[0][2] != eot {
		t.Fatalf("hook did not force <|endoftext|>: %v", plain.Tokens[0])
	}
	if !reflect.DeepEqual(stop.Tokens[0], plain.Tokens[0][:3]) {
		t.Errorf("row 0 with stop: %v, want %v", stop.Tokens[0], plain.Tokens[0][:3])
	}
	if !reflect.DeepEqual(stop.Tokens[1], plain.Tokens[1]) {
		t.Errorf("row 1 with stop: %v, want %v (unchanged)", stop.Tokens[1], plain.Tokens[1])
	}
	if want := " mimic Theory" + bpe.EndOfText; stop.Strings[0][len(stop.Strings[0])-len(bpe.EndOfText):] != bpe.EndOfText {
		t.Errorf("row 0 string %q does not end with <|endoftext|> (like %q)", stop.Strings[0], want)
	}
	if len(streamed) != 3+6 {
		t.Errorf("streamed %d tokens, want 9", len(streamed))
	}
	for i, st := range streamed {
		if st.ID != stop.Tokens[st.Row][st.Step] || st.Text == "" {
			t.Errorf("streamed token %d: %+v does not match the result", i, st)
		}
	}

	// Every row stopped: the call ends early.
	h, calls := forceTokenAt(0, 1, eot)
	one, err := m.Sample(ctx, TextPrompts("Once upon a time"), WithNumTokens(6), WithTemperature(0), WithHooks(h), WithStopAtEOT())
	if err != nil {
		t.Fatal(err)
	}
	if len(one.Tokens[0]) != 2 || one.Tokens[0][1] != eot || *calls != 2 {
		t.Errorf("single row: tokens %v after %d steps, want 2 ending in <|endoftext|> after 2 steps", one.Tokens[0], *calls)
	}
}

func TestSampleOnTokenStop(t *testing.T) {
	m := openGolden(t)
	n := 0
	res, err := m.Sample(context.Background(), TextPrompts("Once upon a time"), WithNumTokens(8), WithTemperature(0),
		WithOnToken(func(SampledToken) error {
			n++
			if n == 3 {
				return ErrStop
			}
			return nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Tokens[0]) != 3 || len(res.Strings) != 1 {
		t.Errorf("after ErrStop at the third token: %v %q", res.Tokens, res.Strings)
	}
	boom := errors.New("boom")
	_, err = m.Sample(context.Background(), TextPrompts("Once upon a time"), WithTemperature(0),
		WithOnToken(func(SampledToken) error { return boom }))
	if !errors.Is(err, boom) {
		t.Errorf("callback error: got %v", err)
	}
}

func TestSampleErrors(t *testing.T) {
	m := openGolden(t)
	ctx := context.Background()
	long := make([]int, 60)
	for i := range long {
		long[i] = 100 + i
	}
	// The golden model's context window is 64: 60 + 5 - 1 fits, 60 + 6 - 1 does not.
	if _, err := m.Sample(ctx, TokenPrompts(long), WithNumTokens(5), WithTemperature(0)); err != nil {
		t.Errorf("60 tokens + 5 in a window of 64: %v", err)
	}
	for _, tc := range []struct {
		name string
		p    Prompts
		opts []SampleOption
		want error
	}{
		{"too long", TokenPrompts(long, []int{1}), []SampleOption{WithNumTokens(6)}, ErrTooLong},
		{"prompt too long", TokenPrompts(make([]int, 65)), []SampleOption{WithNumTokens(1)}, ErrTooLong},
		{"token too big", TokenPrompts([]int{1, 50257}), nil, ErrTokenOutOfRange},
		{"negative token", TokenPrompts([]int{-1}), nil, ErrTokenOutOfRange},
		{"empty batch", TokenPrompts(), nil, ErrEmptyBatch},
		{"empty row", TokenPrompts([]int{1}, []int{}), nil, ErrEmptyBatch},
		{"empty text", TextPrompts(""), nil, ErrEmptyBatch},
		{"no prompts", Prompts{}, nil, ErrEmptyBatch},
		{"text and tokens", Prompts{Text: []string{"a"}, Tokens: [][]int{{1}}}, nil, ErrBadSampleOption},
		{"eot in text", TextPrompts("a<|endoftext|>b"), nil, tokenizer.ErrDisallowedSpecial},
		{"negative count", TextPrompts("a"), []SampleOption{WithNumTokens(-1)}, ErrBadSampleOption},
		{"negative temperature", TextPrompts("a"), []SampleOption{WithTemperature(-1)}, ErrBadSampleOption},
		{"top-p above 1", TextPrompts("a"), []SampleOption{WithTopP(1.5)}, ErrBadSampleOption},
		{"capture", TextPrompts("a"), []SampleOption{Capture(AllPoints)}, ErrBadSampleOption},
		{"right padding", TextPrompts("a"), []SampleOption{WithPad(PadRight)}, ErrBadSampleOption},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := m.Sample(ctx, tc.p, tc.opts...)
			if !errors.Is(err, tc.want) {
				t.Errorf("got %v, want %v", err, tc.want)
			}
		})
	}
	res, err := m.Sample(ctx, TextPrompts("a", "bc"), WithNumTokens(0))
	if err != nil || len(res.Tokens) != 2 || len(res.Tokens[0]) != 0 || res.Strings[1] != "" {
		t.Errorf("zero tokens: %+v, %v", res, err)
	}
	// A hook that fails stops sampling with its error.
	h := hooks.New()
	h.Observe(hooks.MLPPostAct, func(*hooks.Context, *hooks.Tensor) error { return errors.New("bad hook") }, hooks.AtLayers(0))
	if _, err := m.Sample(ctx, TextPrompts("a"), WithHooks(h)); !errors.Is(err, hooks.ErrHookFailed) {
		t.Errorf("failing hook: got %v", err)
	}
}

func TestSampleTopPZeroIsGreedy(t *testing.T) {
	m := openGolden(t)
	c := golden.Load(t)
	sc := c.Sampling[0]
	res, err := m.Sample(context.Background(), TextPrompts(sc.Prompts...), WithNumTokens(len(sc.Tokens[0])), WithTemperature(1), WithTopP(0), WithSeed(5))
	if err != nil {
		t.Fatal(err)
	}
	// top-p 0 keeps only the top token: the greedy continuation.
	if !reflect.DeepEqual(res.Tokens, sc.Tokens) {
		t.Errorf("top-p 0:\n got %v\nwant %v", res.Tokens, sc.Tokens)
	}
}

// TestSampleAllocsPerStep bounds what one incremental step allocates: the
// engine's outputs (the new logits and the grown cache, copied out of ONNX
// Runtime) and small bookkeeping, nothing that grows with the prompt's
// logits or is copied twice. It logs the figures.
func TestSampleAllocsPerStep(t *testing.T) {
	m := openGolden(t)
	ctx := context.Background()
	p := TextPrompts("Hello, my name is", "In 1998 the")
	measure := func(n int) (objects, bytes float64) {
		var before, after goruntime.MemStats
		goruntime.ReadMemStats(&before)
		const runs = 3
		for i := 0; i < runs; i++ {
			if _, err := m.Sample(ctx, p, WithNumTokens(n), WithSeed(1)); err != nil {
				t.Fatal(err)
			}
		}
		goruntime.ReadMemStats(&after)
		return float64(after.Mallocs-before.Mallocs) / runs, float64(after.TotalAlloc-before.TotalAlloc) / runs
	}
	measure(2) // plans and sessions
	o8, b8 := measure(8)
	o24, b24 := measure(24)
	objects, bytes := (o24-o8)/16, (b24-b8)/16
	// Per step: logits [B,1,V] and the cache of every layer, [B,~Tk,D] for K and V.
	man := m.Manifest()
	B, Tk := 2, 5+16
	want := float64(4 * (B*man.Config.NVocab + 2*man.Config.NLayers*B*Tk*man.Config.DModel))
	t.Logf("per incremental step: %.0f allocations, %.0f bytes (logits + cache: %.0f bytes)", objects, bytes, want)
	if objects > 300 {
		t.Errorf("%.0f allocations per step, want at most 300", objects)
	}
	if bytes > 2*want {
		t.Errorf("%.0f bytes allocated per step, want at most twice the step's outputs (%.0f)", bytes, want)
	}
}

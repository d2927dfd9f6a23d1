package modelctx

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"

	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/modelctx/tokenizer"
)

// Errors of sampling.
var (
	// ErrBadSampleOption is returned for an option value Sample cannot use
	// (a negative token count or temperature, top-p outside [0,1], ...).
	ErrBadSampleOption = errors.New("bad sampling option")
	// ErrBadLogits is returned when the model's logits cannot be sampled
	// (NaN, or an infinite largest logit).
	ErrBadLogits = errors.New("logits cannot be sampled")
	// ErrNotCausalLM is returned by Sample for a model whose manifest does
	// not name a tokens input and a [B,T,V] logits output.
	ErrNotCausalLM = errors.New("model does not map tokens to next-token logits")
	// ErrStop may be returned by a WithOnToken callback to end sampling
	// early; Sample then returns what was sampled so far and no error.
	ErrStop = errors.New("stop sampling")
)

// Prompts is what Sample continues: texts, encoded with the model's
// tokenizer the way the original's sample does (tokenizer.EncodeOrdinary,
// which refuses a literal <|endoftext|>), or rows of token ids. Set one of
// the two fields. Rows of different lengths are left-padded.
type Prompts struct {
	Text   []string
	Tokens [][]int
}

// TextPrompts makes Prompts from texts.
func TextPrompts(texts ...string) Prompts { return Prompts{Text: texts} }

// TokenPrompts makes Prompts from token rows.
func TokenPrompts(rows ...[]int) Prompts { return Prompts{Tokens: rows} }

// SampleResult holds the continuations only (not the prompts), one row per
// prompt. Each string is built by decoding the row's tokens one at a time
// (so a token holding part of a UTF-8 character adds U+FFFD), as in the
// original; Strings is nil when the model has no tokenizer.
type SampleResult struct {
	Tokens  [][]int  `json:"tokens"`
	Strings []string `json:"strings"`
}

// SampledToken is one chosen token, as handed to a WithOnToken callback.
type SampledToken struct {
	Row  int    // prompt (batch row) index
	Step int    // index of the token in the row's continuation
	ID   int    // token id
	Text string // tokenizer.DecodeToken(ID); "" without a tokenizer
}

// SampleOption configures Sample. WithHooks is also a SampleOption: its
// hooks run on every step.
type SampleOption interface{ applySample(*sampleConfig) }

type sampleOptionFunc func(*sampleConfig)

func (f sampleOptionFunc) applySample(c *sampleConfig) { f(c) }

// applySample lets forward options configure Sample. Only WithHooks
// applies: prompts are always left-padded (WithPad(PadRight) is refused),
// and so is Capture (observe the points with hooks instead).
func (o ForwardOption) applySample(c *sampleConfig) { o(&c.fwd) }

type sampleConfig struct {
	fwd         forwardConfig
	numTokens   int
	temperature float64
	topP        float64
	useTopP     bool
	seed        uint64
	useSeed     bool
	stopAtEOT   bool
	onToken     func(SampledToken) error
	// noCache forces the cache-free path (tests compare both paths).
	noCache bool
}

// WithNumTokens sets how many tokens to sample per row (default 5, as the
// original).
func WithNumTokens(n int) SampleOption {
	return sampleOptionFunc(func(c *sampleConfig) { c.numTokens = n })
}

// WithTemperature sets the temperature (default 1). 0 takes the most likely
// token (the first on ties) and ignores top-p.
func WithTemperature(t float64) SampleOption {
	return sampleOptionFunc(func(c *sampleConfig) { c.temperature = t })
}

// WithTopP turns on nucleus sampling with threshold p in [0,1] (default
// off): the most likely tokens whose cumulative probability stays within
// max(p, p_top) are kept, so the token that crosses p is excluded and the
// top token is always kept.
func WithTopP(p float64) SampleOption {
	return sampleOptionFunc(func(c *sampleConfig) { c.topP, c.useTopP = p, true })
}

// WithSeed makes sampling reproducible: the same seed, model, prompts and
// options give the same tokens (math/rand/v2's PCG seeded with (seed, 0)).
// Without it each call draws a random seed. Greedy sampling draws nothing.
func WithSeed(seed uint64) SampleOption {
	return sampleOptionFunc(func(c *sampleConfig) { c.seed, c.useSeed = seed, true })
}

// WithStopAtEOT ends each row at its first <|endoftext|> (kept as the row's
// last token), and the whole call once every row has stopped. A stopped row
// is still computed until then (its samples fed back and dropped), so each
// row is exactly a prefix of what the same call without this option gives,
// and hooks keep seeing every row. The original has no stop condition.
func WithStopAtEOT() SampleOption {
	return sampleOptionFunc(func(c *sampleConfig) { c.stopAtEOT = true })
}

// WithOnToken calls fn with each token as soon as it is chosen (for
// streaming): once per step for each row that has not stopped, in row
// order. An error from fn ends sampling and is returned, except ErrStop,
// which ends it with the result so far.
func WithOnToken(fn func(SampledToken) error) SampleOption {
	return sampleOptionFunc(func(c *sampleConfig) { c.onToken = fn })
}

func (c *sampleConfig) check() error {
	switch {
	case c.numTokens < 0:
		return fmt.Errorf("%w: %d tokens", ErrBadSampleOption, c.numTokens)
	case math.IsNaN(c.temperature) || c.temperature < 0 || math.IsInf(c.temperature, 0):
		return fmt.Errorf("%w: temperature %v (want a finite value >= 0)", ErrBadSampleOption, c.temperature)
	case c.useTopP && !(c.topP >= 0 && c.topP <= 1):
		return fmt.Errorf("%w: top-p %v (want 0..1)", ErrBadSampleOption, c.topP)
	case c.fwd.pad != PadLeft:
		return fmt.Errorf("%w: Sample always left-pads its prompts (WithPad does not apply)", ErrBadSampleOption)
	case c.fwd.capture != nil:
		return fmt.Errorf("%w: Capture does not apply to Sample (observe the points with hooks, which run on every step)", ErrBadSampleOption)
	}
	return nil
}

// Sample continues each prompt by NumTokens tokens with the original's
// rules (docs/behaviour.md §1.6): prompts are left-padded into one batch; each step runs
// the model, multiplies the last position's logits by
// 1/max(temperature, 1e-10) in float32 and chooses a token (argmax at
// temperature 0, nucleus sampling with WithTopP, plain categorical
// otherwise); the chosen tokens are fed back and the last one is never fed.
// Hooks given with WithHooks run on every step (their registrations are read
// at each step).
//
// Models with a KV cache (the native architectures' exports) run the prompt
// once and then only the new token of each row, keeping the cache where
// ONNX Runtime wrote it, one pair of tensors per layer; hooks on attn.k, attn.v and attn.qk_* see the whole key
// axis (cached and new), as in the original. Models without one (a manifest
// with no kv_cache, such as an imported ONNX graph) re-run the whole
// left-padded sequence at every step: the same tokens, slower, and hooks see
// every position at every step. A model without a tokens input and logits
// output gives ErrNotCausalLM.
//
// It returns ErrTooLong before running anything when the longest prompt
// plus the tokens fed back would exceed the context window, and
// ErrTokenOutOfRange, ErrEmptyBatch or ErrBadSampleOption for bad input.
func (t *Transformer) Sample(ctx context.Context, p Prompts, opts ...SampleOption) (*SampleResult, error) {
	c := sampleConfig{numTokens: 5, temperature: 1, fwd: forwardConfig{pad: PadLeft}}
	for _, o := range opts {
		o.applySample(&c)
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	if t.man.Inputs.Tokens == "" || t.man.Inputs.Logits == "" {
		return nil, fmt.Errorf("%w (model %s)", ErrNotCausalLM, t.man.Name)
	}
	tok, _ := t.sampleTokenizer()
	rows, err := t.promptRows(p, tok)
	if err != nil {
		return nil, err
	}
	if err := t.checkRows(rows); err != nil {
		return nil, err
	}
	T0 := 0
	for _, r := range rows {
		T0 = max(T0, len(r))
	}
	if n := t.man.Config.NCtx; n > 0 && c.numTokens > 0 && T0+c.numTokens-1 > n {
		return nil, fmt.Errorf("%w: the longest prompt has %d tokens and %d more would be fed back (%d in all), the model's context window is %d",
			ErrTooLong, T0, c.numTokens-1, T0+c.numTokens-1, n)
	}
	eot := -1
	if c.stopAtEOT {
		if tok == nil {
			return nil, fmt.Errorf("%w: stopping at <|endoftext|> needs the model's tokenizer", ErrNoTokenizer)
		}
		eot = tok.EOT()
	}
	seed := c.seed
	if !c.useSeed {
		seed = rand.Uint64()
	}
	s := &sampling{
		cfg:  &c,
		tok:  tok,
		eot:  eot,
		pick: newChooser(c.temperature, c.topP, c.useTopP, rand.New(rand.NewPCG(seed, 0))),
	}
	var st stepper
	if t.hasKVCache() && !c.noCache {
		st = newKVStepper(t, rows, c.numTokens)
	} else {
		st = &fullStepper{t: t, rows: cloneRows(rows)}
	}
	defer st.close()
	if err := s.run(ctx, st, len(rows)); err != nil {
		return nil, fmt.Errorf("sample: %w", err)
	}
	return s.res, nil
}

// hasKVCache reports whether incremental steps can feed only new tokens:
// the model takes and returns a cache, the pad flags over the cached tokens
// and each row's length so far (for the positions).
func (t *Transformer) hasKVCache() bool {
	io := t.man.Inputs
	return len(t.man.KVCache) > 0 && io.Pad != "" && io.PrevLens != ""
}

// sampleTokenizer is the model's tokenizer, or nil when it has none.
func (t *Transformer) sampleTokenizer() (tokenizer.Tokenizer, error) {
	return t.Tokenizer()
}

// promptRows turns prompts into token rows (copies).
func (t *Transformer) promptRows(p Prompts, tok tokenizer.Tokenizer) ([][]int, error) {
	switch {
	case p.Text != nil && p.Tokens != nil:
		return nil, fmt.Errorf("%w: prompts as text and as tokens at once", ErrBadSampleOption)
	case p.Tokens != nil:
		return cloneRows(p.Tokens), nil
	case len(p.Text) == 0:
		return nil, ErrEmptyBatch
	case tok == nil:
		return nil, fmt.Errorf("%w (model %s)", ErrNoTokenizer, t.man.Name)
	}
	rows := make([][]int, len(p.Text))
	for i, s := range p.Text {
		ids, err := tok.EncodeOrdinary(s)
		if err != nil {
			return nil, fmt.Errorf("prompt %d: %w", i, err)
		}
		rows[i] = ids
	}
	return rows, nil
}

func cloneRows(rows [][]int) [][]int {
	out := make([][]int, len(rows))
	for i, r := range rows {
		out[i] = append([]int(nil), r...)
	}
	return out
}

// stepper runs the model for one sampling step.
type stepper interface {
	// step feeds the tokens chosen at the previous step (nil at the first
	// step, which runs the prompts) and returns the next-token logits of
	// every row, [B*V] row-major, valid until the next call.
	step(ctx context.Context, fed []int, hs []*hooks.Hooks) (logits []float32, V int, err error)
	// close frees what the stepper holds between steps.
	close()
}

// sampling is the state of one Sample call.
type sampling struct {
	cfg  *sampleConfig
	tok  tokenizer.Tokenizer
	eot  int
	pick *chooser
	res  *SampleResult
}

func (s *sampling) run(ctx context.Context, st stepper, B int) error {
	s.res = &SampleResult{Tokens: make([][]int, B)}
	var text []strings.Builder
	if s.tok != nil {
		text = make([]strings.Builder, B)
	}
	for b := range s.res.Tokens {
		s.res.Tokens[b] = make([]int, 0, s.cfg.numTokens)
	}
	defer func() {
		if text != nil {
			s.res.Strings = make([]string, B)
			for b := range text {
				s.res.Strings[b] = text[b].String()
			}
		}
	}()
	stopped := make([]bool, B)
	live := B
	var fed []int
	for step := 0; step < s.cfg.numTokens && live > 0; step++ {
		logits, V, err := st.step(ctx, fed, s.cfg.fwd.hooks)
		if err != nil {
			return fmt.Errorf("step %d: %w", step, err)
		}
		if fed == nil {
			fed = make([]int, B)
		}
		for b := 0; b < B; b++ {
			id, err := s.pick.choose(logits[b*V : (b+1)*V])
			if err != nil {
				return fmt.Errorf("step %d row %d: %w", step, b, err)
			}
			fed[b] = id
			if stopped[b] {
				continue
			}
			s.res.Tokens[b] = append(s.res.Tokens[b], id)
			piece := ""
			if text != nil {
				if piece, err = s.tok.DecodeToken(id); err != nil {
					return fmt.Errorf("step %d row %d: %w", step, b, err)
				}
				text[b].WriteString(piece)
			}
			if id == s.eot {
				stopped[b] = true
				live--
			}
			if s.cfg.onToken != nil {
				if err := s.cfg.onToken(SampledToken{Row: b, Step: step, ID: id, Text: piece}); err != nil {
					if errors.Is(err, ErrStop) {
						return nil
					}
					return fmt.Errorf("on-token callback: %w", err)
				}
			}
		}
	}
	return nil
}

package golden

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// Tensor describes one reference .bin file: raw little-endian float32, C order.
type Tensor struct {
	File    string  `json:"file"`
	Shape   []int   `json:"shape"`
	MaxAbs  float64 `json:"max_abs"`
	NNegInf int     `json:"n_neg_inf"`
}

// Activation is the value at one hook point (Layer is nil for once points).
type Activation struct {
	Hook  string `json:"hook"`
	Layer *int   `json:"layer"`
	Tensor
}

// SAEResult holds an SAE's latents and reconstruction for one input.
type SAEResult struct {
	SAE   string `json:"sae"`
	Input struct {
		Hook  string `json:"hook"`
		Layer int    `json:"layer"`
	} `json:"input"`
	Latents        Tensor `json:"latents"`
	Reconstruction Tensor `json:"reconstruction"`
}

// Intervention is a hook edit and the last-position logits it produces.
type Intervention struct {
	Name       string `json:"name"`
	What       string `json:"what"`
	Latent     *int   `json:"latent"`
	LogitsLast Tensor `json:"logits_last"`
}

// Grads holds d logits[batch, position, token] / d value at each hook point.
type Grads struct {
	Scalar string `json:"scalar"`
	Target struct {
		Batch    int `json:"batch"`
		Position int `json:"position"`
		Token    int `json:"token"`
	} `json:"target"`
	Tensors []Activation `json:"tensors"`
}

// Input is one golden input with everything recorded for it.
type Input struct {
	Name             string         `json:"name"`
	Text             string         `json:"text"`
	Rows             [][]int        `json:"rows"`
	PadSide          *string        `json:"pad_side"`
	TokensPadded     [][]int        `json:"tokens_padded"`
	Pad              [][]bool       `json:"pad"`
	Positions        [][]int        `json:"positions"`
	LastRealPosition []int          `json:"last_real_position"`
	Logits           *Tensor        `json:"logits"`
	LogitsLast       *Tensor        `json:"logits_last"`
	Activations      []Activation   `json:"activations"`
	SAE              []SAEResult    `json:"sae"`
	Interventions    []Intervention `json:"interventions"`
	Grads            *Grads         `json:"grads"`
}

// SAEInfo describes one SAE file of the golden set.
type SAEInfo struct {
	File       string `json:"file"`
	Layer      int    `json:"layer"`
	Location   string `json:"location"`
	NInputs    int    `json:"n_inputs"`
	NLatents   int    `json:"n_latents"`
	Activation string `json:"activation"`
	K          *int   `json:"k"`
}

// Sampling is one greedy decoding case.
type Sampling struct {
	Name         string   `json:"name"`
	Prompts      []string `json:"prompts"`
	PromptTokens [][]int  `json:"prompt_tokens"`
	Hooks        string   `json:"hooks"`
	Tokens       [][]int  `json:"tokens"`
	Strings      []string `json:"strings"`
}

// TokenizerCase is one string and its GPT-2 token ids.
type TokenizerCase struct {
	Text           string    `json:"text"`
	IDs            []int     `json:"ids"`
	AllowedSpecial *[]string `json:"allowed_special"`
}

// Cases is cases.json.
type Cases struct {
	Model struct {
		Dir    string `json:"dir"`
		Config struct {
			Enc       string  `json:"enc"`
			CtxWindow int     `json:"ctx_window"`
			DModel    int     `json:"d_model"`
			NLayers   int     `json:"n_layers"`
			MAttn     float64 `json:"m_attn"`
			NHeads    int     `json:"n_heads"`
			MMLP      float64 `json:"m_mlp"`
		} `json:"config"`
		StateDict map[string][]int `json:"state_dict"`
	} `json:"model"`
	HookLocations []string           `json:"hook_locations"`
	SAEs          map[string]SAEInfo `json:"saes"`
	PatchVector   Tensor             `json:"interventions_patch_vector"`
	Inputs        []Input            `json:"inputs"`
	Sampling      []Sampling         `json:"sampling"`
	Tokenizer     struct {
		Cases []TokenizerCase `json:"cases"`
	} `json:"tokenizer"`
}

// Dir is the golden folder inside testdata (always present in a checkout).
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "testdata", "golden")
}

// SharedDir is the shared golden set beside the checkout, which holds the larger
// extended sets (model_views/, foreign/). ok is false when it is absent.
func SharedDir() (string, bool) {
	if d := os.Getenv("ONNX_TDB_SHARED_GOLDEN"); d != "" {
		_, err := os.Stat(d)
		return d, err == nil
	}
	d := filepath.Join(Dir(), "..", "..", "..", "shared", "golden")
	if _, err := os.Stat(filepath.Join(d, "cases.json")); err != nil {
		return "", false
	}
	return d, true
}

// RequireShared returns the shared golden folder, or skips the test with a
// visible message when it is missing.
func RequireShared(t testing.TB, sub string) string {
	t.Helper()
	d, ok := SharedDir()
	if ok {
		if _, err := os.Stat(filepath.Join(d, sub)); err == nil {
			return filepath.Join(d, sub)
		}
	}
	t.Skipf("SKIP: extended golden set %q not found (the shared golden set/%s or $ONNX_TDB_SHARED_GOLDEN); this test needs it", sub, sub)
	return ""
}

// Load reads cases.json.
func Load(t testing.TB) *Cases {
	t.Helper()
	c, err := LoadCases()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// LoadCases reads cases.json without a testing.TB.
func LoadCases() (*Cases, error) {
	b, err := os.ReadFile(filepath.Join(Dir(), "cases.json"))
	if err != nil {
		return nil, err
	}
	var c Cases
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("parse cases.json: %w", err)
	}
	return &c, nil
}

// Input returns the golden input with this name.
func (c *Cases) Input(name string) *Input {
	for i := range c.Inputs {
		if c.Inputs[i].Name == name {
			return &c.Inputs[i]
		}
	}
	return nil
}

// ModelDir is the golden TDB checkpoint folder.
func ModelDir() string { return filepath.Join(Dir(), "model") }

// Read loads a .bin tensor (path relative to the golden folder).
func Read(t testing.TB, tn Tensor) []float32 {
	t.Helper()
	v, err := ReadFile(filepath.Join(Dir(), tn.File))
	if err != nil {
		t.Fatal(err)
	}
	if n := Numel(tn.Shape); n != len(v) {
		t.Fatalf("%s: %d values, shape %v wants %d", tn.File, len(v), tn.Shape, n)
	}
	return v
}

// ReadFile loads raw little-endian float32 values.
func ReadFile(path string) ([]float32, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b)%4 != 0 {
		return nil, errors.New(path + ": size is not a multiple of 4")
	}
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v, nil
}

// Numel is the product of a shape.
func Numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// Tolerance is the parity rule of the golden README: 1e-4 + 2e-5 * max|want|.
func Tolerance(maxAbs float64) float64 { return 1e-4 + 2e-5*maxAbs }

// Diff compares got with want: the -inf pattern must match exactly, every
// other entry within tol. It returns the worst absolute difference and a
// description of the first failure ("" when they match).
func Diff(got, want []float32, tol float64) (worst float64, failure string) {
	if len(got) != len(want) {
		return math.Inf(1), fmt.Sprintf("length %d, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := float64(got[i]), float64(want[i])
		if math.IsInf(w, 0) || math.IsInf(g, 0) || math.IsNaN(g) || math.IsNaN(w) {
			if g != w && failure == "" {
				failure = fmt.Sprintf("index %d: got %v, want %v", i, g, w)
			}
			continue
		}
		d := math.Abs(g - w)
		if d > worst {
			worst = d
		}
		if d > tol && failure == "" {
			failure = fmt.Sprintf("index %d: got %v, want %v (|diff| %.3g > tol %.3g)", i, g, w, d, tol)
		}
	}
	return worst, failure
}

// Check fails the test when got and the reference tensor differ beyond the tolerance.
func Check(t testing.TB, name string, got []float32, tn Tensor) {
	t.Helper()
	want := Read(t, tn)
	if _, fail := Diff(got, want, Tolerance(tn.MaxAbs)); fail != "" {
		t.Errorf("%s: %s", name, fail)
	}
}

// LastLogits picks each row's logits at its last real position from logits
// of shape [B,T,V] (how the golden logits_last were taken).
func LastLogits(shape []int, data []float32, last []int) []float32 {
	T, V := shape[1], shape[2]
	out := make([]float32, 0, len(last)*V)
	for b, p := range last {
		out = append(out, data[(b*T+p)*V:(b*T+p+1)*V]...)
	}
	return out
}

// LlamaCases is foreign_llama/cases.json: a Llama-style decoder with a hook
// map in its own point names, and torch's values at each point.
type LlamaCases struct {
	Inputs []struct {
		Name        string  `json:"name"`
		Tokens      [][]int `json:"tokens"`
		Logits      Tensor  `json:"logits"`
		Activations []struct {
			Point string `json:"point"`
			Layer *int   `json:"layer"`
			Tensor
		} `json:"activations"`
		Interventions []struct {
			Name   string `json:"name"`
			Layer  int    `json:"layer"`
			Unit   int    `json:"unit"`
			Logits Tensor `json:"logits"`
		} `json:"interventions"`
	} `json:"inputs"`
}

// LoadLlama reads foreign_llama/cases.json, its tensor files made relative
// to the golden folder (as Read wants them).
func LoadLlama(t testing.TB) *LlamaCases {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(Dir(), "foreign_llama", "cases.json"))
	if err != nil {
		t.Fatal(err)
	}
	var c LlamaCases
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	fix := func(tn *Tensor) { tn.File = filepath.Join("foreign_llama", tn.File) }
	for i := range c.Inputs {
		in := &c.Inputs[i]
		fix(&in.Logits)
		for j := range in.Activations {
			fix(&in.Activations[j].Tensor)
		}
		for j := range in.Interventions {
			fix(&in.Interventions[j].Logits)
		}
	}
	return &c
}

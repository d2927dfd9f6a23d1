package sae

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Errors of reading SAELens folders.
var (
	ErrBadCfg           = errors.New("bad SAELens cfg.json")
	ErrUnknownFamily    = errors.New("unknown SAE architecture")
	ErrUnknownNorm      = errors.New("unknown activation normalisation")
	ErrBadSAELensFolder = errors.New("bad SAELens folder")
)

// Families of SAELens SAEs and transcoders (cfg.json "architecture"), and
// upstream sparse_autoencoder's v5 TopK SAEs. The empty family is TDB's own.
const (
	FamilyTDB                = ""
	FamilyStandard           = "standard"
	FamilyTopK               = "topk"
	FamilyJumpReLU           = "jumprelu"
	FamilyGated              = "gated"
	FamilyTranscoder         = "transcoder"
	FamilySkipTranscoder     = "skip_transcoder"
	FamilyJumpReLUTranscoder = "jumprelu_transcoder"
	FamilyOpenAIV5           = "openai-v5"
)

// Input normalisations (cfg.json "normalize_activations"). NormNone is
// also what expected_average_only_in is on a loaded folder: SAELens keeps
// no factor there (its registry's norm_scaling_factor is folded into the
// weights instead).
const (
	NormNone                  = "none"
	NormExpectedAverageOnlyIn = "expected_average_only_in"
	NormConstantNormRescale   = "constant_norm_rescale"
	NormLayerNorm             = "layer_norm"
)

// Processing is the TransformerLens weight processing an SAE's training
// model had; it decides what a TransformerLens hook name holds.
type Processing struct {
	FoldLN               bool `json:"fold_ln"`
	CenterWritingWeights bool `json:"center_writing_weights"`
	FoldValueBiases      bool `json:"fold_value_biases"`
	CenterUnembed        bool `json:"center_unembed"`
}

// DefaultProcessing is TransformerLens's from_pretrained: every step on.
var DefaultProcessing = Processing{FoldLN: true, CenterWritingWeights: true, FoldValueBiases: true, CenterUnembed: true}

// SiteSpec is where an SAE reads (and a transcoder writes), as its config
// names it in TransformerLens terms.
type SiteSpec struct {
	HookName    string     `json:"hook_name"`
	HookNameOut string     `json:"hook_name_out,omitempty"`
	Layer       int        `json:"layer"` // of hook_name (blocks.L.…); -1 when it has none
	Processing  Processing `json:"processing"`
	Reshape     string     `json:"reshape,omitempty"` // "hook_z": heads flattened
}

// saelensCfg is a cfg.json after the pre-6 forms are brought to 6.x.
type saelensCfg struct {
	Architecture string
	DIn, DSAE    int
	DOut         int
	K            int
	Rescale      bool // rescale_acts_by_decoder_norm
	ApplyBDec    bool
	Norm         string
	DType        string
	Site         SiteSpec
}

var blockLayer = regexp.MustCompile(`^blocks\.(\d+)\.`)

// layerOfHook is L of "blocks.L.…", -1 for names outside the blocks.
func layerOfHook(name string) int {
	m := blockLayer.FindStringSubmatch(name)
	if m == nil {
		return -1
	}
	l, err := strconv.Atoi(m[1])
	if err != nil {
		return -1
	}
	return l
}

// parseSAELensCfg reads a cfg.json in the 6.x form (metadata holding the
// site) or a pre-6 flat one (hook_point or hook_name at the top,
// activation_fn: topk with activation_fn_kwargs.k, a boolean
// normalize_activations, dtype "torch.float32"), as SAELens's
// handle_pre_6_0_config brings them together.
func parseSAELensCfg(b []byte) (*saelensCfg, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCfg, err)
	}
	if raw == nil {
		return nil, fmt.Errorf("%w: not a JSON object", ErrBadCfg)
	}
	flat := map[string]json.RawMessage{}
	for k, v := range raw {
		flat[k] = v
	}
	if md, ok := raw["metadata"]; ok && string(md) != "null" {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(md, &m); err != nil {
			return nil, fmt.Errorf("%w: metadata: %v", ErrBadCfg, err)
		}
		for k, v := range m {
			if _, top := flat[k]; !top {
				flat[k] = v
			}
		}
	}
	c := &saelensCfg{}
	var err error
	get := func(key string, dst any) bool {
		v, ok := flat[key]
		if !ok || string(v) == "null" || err != nil {
			return false
		}
		if e := json.Unmarshal(v, dst); e != nil {
			err = fmt.Errorf("%w: %s: %v", ErrBadCfg, key, e)
			return false
		}
		return true
	}
	get("d_in", &c.DIn)
	get("d_sae", &c.DSAE)
	get("d_out", &c.DOut)
	if !get("architecture", &c.Architecture) {
		c.Architecture = FamilyStandard
	}
	var actFn string
	get("activation_fn", &actFn)
	if actFn == "" {
		get("activation_fn_str", &actFn)
	}
	if c.Architecture == FamilyStandard && actFn == "topk" {
		c.Architecture = FamilyTopK
	}
	get("k", &c.K)
	if c.K == 0 {
		var kw struct {
			K int `json:"k"`
		}
		if get("activation_fn_kwargs", &kw) {
			c.K = kw.K
		}
	}
	get("rescale_acts_by_decoder_norm", &c.Rescale)
	c.ApplyBDec = true
	get("apply_b_dec_to_input", &c.ApplyBDec)
	if err := c.readNorm(flat); err != nil {
		return nil, err
	}
	if !get("dtype", &c.DType) {
		c.DType = "float32"
	}
	if !get("hook_name", &c.Site.HookName) {
		get("hook_point", &c.Site.HookName)
	}
	if !get("hook_name_out", &c.Site.HookNameOut) {
		get("hook_point_out", &c.Site.HookNameOut)
	}
	var reshape string
	get("reshape_activations", &reshape)
	if reshape == "" && strings.HasSuffix(c.Site.HookName, "hook_z") {
		reshape = "hook_z"
	}
	if reshape != "" && reshape != "none" {
		c.Site.Reshape = reshape
	}
	var version string
	get("sae_lens_training_version", &version)
	kwargs := map[string]any{}
	get("model_from_pretrained_kwargs", &kwargs)
	if err != nil {
		return nil, err
	}
	c.Site.Layer = layerOfHook(c.Site.HookName)
	c.Site.Processing = processingOf(version, kwargs)
	return c, c.validate()
}

func (c *saelensCfg) readNorm(flat map[string]json.RawMessage) error {
	c.Norm = NormNone
	v, ok := flat["normalize_activations"]
	if !ok || string(v) == "null" {
		return nil
	}
	var b bool
	if json.Unmarshal(v, &b) == nil {
		if b {
			c.Norm = NormExpectedAverageOnlyIn
		}
		return nil
	}
	if err := json.Unmarshal(v, &c.Norm); err != nil {
		return fmt.Errorf("%w: normalize_activations: %v", ErrBadCfg, err)
	}
	return nil
}

func (c *saelensCfg) validate() error {
	switch c.Architecture {
	case FamilyStandard, FamilyTopK, FamilyJumpReLU, FamilyGated,
		FamilyTranscoder, FamilySkipTranscoder, FamilyJumpReLUTranscoder:
	case "batchtopk", "matryoshka_batchtopk":
		// SAELens saves these for inference as JumpReLU SAEs.
		c.Architecture = FamilyJumpReLU
	default:
		return fmt.Errorf("%w %q (known: standard, topk, jumprelu, gated, transcoder, skip_transcoder, jumprelu_transcoder)", ErrUnknownFamily, c.Architecture)
	}
	switch c.Norm {
	case NormNone, NormExpectedAverageOnlyIn, NormConstantNormRescale, NormLayerNorm:
	case "":
		c.Norm = NormNone
	default:
		return fmt.Errorf("%w %q (known: none, expected_average_only_in, constant_norm_rescale, layer_norm)", ErrUnknownNorm, c.Norm)
	}
	switch strings.TrimPrefix(c.DType, "torch.") {
	case "float32", "float16", "bfloat16", "float64":
	default:
		return fmt.Errorf("%w: dtype %q", ErrBadCfg, c.DType)
	}
	if c.DIn <= 0 || c.DSAE <= 0 || c.DIn > 1<<20 || c.DSAE > 1<<24 {
		return fmt.Errorf("%w: d_in %d, d_sae %d", ErrBadCfg, c.DIn, c.DSAE)
	}
	if c.isTranscoder() {
		if c.DOut == 0 {
			c.DOut = c.DIn
		}
		if c.DOut < 0 || c.DOut > 1<<20 {
			return fmt.Errorf("%w: d_out %d", ErrBadCfg, c.DOut)
		}
		if c.Site.HookNameOut == "" {
			return fmt.Errorf("%w: a %s needs hook_name_out", ErrBadCfg, c.Architecture)
		}
	} else {
		c.DOut = c.DIn
	}
	if c.Architecture == FamilyTopK && (c.K <= 0 || c.K > c.DSAE) {
		return fmt.Errorf("%w: topk k=%d with d_sae %d", ErrBadCfg, c.K, c.DSAE)
	}
	if c.Site.Reshape != "" && c.Site.Reshape != "hook_z" {
		return fmt.Errorf("%w: reshape_activations %q (known: none, hook_z)", ErrBadCfg, c.Site.Reshape)
	}
	return nil
}

func (c *saelensCfg) isTranscoder() bool {
	switch c.Architecture {
	case FamilyTranscoder, FamilySkipTranscoder, FamilyJumpReLUTranscoder:
		return true
	}
	return false
}

// processingOf is the TransformerLens processing an SAE was trained with:
// SAELens's trainer loads from_pretrained_no_processing since 3.19.2
// (absent kwargs: no processing), from_pretrained before (TL's defaults);
// model_from_pretrained_kwargs then override key by key.
func processingOf(version string, kwargs map[string]any) Processing {
	p := DefaultProcessing
	if version != "" && !versionBefore(version, [3]int{3, 19, 2}) {
		p = Processing{}
	}
	set := func(key string, dst *bool) {
		if v, ok := kwargs[key].(bool); ok {
			*dst = v
		}
	}
	set("fold_ln", &p.FoldLN)
	set("center_writing_weights", &p.CenterWritingWeights)
	set("fold_value_biases", &p.FoldValueBiases)
	set("center_unembed", &p.CenterUnembed)
	return p
}

// versionBefore compares a dotted version's first three numbers ("6.18.0",
// "3.19.2rc1") with want; an unreadable version counts as new.
func versionBefore(v string, want [3]int) bool {
	parts := strings.SplitN(strings.TrimPrefix(v, "v"), ".", 4)
	for i := 0; i < 3; i++ {
		n := 0
		if i < len(parts) {
			digits := parts[i]
			for j, r := range digits {
				if r < '0' || r > '9' {
					digits = digits[:j]
					break
				}
			}
			var err error
			if n, err = strconv.Atoi(digits); err != nil {
				return false
			}
		}
		if n != want[i] {
			return n < want[i]
		}
	}
	return false
}

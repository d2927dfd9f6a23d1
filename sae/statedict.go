package sae

import (
	"fmt"

	"github.com/onnx-tdb/onnx-tdb/export/torchpt"
)

// Activation names, as the original writes them in a state dict
// ("activation", and "postact_fn" inside TopK's activation_state_dict).
const (
	ReLU     = "ReLU"
	Identity = "Identity"
	TopK     = "TopK"
	JumpReLU = "JumpReLU" // SAELens jumprelu: ReLU(pre) where pre > threshold
	Gated    = "Gated"    // SAELens gated: a gate and a magnitude path
)

// Activation is the function that turns pre-activations into latents.
type Activation struct {
	Name    string `json:"name"`                 // ReLU, Identity or TopK
	K       int    `json:"k,omitempty"`          // TopK: latents kept per token
	PostAct string `json:"postact_fn,omitempty"` // TopK: ReLU or Identity, applied to the kept values
}

func (a Activation) String() string {
	if a.Name == TopK {
		return fmt.Sprintf("TopK(k=%d, %s)", a.K, a.PostAct)
	}
	return a.Name
}

func (a Activation) validate(nLatents int) error {
	switch a.Name {
	case ReLU, Identity, JumpReLU, Gated:
		return nil
	case TopK:
		if a.K <= 0 || a.K > nLatents {
			return fmt.Errorf("%w: TopK k=%d with %d latents", ErrBadStateDict, a.K, nLatents)
		}
		if a.PostAct != ReLU && a.PostAct != Identity {
			return fmt.Errorf("%w: TopK postact_fn %q (want ReLU or Identity)", ErrBadStateDict, a.PostAct)
		}
		return nil
	}
	return fmt.Errorf("%w: activation %q (want ReLU, Identity or TopK)", ErrBadStateDict, a.Name)
}

// Keys of an SAE state dict (docs/behaviour.md §5.2).
const (
	keyPreBias    = "pre_bias"
	keyEncoder    = "encoder.weight"
	keyLatentBias = "latent_bias"
	keyDecoder    = "decoder.weight"
	keyLastNZ     = "stats_last_nonzero"
	keyFrequency  = "latents_activation_frequency"
	keyMeanSquare = "latents_mean_square"
	keyThreshold  = "threshold"   // JumpReLU [N]
	keyMagEncoder = "mag.weight"  // Gated [N, n]: W_enc ⊙ exp(r_mag), transposed
	keyMagBias    = "mag_bias"    // Gated [N]
	keySkip       = "skip.weight" // skip-transcoders [m, n]
)

// params is an SAE's content in Go memory, checked: what a state dict holds
// and what a converted folder is written from.
type params struct {
	nInputs, nLatents int
	act               Activation
	preBias           []float32 // [n]
	encoder           []float32 // [N, n]
	latentBias        []float32 // [N]
	decoder           []float32 // [n, N]
	frequency         []float32 // [N]; the original's default is ones
	meanSquare        []float32 // [N]; default zeros
	lastNonzero       []int64   // [N]; default zeros
}

// fromStateDict reads an SAE state dict as the original's
// Autoencoder.from_state_dict(sd, strict=False) does: the four parameters
// are required, the three buffers default as in the constructor, extra keys
// (the TopK file's "activation.k" and "activation.postact_fn") are ignored.
// Unlike the original, an unknown activation name is an error, not ReLU.
func fromStateDict(sd *torchpt.StateDict) (*params, error) {
	if sd == nil {
		return nil, fmt.Errorf("%w: nil state dict", ErrBadStateDict)
	}
	enc, err := floatTensor(sd, keyEncoder, 2)
	if err != nil {
		return nil, err
	}
	p := &params{nLatents: enc.Shape[0], nInputs: enc.Shape[1], encoder: enc.F32}
	if p.nLatents == 0 || p.nInputs == 0 {
		return nil, fmt.Errorf("%w: %s has shape %v", ErrBadStateDict, keyEncoder, enc.Shape)
	}
	N, n := p.nLatents, p.nInputs
	for _, want := range []struct {
		key   string
		shape []int
		dst   *[]float32
	}{
		{keyPreBias, []int{n}, &p.preBias},
		{keyLatentBias, []int{N}, &p.latentBias},
		{keyDecoder, []int{n, N}, &p.decoder},
	} {
		t, err := floatTensor(sd, want.key, len(want.shape))
		if err != nil {
			return nil, err
		}
		if err := checkShape(want.key, t.Shape, want.shape); err != nil {
			return nil, err
		}
		*want.dst = t.F32
	}
	if p.frequency, err = optionalFloat(sd, keyFrequency, N, 1); err != nil {
		return nil, err
	}
	if p.meanSquare, err = optionalFloat(sd, keyMeanSquare, N, 0); err != nil {
		return nil, err
	}
	p.lastNonzero = make([]int64, N)
	if t, ok := sd.Tensors[keyLastNZ]; ok {
		if err := checkShape(keyLastNZ, t.Shape, []int{N}); err != nil {
			return nil, err
		}
		switch {
		case t.I64 != nil:
			copy(p.lastNonzero, t.I64)
		case t.F32 != nil:
			for i, v := range t.F32 {
				p.lastNonzero[i] = int64(v)
			}
		}
	}
	if p.act, err = activationOf(sd); err != nil {
		return nil, err
	}
	if err := p.act.validate(N); err != nil {
		return nil, err
	}
	return p, nil
}

func floatTensor(sd *torchpt.StateDict, key string, ndim int) (*torchpt.Tensor, error) {
	t, ok := sd.Tensors[key]
	if !ok {
		if _, isValue := sd.Values[key]; isValue {
			return nil, fmt.Errorf("%w: %s is not a tensor", ErrBadStateDict, key)
		}
		return nil, fmt.Errorf("%w: no %s", ErrBadStateDict, key)
	}
	if t.F32 == nil && t.Numel() > 0 {
		return nil, fmt.Errorf("%w: %s has dtype %s, want a floating type", ErrBadStateDict, key, t.DType)
	}
	if len(t.Shape) != ndim {
		return nil, fmt.Errorf("%w: %s has shape %v, want %d dimensions", ErrBadStateDict, key, t.Shape, ndim)
	}
	return t, nil
}

func checkShape(key string, got, want []int) error {
	if fmt.Sprint(got) != fmt.Sprint(want) {
		return fmt.Errorf("%w: %s has shape %v, want %v", ErrBadStateDict, key, got, want)
	}
	return nil
}

func optionalFloat(sd *torchpt.StateDict, key string, n int, def float32) ([]float32, error) {
	t, ok := sd.Tensors[key]
	if !ok {
		v := make([]float32, n)
		if def != 0 {
			for i := range v {
				v[i] = def
			}
		}
		return v, nil
	}
	if err := checkShape(key, t.Shape, []int{n}); err != nil {
		return nil, err
	}
	if t.F32 == nil {
		return nil, fmt.Errorf("%w: %s has dtype %s, want a floating type", ErrBadStateDict, key, t.DType)
	}
	return t.F32, nil
}

// activationOf reads "activation" (default ReLU) and, for TopK,
// "activation_state_dict" {k, postact_fn}.
func activationOf(sd *torchpt.StateDict) (Activation, error) {
	a := Activation{Name: ReLU}
	if v, ok := sd.Values["activation"]; ok {
		name, ok := v.(string)
		if !ok {
			return a, fmt.Errorf("%w: activation is %T, want a string", ErrBadStateDict, v)
		}
		a.Name = name
	}
	if a.Name != TopK {
		return a, nil
	}
	asd, _ := sd.Values["activation_state_dict"].(map[string]any)
	k, ok := asd["k"].(int64)
	if !ok {
		// The nested keys TopK.state_dict also writes at the top level.
		if k, ok = sd.Values["activation.k"].(int64); !ok {
			return a, fmt.Errorf("%w: TopK activation without an integer k", ErrBadStateDict)
		}
	}
	a.K = int(k)
	a.PostAct = ReLU
	if s, ok := asd["postact_fn"].(string); ok {
		a.PostAct = s
	} else if s, ok := sd.Values["activation.postact_fn"].(string); ok {
		a.PostAct = s
	}
	return a, nil
}

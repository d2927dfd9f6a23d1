package sae

import (
	"errors"
	"fmt"
	"strings"
)

// ErrUnknownAutoencoder is returned for a family name the registry lacks.
var ErrUnknownAutoencoder = errors.New("unknown autoencoder")

// BlobBase is where the public autoencoders are stored.
const BlobBase = "az://openaipublic/sparse-autoencoder"

// Family is a registered autoencoder family: one autoencoder per layer of a
// model, all reading one input (the original's _AUTOENCODER_SPECS entries).
type Family struct {
	Name   string // "ae-mlp-post-act-v4"
	Model  string // "gpt2-small"
	Input  Input
	Dir    string // folder under BlobBase/<model>: "mlp_post_act_v4"
	Layers int    // layers 0..Layers-1
}

// The five gpt2-small families of the original. N = 32768 latents each;
// n = 3072 for mlp_post_act, 768 for the residual deltas.
var families = []Family{
	{Name: "ae-mlp-post-act-v1", Model: "gpt2-small", Input: MLPPostAct, Dir: "mlp_post_act", Layers: 12},
	{Name: "ae-resid-delta-mlp-v1", Model: "gpt2-small", Input: ResidDeltaMLP, Dir: "resid_delta_mlp", Layers: 12},
	{Name: "ae-mlp-post-act-v4", Model: "gpt2-small", Input: MLPPostAct, Dir: "mlp_post_act_v4", Layers: 12},
	{Name: "ae-resid-delta-mlp-v4", Model: "gpt2-small", Input: ResidDeltaMLP, Dir: "resid_delta_mlp_v4", Layers: 12},
	{Name: "ae-resid-delta-attn-v4", Model: "gpt2-small", Input: ResidDeltaAttn, Dir: "resid_delta_attn_v4", Layers: 12},
}

// Location is the blob of one layer's autoencoder:
// az://openaipublic/sparse-autoencoder/<model>/<dir>/autoencoders/<layer>.pt.
func (f Family) Location(layer int) string {
	return fmt.Sprintf("%s/%s/%s/autoencoders/%d.pt", BlobBase, f.Model, f.Dir, layer)
}

// Config is the family as an AutoencoderContext config over all its layers.
func (f Family) Config() Config {
	c := Config{Input: f.Input, Paths: map[int]string{}}
	for l := 0; l < f.Layers; l++ {
		c.Paths[l] = f.Location(l)
	}
	return c
}

// Families lists the registered families of a model ("" for all), in the
// original's order.
func Families(model string) []Family {
	var out []Family
	for _, f := range families {
		if model == "" || f.Model == model {
			out = append(out, f)
		}
	}
	return out
}

// Names lists the family names of a model (the original's
// list_autoencoder_names).
func Names(model string) []string {
	var out []string
	for _, f := range Families(model) {
		out = append(out, f.Name)
	}
	return out
}

// LookupFamily finds a family by name ("" model: any model).
func LookupFamily(model, name string) (Family, error) {
	for _, f := range Families(model) {
		if f.Name == name {
			return f, nil
		}
	}
	m := model
	if m == "" {
		m = "any model"
	}
	return Family{}, fmt.Errorf("%w %q for %s (known: %s)", ErrUnknownAutoencoder, name, m, strings.Join(Names(model), ", "))
}

// NewNamedContext makes the context of a registered family over all its
// layers (the original's make_autoencoder_context).
func NewNamedContext(model, name string, opts ...Option) (*AutoencoderContext, error) {
	f, err := LookupFamily(model, name)
	if err != nil {
		return nil, err
	}
	return NewAutoencoderContext(f.Config(), opts...)
}

// Resolve turns an autoencoder reference for one layer into something Open
// takes: a registered family name gives that layer's location (and the
// family's input, to check against the splice point); anything else (a
// file, a folder, an az:// or https location) is returned as it is, with an
// empty input.
func Resolve(ref string, layer int) (string, Input, error) {
	if !strings.HasPrefix(ref, "ae-") || strings.ContainsAny(ref, "/\\.") {
		return ref, "", nil
	}
	f, err := LookupFamily("", ref)
	if err != nil {
		return "", "", err
	}
	if layer < 0 || layer >= f.Layers {
		return "", "", fmt.Errorf("%w: %s has layers 0..%d, not %d", ErrNoLayer, f.Name, f.Layers-1, layer)
	}
	return f.Location(layer), f.Input, nil
}

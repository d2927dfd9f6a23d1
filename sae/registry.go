package sae

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// ErrUnknownAutoencoder is returned for a family name the registry lacks.
var ErrUnknownAutoencoder = errors.New("unknown autoencoder")

// BlobBase is where the public autoencoders are stored.
const BlobBase = "az://openaipublic/sparse-autoencoder"

// Family is a registered autoencoder family: one autoencoder per layer of a
// model, all reading one input (the original's _AUTOENCODER_SPECS entries,
// and upstream sparse_autoencoder's v5 families). Architecture packages
// register theirs (RegisterFamily).
type Family struct {
	Name   string // "ae-mlp-post-act-v4", "resid_post_mlp_v5_32k"
	Model  string // the model's name, as the blob layout spells it
	Input  Input
	Dir    string // folder under BlobBase/<model>: "mlp_post_act_v4"
	Layers int    // layers 0..Layers-1
	Kind   string // KindTDB ("" too) or KindOpenAIV5
}

var (
	registryMu sync.RWMutex
	families   []Family
)

// RegisterFamily adds a family to the registry (a name registered twice
// for one model keeps the first).
func RegisterFamily(f Family) {
	registryMu.Lock()
	defer registryMu.Unlock()
	for _, g := range families {
		if g.Name == f.Name && g.Model == f.Model {
			return
		}
	}
	families = append(families, f)
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
// order they were registered.
func Families(model string) []Family {
	registryMu.RLock()
	defer registryMu.RUnlock()
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
	if f.Kind != KindTDB && f.Kind != "" {
		opts = append(opts, WithKind(f.Kind))
	}
	return NewAutoencoderContext(f.Config(), opts...)
}

// Ref is an autoencoder reference resolved for one layer: what Open takes,
// the input a registered family reads ("" when unknown) and the kind of its
// state dicts.
type Ref struct {
	Location string
	Input    Input
	Kind     string
}

// ResolveRef turns an autoencoder reference for one layer into something
// Open takes: a registered family name gives that layer's location, input
// and kind; anything else (a file, a folder, an az:// or https location, a
// saelens: reference) is returned as it is.
func ResolveRef(ref string, layer int) (Ref, error) {
	f, err := LookupFamily("", ref)
	if err != nil {
		if strings.HasPrefix(ref, "ae-") && !strings.ContainsAny(ref, "/\\.") {
			return Ref{}, err
		}
		return Ref{Location: ref}, nil
	}
	if layer < 0 || layer >= f.Layers {
		return Ref{}, fmt.Errorf("%w: %s has layers 0..%d, not %d (give POINT@LAYER)", ErrNoLayer, f.Name, f.Layers-1, layer)
	}
	return Ref{Location: f.Location(layer), Input: f.Input, Kind: f.Kind}, nil
}

// Resolve is ResolveRef returning the location and input.
func Resolve(ref string, layer int) (string, Input, error) {
	r, err := ResolveRef(ref, layer)
	return r.Location, r.Input, err
}

// Release is a SAELens release (its pretrained_saes.yaml entry): a Hugging
// Face repository of SAELens folders, one per SAE id.
type Release struct {
	Name  string
	Repo  string // owner/name on the Hub
	Model string
	// Processing overrides the SAEs' model_from_pretrained_kwargs
	// (config_overrides), e.g. center_writing_weights.
	Processing map[string]bool
	SAEs       []ReleaseSAE
}

// ReleaseSAE is one SAE of a release.
type ReleaseSAE struct {
	ID                string  // "blocks.8.hook_resid_pre"
	Path              string  // folder in the repository
	NormScalingFactor float64 // folded in for expected_average_only_in SAEs; 0: none
}

// ErrUnknownRelease is returned for a saelens: reference the table lacks.
var ErrUnknownRelease = errors.New("unknown SAELens release")

var releases = map[string]Release{}

// RegisterRelease adds a SAELens release to the built-in table.
func RegisterRelease(r Release) {
	registryMu.Lock()
	defer registryMu.Unlock()
	releases[r.Name] = r
}

// Releases lists the known release names, sorted.
func Releases() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	var out []string
	for name := range releases {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// LookupRelease finds an SAE of a release: "saelens:RELEASE/ID" without
// the scheme.
func LookupRelease(release, id string) (Release, ReleaseSAE, error) {
	registryMu.RLock()
	r, ok := releases[release]
	registryMu.RUnlock()
	if !ok {
		return Release{}, ReleaseSAE{}, fmt.Errorf("%w %q (known: %s)", ErrUnknownRelease, release, strings.Join(Releases(), ", "))
	}
	var ids []string
	for _, s := range r.SAEs {
		if s.ID == id {
			return r, s, nil
		}
		ids = append(ids, s.ID)
	}
	return Release{}, ReleaseSAE{}, fmt.Errorf("%w: %s has no SAE %q (known: %s)", ErrUnknownRelease, release, id, strings.Join(ids, ", "))
}

package export

import "fmt"

// ImportedArchitecture is the name of models brought in by Import: any
// ONNX transformer with a hook map, one graph cut by the planner like
// every other model.
const ImportedArchitecture = "onnx"

func init() { Register(imported{}) }

// imported is Import's architecture. Its models are made by Import from a
// graph and a hook map, not opened from a checkpoint folder.
type imported struct{}

func (imported) Name() string { return ImportedArchitecture }

func (imported) Open(dir string) (Source, error) {
	return nil, fmt.Errorf("%w: imported ONNX graphs come in through Import (onnx-tdb import), not a checkpoint folder", ErrNotMine)
}

// KeyedWeights is implemented by architectures that recognise their own
// checkpoint's state-dict keys: given the keys an imported graph's hook map
// names for its initializers, it says where the standard weight locations
// and MLP output layers are, or false when the keys are not its own. An
// imported graph of a known architecture then answers ModelContext.Weight
// and gives hooks their out_layer, as an export of that architecture does.
type KeyedWeights interface {
	LocateWeights(sources map[string]bool, nLayers int) ([]WeightLocation, []OutLayer, bool)
}

// locateKeyedWeights fills an imported manifest's weight locations from
// the first architecture that recognises its state-dict keys.
func locateKeyedWeights(m *Manifest) {
	sources := map[string]bool{}
	for _, w := range m.Weights.Tensors {
		if w.Source != "" {
			sources[w.Source] = true
		}
	}
	if len(sources) == 0 || m.Config.NLayers <= 0 {
		return
	}
	for _, name := range Architectures() {
		a, _ := Lookup(name)
		if k, ok := a.(KeyedWeights); ok {
			if locs, outs, ok := k.LocateWeights(sources, m.Config.NLayers); ok {
				m.WeightLocations, m.OutLayers = locs, outs
				return
			}
		}
	}
}

package export

import "fmt"

// Bounds on the model a config.json may describe, whatever its
// architecture. They are far above any model this tool is for (GPT-2 xl:
// 48 layers, d_model 1600, 1.5 B parameters) and keep a
// config of a few bytes from making anything allocate per layer, per head or
// per parameter before a byte of weights is seen.
const (
	MaxLayers = 1024
	MaxDModel = 1 << 16
	MaxHeads  = 1 << 12
	MaxDFF    = 1 << 20
	MaxCtx    = 1 << 20
	MaxParams = 1 << 36 // about 69 billion
)

// CheckConfigLimits refuses a model configuration outside the bounds above
// with ErrUnsupported. Parsers of untrusted config files call it before
// using any of the fields.
func CheckConfigLimits(c Dims) error {
	for _, f := range []struct {
		name   string
		v, max int
	}{
		{"n_layers", c.NLayers, MaxLayers},
		{"d_model", c.DModel, MaxDModel},
		{"n_heads", c.NHeads, MaxHeads},
		{"d_ff", c.DFF, MaxDFF},
		{"n_ctx", c.NCtx, MaxCtx},
	} {
		if f.v <= 0 || f.v > f.max {
			return fmt.Errorf("%w: config %s %d is outside 1..%d", ErrUnsupported, f.name, f.v, f.max)
		}
	}
	// Each field is bounded above, so this cannot overflow.
	d, l, ff, v := int64(c.DModel), int64(c.NLayers), int64(c.DFF), int64(max(c.NVocab, 0))
	params := l*(4*d*d+2*d*ff) + (v+int64(c.NCtx))*d
	if params > MaxParams {
		return fmt.Errorf("%w: config describes %d parameters, more than %d", ErrUnsupported, params, int64(MaxParams))
	}
	return nil
}

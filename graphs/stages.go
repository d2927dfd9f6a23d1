package graphs

import (
	"fmt"

	"github.com/onnx-tdb/onnx-tdb/hooks"
)

// The names every architecture's stage graphs use for the inputs and
// outputs the runtime feeds and reads, so that an architecture plugin and
// the engine agree without naming each other.
const (
	InTokens   = "tokens"    // int64 [B,T]: token ids of this call
	InPad      = "pad"       // bool [B,Tk]: true at pad positions, over cached + new tokens
	InPrevLens = "prev_lens" // int64 [B,1]: real tokens already in the cache per row
	OutLogits  = "logits"    // float32 [B,T,V]
)

// PointTensor names the tensor that carries a hook point at a layer (-1 for
// once points): the point's canonical file stem.
func PointTensor(p hooks.Point, layer int) string { return p.FileName(layer) }

// PastK and friends name the KV-cache inputs and outputs of layer l.
func PastK(l int) string    { return fmt.Sprintf("past_k.L%d", l) }
func PastV(l int) string    { return fmt.Sprintf("past_v.L%d", l) }
func PresentK(l int) string { return fmt.Sprintf("present_k.L%d", l) }
func PresentV(l int) string { return fmt.Sprintf("present_v.L%d", l) }

// ExplicitSuffix marks the tensor that takes a point's place when a switch is
// taken.
const ExplicitSuffix = "#explicit"

// ReadOnlySuffix marks the tensor that takes a point's place when a switch's
// point is only read.
const ReadOnlySuffix = "#readonly"

// Switch says: when Point at Layer is hooked, the tensor Replace is computed
// by With's producer instead. An architecture uses it where the original
// computes a point one way when it is hooked and another (fused) way when it
// is not, such as an explicit softmax taken only when its denominator has
// hooks.
//
// ReadReplace and ReadWith, when set, are what is taken instead where the
// point is only read (observed, captured), not written: the tensor
// ReadReplace is computed by ReadWith's producer and Replace stays as it
// is. The softmax's denominator, only read, is the reciprocal of the fused
// softmax's largest probability; the explicit softmax is needed only where
// a written denominator must change the probabilities.
type Switch struct {
	Point       string `json:"point"`
	Layer       int    `json:"layer"`
	Replace     string `json:"replace"`
	With        string `json:"with"`
	ReadReplace string `json:"read_replace,omitempty"`
	ReadWith    string `json:"read_with,omitempty"`
}

// Weights maps initializer names to their place in a model's shared weights
// file, for graphs that reference it as external data.
type Weights struct {
	Location string // file name relative to the model folder
	Offsets  map[string][2]int64
}

// Ref returns an external-data initializer for a weight of the table, or an
// error naming the missing weight.
func (w Weights) Ref(b *Builder, name string, dims ...int64) (string, error) {
	off, ok := w.Offsets[name]
	if !ok {
		return "", fmt.Errorf("graphs: weight %s missing from the weights table", name)
	}
	return b.External(name, dims, w.Location, off[0], off[1]), nil
}

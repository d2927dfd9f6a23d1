package modelctx

import (
	"fmt"
	"sync"

	"github.com/onnx-tdb/onnx-tdb/export"
	"github.com/onnx-tdb/onnx-tdb/hooks"
)

// OutLayerKey is the hooks.Context.Value key under which a hook at
// mlp.post_act finds the layer's *OutLayer: the original passes its hooks
// there the MLP's output Linear as the extra kwarg out_layer.
const OutLayerKey = "out_layer"

// OutLayer is one layer's MLP output projection:
// resid.torso.delta_mlp = mlp.post_act · Weightᵀ + Bias.
type OutLayer struct {
	Weight *hooks.Tensor // [D, F], as the original's Linear.weight
	Bias   *hooks.Tensor // [D]
}

// Apply runs the layer on x [..., F] and returns x · Weightᵀ + Bias, [..., D].
func (o *OutLayer) Apply(x *hooks.Tensor) (*hooks.Tensor, error) {
	D, F := o.Weight.Shape[0], o.Weight.Shape[1]
	if x == nil || len(x.Shape) == 0 || x.Shape[len(x.Shape)-1] != F || x.Numel() != len(x.Data) {
		return nil, fmt.Errorf("out layer: input of shape %v, want [..., %d]", shapeOfTensor(x), F)
	}
	rows := len(x.Data) / F
	out := &hooks.Tensor{Shape: append(append([]int(nil), x.Shape[:len(x.Shape)-1]...), D), Data: make([]float32, rows*D)}
	for r := 0; r < rows; r++ {
		in := x.Data[r*F : (r+1)*F]
		for d := 0; d < D; d++ {
			w := o.Weight.Data[d*F : (d+1)*F]
			s := float64(o.Bias.Data[d])
			for f, v := range in {
				s += float64(v) * float64(w[f])
			}
			out.Data[r*D+d] = float32(s)
		}
	}
	return out, nil
}

func shapeOfTensor(t *hooks.Tensor) []int {
	if t == nil {
		return nil
	}
	return t.Shape
}

// outLayers loads each layer's OutLayer from the weights file on first use.
type outLayers struct {
	once   sync.Once
	mu     sync.Mutex
	layers map[int]*OutLayer
	err    error
	wf     *weightFile
}

// siteValue serves the model's values at its sites: the out layer at
// mlp.post_act. Models whose weights file does not name the original's
// checkpoint keys (a foreign graph without them) have none.
func (t *Transformer) siteValue(site hooks.Site, key string) (any, bool) {
	if key != OutLayerKey || site.Point != hooks.MLPPostAct || site.Layer < 0 || site.Layer >= t.NLayers() {
		return nil, false
	}
	o, err := t.outLayer(site.Layer)
	if err != nil {
		return nil, false
	}
	return o, true
}

// outLayer reads layer l's MLP output projection (once per model).
func (t *Transformer) outLayer(l int) (*OutLayer, error) {
	ol := &t.outs
	ol.once.Do(func() { ol.wf, ol.err = openWeights(t.dir, t.man) })
	if ol.err != nil {
		return nil, ol.err
	}
	ol.mu.Lock()
	defer ol.mu.Unlock()
	if o, ok := ol.layers[l]; ok {
		return o, nil
	}
	var ref *export.OutLayer
	for i := range t.man.OutLayers {
		if t.man.OutLayers[i].Layer == l {
			ref = &t.man.OutLayers[i]
		}
	}
	if ref == nil {
		return nil, fmt.Errorf("%w: model %s names no MLP output layer %d", ErrNoWeight, t.man.Name, l)
	}
	w, err := ol.wf.piece(ref.Weight)
	if err != nil {
		return nil, err
	}
	o := &OutLayer{Weight: w.tensor()}
	if ref.Bias != "" {
		b, err := ol.wf.piece(ref.Bias)
		if err != nil {
			return nil, err
		}
		o.Bias = b.tensor()
	} else if len(o.Weight.Shape) == 2 {
		o.Bias = &hooks.Tensor{Shape: []int{o.Weight.Shape[0]}, Data: make([]float32, o.Weight.Shape[0])}
	}
	if len(o.Weight.Shape) != 2 || len(o.Bias.Shape) != 1 || o.Bias.Shape[0] != o.Weight.Shape[0] {
		return nil, fmt.Errorf("%w: out layer %d of shapes %v and %v", ErrWeightShape, l, o.Weight.Shape, o.Bias.Shape)
	}
	if ol.layers == nil {
		ol.layers = map[int]*OutLayer{}
	}
	ol.layers[l] = o
	return o, nil
}

func (ol *outLayers) close() error {
	ol.mu.Lock()
	defer ol.mu.Unlock()
	if ol.wf == nil {
		return nil
	}
	err := ol.wf.close()
	ol.wf = nil
	return err
}

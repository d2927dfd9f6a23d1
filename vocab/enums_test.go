package vocab

import (
	"errors"
	"reflect"
	"testing"
)

func TestActivationLocationTypeToHookPoint(t *testing.T) {
	// The original's 17-entry map (docs/behaviour.md §4.6), with
	// hook_graph's /torso inserted for the residual points.
	want := map[ActivationLocationType]string{
		ActResidPostEmbedding:       "resid.post_emb",
		ActResidPostAttn:            "resid.torso.post_attn",
		ActResidPostMLP:             "resid.torso.post_mlp",
		ActResidDeltaAttn:           "resid.torso.delta_attn",
		ActResidDeltaMLP:            "resid.torso.delta_mlp",
		ActMLPPreAct:                "mlp.pre_act",
		ActMLPPostAct:               "mlp.post_act",
		ActAttnQuery:                "attn.q",
		ActAttnKey:                  "attn.k",
		ActAttnValue:                "attn.v",
		ActAttnQKLogits:             "attn.qk_logits",
		ActAttnQKProbs:              "attn.qk_probs",
		ActAttnWeightedSumOfValues:  "attn.v_out",
		ActLogits:                   "logits",
		ActResidFinalLayerNormScale: "resid.ln_f.scale",
		ActAttnInputLayerNormScale:  "resid.torso.ln_attn.scale",
		ActMLPInputLayerNormScale:   "resid.torso.ln_mlp.scale",
	}
	std := StandardActivationLocationTypes()
	if len(std) != 17 || len(want) != 17 {
		t.Fatalf("%d standard types", len(std))
	}
	for _, a := range ActivationLocationTypes() {
		p, ok := a.HookPoint()
		path, mapped := want[a]
		if ok != mapped || (ok && p.Path() != path) {
			t.Errorf("%s -> %v %v, want %q %v", a, p, ok, path, mapped)
			continue
		}
		if ok {
			back, ok := ActivationLocationTypeForPoint(p)
			if !ok || back != a {
				t.Errorf("inverse of %s = %s", p, back)
			}
		}
	}
	for _, p := range []Point{PostLnAttn, AttnQKSoftmaxDenominator, PostLnF, SAELatents} {
		if a, ok := ActivationLocationTypeForPoint(p); ok {
			t.Errorf("%s maps back to %s", p, a)
		}
	}
}

func TestActivationLocationTypeProperties(t *testing.T) {
	if n := len(ActivationLocationTypes()); n != 26 {
		t.Fatalf("%d activation location types, want 26", n)
	}
	cases := []struct {
		a         ActivationLocationType
		noLayers  bool
		byDefault bool
		node      NodeType
		loc       LocationWithinLayer
		ndim      int
	}{
		{ActResidPostEmbedding, true, true, NodeResidualStreamChannel, LocUnknown, 2},
		{ActResidDeltaAttn, false, true, NodeResidualStreamChannel, LocAttn, 2},
		{ActResidPostAttn, false, true, NodeResidualStreamChannel, LocResidPostAttn, 2},
		{ActResidDeltaMLP, false, true, NodeResidualStreamChannel, LocMLP, 2},
		{ActResidPostMLP, false, true, NodeResidualStreamChannel, LocResidPostMLP, 2},
		{ActResidPostMLPLayerNorm, false, true, NodeResidualStreamChannel, LocUnknown, 2},
		{ActResidPostFinalLayerNorm, true, true, NodeResidualStreamChannel, LocUnknown, 2},
		{ActMLPInputLayerNormScale, false, true, NodeLayer, LocUnknown, 2},
		{ActResidFinalLayerNormScale, true, true, NodeLayer, LocUnknown, 2},
		{ActAttnQuery, false, true, NodeQKChannel, LocAttn, 3},
		{ActAttnValue, false, true, NodeVChannel, LocAttn, 3},
		{ActAttnQKProbs, false, true, NodeAttentionHead, LocAttn, 3},
		{ActMLPPostAct, false, true, NodeMLPNeuron, LocMLP, 2},
		{ActOnlineAutoencoderLatent, false, false, NodeAutoencoderLatent, LocUnknown, 2},
		{ActOnlineMLPAutoencoderError, false, true, NodeMLPNeuron, LocMLP, 2},
	}
	for _, c := range cases {
		t.Run(string(c.a), func(t *testing.T) {
			node, err := c.a.NodeType()
			if err != nil || node != c.node {
				t.Errorf("node type %s, %v; want %s", node, err, c.node)
			}
			loc, err := c.a.LocationWithinLayer()
			if err != nil || loc != c.loc {
				t.Errorf("location %s, %v; want %s", loc, err, c.loc)
			}
			if c.a.HasNoLayers() != c.noLayers || c.a.ExistsByDefault() != c.byDefault || c.a.NdimPerTokenSequence() != c.ndim {
				t.Errorf("has_no_layers %v exists_by_default %v ndim %d", c.a.HasNoLayers(), c.a.ExistsByDefault(), c.a.NdimPerTokenSequence())
			}
			back, err := ParseActivationLocationType(string(c.a))
			if err != nil || back != c.a {
				t.Errorf("parse: %v", err)
			}
		})
	}
	if _, err := ActLogits.LocationWithinLayer(); !errors.Is(err, ErrNoLocation) {
		t.Errorf("logits (vocab tokens) location: %v", err)
	}
	if _, err := ParseActivationLocationType("resid.nope"); !errors.Is(err, ErrUnknownLocation) {
		t.Errorf("parse unknown: %v", err)
	}
	pair := ActivationLocationTypeAndPassType{ActOnlineAutoencoderLatent, PassBackward}
	if pair.ExistsByDefault() {
		t.Error("online latent exists by default")
	}
}

func TestWeightLocationTypeProperties(t *testing.T) {
	types := WeightLocationTypes()
	if len(types) != 13 {
		t.Fatalf("%d weight location types", len(types))
	}
	mlp := map[WeightLocationType]bool{WeightMLPToHidden: true, WeightMLPToResidual: true, WeightLayerNormGainPreMLP: true}
	once := map[WeightLocationType]bool{WeightEmbedding: true, WeightUnembedding: true, WeightPositionEmbedding: true,
		WeightLayerNormGainFinal: true, WeightLayerNormBiasFinal: true}
	for _, w := range types {
		if w.IsMLPSpecific() != mlp[w] || w.HasNoLayers() != once[w] || w.IsAbsolutePositionEmbeddingSpecific() != (w == WeightPositionEmbedding) {
			t.Errorf("%s: properties", w)
		}
		if got, err := ParseWeightLocationType(string(w)); err != nil || got != w {
			t.Errorf("parse %s: %v", w, err)
		}
		if len(w.ShapeSpec()) == 0 {
			t.Errorf("%s: no shape spec", w)
		}
	}
	for _, c := range []struct {
		w   WeightLocationType
		d   Dimension
		idx int
		err bool
	}{
		{WeightAttnToQuery, DimAttnHeads, 0, false},
		{WeightAttnToQuery, DimResidualStreamChannels, 1, false},
		{WeightAttnToResidual, DimResidualStreamChannels, 2, false},
		{WeightUnembedding, DimVocabSize, 1, false},
		{WeightMLPToHidden, DimAttnHeads, 0, true},
		{WeightLocationType("x"), DimAttnHeads, 0, true},
	} {
		idx, err := c.w.DimensionIndex(c.d)
		if (err != nil) != c.err || (!c.err && idx != c.idx) {
			t.Errorf("DimensionIndex(%s, %s) = %d, %v", c.w, c.d, idx, err)
		}
	}
	if _, err := ParseWeightLocationType("mlp.to_nowhere"); !errors.Is(err, ErrUnknownLocation) {
		t.Errorf("parse unknown: %v", err)
	}
}

func TestDimensionAndNodeTypeProperties(t *testing.T) {
	if len(Dimensions()) != 13 || len(NodeTypes()) != 11 {
		t.Fatalf("%d dimensions, %d node types", len(Dimensions()), len(NodeTypes()))
	}
	for _, d := range Dimensions() {
		seq := d == DimSequenceTokens || d == DimAttendedToSequenceTokens
		if d.IsSequenceTokenDimension() != seq || d.IsParameterizedDimension() != (d == DimAutoencoderLatents) ||
			d.IsModelIntrinsic() != (!seq && d != DimAutoencoderLatents) {
			t.Errorf("%s: properties", d)
		}
		if got, err := ParseDimension(string(d)); err != nil || got != d {
			t.Errorf("parse %s: %v", d, err)
		}
	}
	byDim := map[Dimension]NodeType{
		DimMLPActs: NodeMLPNeuron, DimAttnHeads: NodeAttentionHead, DimQueryAndKeyChannels: NodeQKChannel,
		DimValueChannels: NodeVChannel, DimSingleton: NodeLayer, DimResidualStreamChannels: NodeResidualStreamChannel,
		DimVocabSize: NodeVocabToken, DimAutoencoderLatents: NodeAutoencoderLatent,
		DimAutoencoderLatentsByPairs: NodeAutoencoderLatentByTokenPair,
	}
	for _, d := range Dimensions() {
		n, err := d.NodeType()
		if want, ok := byDim[d]; ok != (err == nil) || n != want {
			t.Errorf("%s -> %s, %v", d, n, err)
		}
	}
	for _, n := range NodeTypes() {
		loc, err := n.LocationWithinLayer()
		want := map[NodeType]LocationWithinLayer{NodeMLPNeuron: LocMLP, NodeAttentionHead: LocAttn, NodeQKChannel: LocAttn, NodeVChannel: LocAttn}[n]
		if (n == NodeVocabToken) != errors.Is(err, ErrNoLocation) || loc != want {
			t.Errorf("%s: location %s, %v", n, loc, err)
		}
		ae := n == NodeAutoencoderLatent || n == NodeMLPAutoencoderLatent || n == NodeAttentionAutoencoderLatent || n == NodeAutoencoderLatentByTokenPair
		if n.IsAutoencoderLatent() != ae {
			t.Errorf("%s: is_autoencoder_latent", n)
		}
		if got, err := ParseNodeType(string(n)); err != nil || got != n {
			t.Errorf("parse %s: %v", n, err)
		}
	}
	order := []LocationWithinLayer{LocEndOfPrevLayer, LocAttn, LocResidPostAttn, LocMLP, LocResidPostMLP}
	for i, l := range order {
		if int(l) != i+1 {
			t.Errorf("%s = %d, want %d", l, int(l), i+1)
		}
	}
}

func TestParseStandardLocation(t *testing.T) {
	for _, c := range []struct {
		in    string
		path  string
		layer int
		err   bool
	}{
		{"7/mlp/post_act", "mlp/post_act", 7, false},
		{"resid/post_emb", "resid/post_emb", -1, false},
		{"12/resid/delta_attn", "resid/delta_attn", 12, false},
		{"7", "", 0, true},
		{"7/", "", 0, true},
		{"7mlp", "", 0, true},
		{"", "", 0, true},
	} {
		path, layer, err := ParseStandardLocation(c.in)
		if (err != nil) != c.err || (!c.err && (path != c.path || layer != c.layer)) {
			t.Errorf("ParseStandardLocation(%q) = %q, %d, %v", c.in, path, layer, err)
		}
	}
	if !reflect.DeepEqual(WeightAttnToResidual.ShapeSpec(), []Dimension{DimAttnHeads, DimValueChannels, DimResidualStreamChannels}) {
		t.Error("attn.to_residual shape spec")
	}
}

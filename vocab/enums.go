package vocab

import (
	"errors"
	"fmt"
)

// The original's component registry (docs/behaviour.md §4.4 and §4.6): the names of
// dimensions, weights, activations and nodes shared by every architecture,
// with the standard shape of each weight and activation.

// Errors of the registry.
var (
	ErrUnknownDimension = errors.New("unknown dimension")
	ErrUnknownLocation  = errors.New("unknown location type")
	ErrNoLocation       = errors.New("vocab tokens have no location within a layer")
	ErrNoNodeType       = errors.New("no node type for this dimension")
)

// Dimension names an axis of a weight or activation tensor.
type Dimension string

// Dimensions (docs/behaviour.md §4.4).
const (
	DimSequenceTokens            Dimension = "sequence_tokens"
	DimAttendedToSequenceTokens  Dimension = "attended_to_sequence_tokens"
	DimMaxContextLength          Dimension = "max_context_length"
	DimResidualStreamChannels    Dimension = "residual_stream_channels"
	DimVocabSize                 Dimension = "vocab_size"
	DimAttnHeads                 Dimension = "attn_heads"
	DimQueryAndKeyChannels       Dimension = "query_and_key_channels"
	DimValueChannels             Dimension = "value_channels"
	DimMLPActs                   Dimension = "mlp_acts"
	DimLayers                    Dimension = "layers"
	DimSingleton                 Dimension = "singleton" // always 1
	DimAutoencoderLatents        Dimension = "autoencoder_latents"
	DimAutoencoderLatentsByPairs Dimension = "autoencoder_latents_by_token_pair"
)

// Dimensions lists every Dimension in the original's order.
func Dimensions() []Dimension {
	return []Dimension{DimSequenceTokens, DimAttendedToSequenceTokens, DimMaxContextLength, DimResidualStreamChannels,
		DimVocabSize, DimAttnHeads, DimQueryAndKeyChannels, DimValueChannels, DimMLPActs, DimLayers, DimSingleton,
		DimAutoencoderLatents, DimAutoencoderLatentsByPairs}
}

// ParseDimension returns the dimension with this value ("mlp_acts").
func ParseDimension(s string) (Dimension, error) {
	for _, d := range Dimensions() {
		if string(d) == s {
			return d, nil
		}
	}
	return "", fmt.Errorf("%w %q", ErrUnknownDimension, s)
}

// IsSequenceTokenDimension reports whether d counts tokens of the input.
func (d Dimension) IsSequenceTokenDimension() bool {
	return d == DimSequenceTokens || d == DimAttendedToSequenceTokens
}

// IsParameterizedDimension reports whether d depends on an added subgraph
// (autoencoder latents).
func (d Dimension) IsParameterizedDimension() bool { return d == DimAutoencoderLatents }

// IsModelIntrinsic reports whether d depends on the model only.
func (d Dimension) IsModelIntrinsic() bool {
	return !d.IsParameterizedDimension() && !d.IsSequenceTokenDimension()
}

// NodeType is the kind of node that indexes this dimension
// (node_type_by_dimension).
func (d Dimension) NodeType() (NodeType, error) {
	if n, ok := nodeTypeByDimension[d]; ok {
		return n, nil
	}
	return "", fmt.Errorf("%w %s", ErrNoNodeType, d)
}

var nodeTypeByDimension = map[Dimension]NodeType{
	DimMLPActs:                   NodeMLPNeuron,
	DimAttnHeads:                 NodeAttentionHead,
	DimQueryAndKeyChannels:       NodeQKChannel,
	DimValueChannels:             NodeVChannel,
	DimSingleton:                 NodeLayer,
	DimResidualStreamChannels:    NodeResidualStreamChannel,
	DimVocabSize:                 NodeVocabToken,
	DimAutoencoderLatents:        NodeAutoencoderLatent,
	DimAutoencoderLatentsByPairs: NodeAutoencoderLatentByTokenPair,
}

// LocationWithinLayer places a node coarsely within a layer; the order of
// the values is the order within the layer. The zero value means unknown
// (the original's None).
type LocationWithinLayer int

// Locations within a layer.
const (
	LocUnknown LocationWithinLayer = iota
	LocEndOfPrevLayer
	LocAttn
	LocResidPostAttn
	LocMLP
	LocResidPostMLP
)

func (l LocationWithinLayer) String() string {
	switch l {
	case LocEndOfPrevLayer:
		return "END_OF_PREV_LAYER"
	case LocAttn:
		return "ATTN"
	case LocResidPostAttn:
		return "RESID_POST_ATTN"
	case LocMLP:
		return "MLP"
	case LocResidPostMLP:
		return "RESID_POST_MLP"
	}
	return "None"
}

// NodeType is a model component with one scalar activation per token (or
// token pair): the last axis of an activation tensor.
type NodeType string

// Node types.
const (
	NodeAttentionHead                NodeType = "attention_head"
	NodeQKChannel                    NodeType = "qk_channel"
	NodeVChannel                     NodeType = "v_channel"
	NodeMLPNeuron                    NodeType = "mlp_neuron"
	NodeAutoencoderLatent            NodeType = "autoencoder_latent"
	NodeMLPAutoencoderLatent         NodeType = "mlp_autoencoder_latent"
	NodeAttentionAutoencoderLatent   NodeType = "attention_autoencoder_latent"
	NodeAutoencoderLatentByTokenPair NodeType = "autoencoder_latent_by_token_pair"
	NodeLayer                        NodeType = "layer"
	NodeResidualStreamChannel        NodeType = "residual_stream_channel"
	NodeVocabToken                   NodeType = "vocab_token"
)

// NodeTypes lists every NodeType in the original's order.
func NodeTypes() []NodeType {
	return []NodeType{NodeAttentionHead, NodeQKChannel, NodeVChannel, NodeMLPNeuron, NodeAutoencoderLatent,
		NodeMLPAutoencoderLatent, NodeAttentionAutoencoderLatent, NodeAutoencoderLatentByTokenPair, NodeLayer,
		NodeResidualStreamChannel, NodeVocabToken}
}

// ParseNodeType returns the node type with this value.
func ParseNodeType(s string) (NodeType, error) {
	for _, n := range NodeTypes() {
		if string(n) == s {
			return n, nil
		}
	}
	return "", fmt.Errorf("%w: node type %q", ErrUnknownLocation, s)
}

// LocationWithinLayer is where nodes of this type sit: MLP for neurons,
// ATTN for heads and their channels, LocUnknown where the type alone does
// not say (residual channels, layers, autoencoder latents), and
// ErrNoLocation for vocab tokens.
func (n NodeType) LocationWithinLayer() (LocationWithinLayer, error) {
	switch n {
	case NodeMLPNeuron:
		return LocMLP, nil
	case NodeAttentionHead, NodeQKChannel, NodeVChannel:
		return LocAttn, nil
	case NodeVocabToken:
		return LocUnknown, ErrNoLocation
	case NodeResidualStreamChannel, NodeLayer, NodeAutoencoderLatent, NodeMLPAutoencoderLatent,
		NodeAttentionAutoencoderLatent, NodeAutoencoderLatentByTokenPair:
		return LocUnknown, nil
	}
	return LocUnknown, fmt.Errorf("%w: node type %q", ErrUnknownLocation, string(n))
}

// IsAutoencoderLatent reports whether n is one of the four autoencoder
// latent types.
func (n NodeType) IsAutoencoderLatent() bool {
	switch n {
	case NodeAutoencoderLatent, NodeMLPAutoencoderLatent, NodeAttentionAutoencoderLatent, NodeAutoencoderLatentByTokenPair:
		return true
	}
	return false
}

// PassType is a forward or a backward pass.
type PassType string

// Pass types.
const (
	PassForward  PassType = "forward"
	PassBackward PassType = "backward"
)

// ActivationLocationType names an activation of a forward pass; all are
// before the LayerNorm unless the name says otherwise.
type ActivationLocationType string

// Activation location types (docs/behaviour.md §4.4).
const (
	ActResidPostEmbedding                 ActivationLocationType = "resid.post_emb"
	ActResidDeltaAttn                     ActivationLocationType = "resid.delta_attn"
	ActResidPostAttn                      ActivationLocationType = "resid.post_attn"
	ActResidDeltaMLP                      ActivationLocationType = "resid.delta_mlp"
	ActResidPostMLP                       ActivationLocationType = "resid.post_mlp"
	ActResidPostMLPLayerNorm              ActivationLocationType = "resid.post_mlp_ln"
	ActResidPostAttnLayerNorm             ActivationLocationType = "resid.post_attn_ln"
	ActResidPostFinalLayerNorm            ActivationLocationType = "resid.post_ln_f"
	ActMLPInputLayerNormScale             ActivationLocationType = "mlp_ln.scale"
	ActAttnInputLayerNormScale            ActivationLocationType = "attn_ln.scale"
	ActResidFinalLayerNormScale           ActivationLocationType = "resid.ln_f.scale"
	ActAttnQuery                          ActivationLocationType = "attn.q"
	ActAttnKey                            ActivationLocationType = "attn.k"
	ActAttnValue                          ActivationLocationType = "attn.v"
	ActAttnQKLogits                       ActivationLocationType = "attn.qk_logits"
	ActAttnQKProbs                        ActivationLocationType = "attn.qk_probs"
	ActAttnWeightedSumOfValues            ActivationLocationType = "attn.v_out"
	ActMLPPreAct                          ActivationLocationType = "mlp.pre_act"
	ActMLPPostAct                         ActivationLocationType = "mlp.post_act"
	ActLogits                             ActivationLocationType = "logits"
	ActOnlineAutoencoderLatent            ActivationLocationType = "online_autoencoder_latent"
	ActOnlineMLPAutoencoderLatent         ActivationLocationType = "online_mlp_autoencoder_latent"
	ActOnlineAttentionAutoencoderLatent   ActivationLocationType = "online_attention_autoencoder_latent"
	ActOnlineMLPAutoencoderError          ActivationLocationType = "online_mlp_autoencoder_error"
	ActOnlineResidualMLPAutoencoderError  ActivationLocationType = "online_residual_mlp_autoencoder_error"
	ActOnlineResidualAttnAutoencoderError ActivationLocationType = "online_residual_attention_autoencoder_error"
)

type actInfo struct {
	alt   ActivationLocationType
	shape []Dimension
	point Point // the standard hook point; 0 where none
}

var actInfos = []actInfo{
	{ActResidPostEmbedding, []Dimension{DimSequenceTokens, DimResidualStreamChannels}, ResidPostEmb},
	{ActResidDeltaAttn, []Dimension{DimSequenceTokens, DimResidualStreamChannels}, DeltaAttn},
	{ActResidPostAttn, []Dimension{DimSequenceTokens, DimResidualStreamChannels}, PostAttn},
	{ActResidDeltaMLP, []Dimension{DimSequenceTokens, DimResidualStreamChannels}, DeltaMLP},
	{ActResidPostMLP, []Dimension{DimSequenceTokens, DimResidualStreamChannels}, PostMLP},
	{ActResidPostMLPLayerNorm, []Dimension{DimSequenceTokens, DimResidualStreamChannels}, 0},
	{ActResidPostAttnLayerNorm, []Dimension{DimSequenceTokens, DimResidualStreamChannels}, 0},
	{ActResidPostFinalLayerNorm, []Dimension{DimSequenceTokens, DimResidualStreamChannels}, 0},
	{ActMLPInputLayerNormScale, []Dimension{DimSequenceTokens, DimSingleton}, LnMLPScale},
	{ActAttnInputLayerNormScale, []Dimension{DimSequenceTokens, DimSingleton}, LnAttnScale},
	{ActResidFinalLayerNormScale, []Dimension{DimSequenceTokens, DimSingleton}, LnFScale},
	{ActAttnQuery, []Dimension{DimSequenceTokens, DimAttnHeads, DimQueryAndKeyChannels}, AttnQ},
	{ActAttnKey, []Dimension{DimAttendedToSequenceTokens, DimAttnHeads, DimQueryAndKeyChannels}, AttnK},
	{ActAttnValue, []Dimension{DimAttendedToSequenceTokens, DimAttnHeads, DimValueChannels}, AttnV},
	{ActAttnQKLogits, []Dimension{DimSequenceTokens, DimAttendedToSequenceTokens, DimAttnHeads}, AttnQKLogits},
	{ActAttnQKProbs, []Dimension{DimSequenceTokens, DimAttendedToSequenceTokens, DimAttnHeads}, AttnQKProbs},
	{ActAttnWeightedSumOfValues, []Dimension{DimSequenceTokens, DimAttnHeads, DimValueChannels}, AttnVOut},
	{ActMLPPreAct, []Dimension{DimSequenceTokens, DimMLPActs}, MLPPreAct},
	{ActMLPPostAct, []Dimension{DimSequenceTokens, DimMLPActs}, MLPPostAct},
	{ActLogits, []Dimension{DimSequenceTokens, DimVocabSize}, LogitsPoint},
	{ActOnlineAutoencoderLatent, []Dimension{DimSequenceTokens, DimAutoencoderLatents}, 0},
	{ActOnlineMLPAutoencoderLatent, []Dimension{DimSequenceTokens, DimAutoencoderLatents}, 0},
	{ActOnlineAttentionAutoencoderLatent, []Dimension{DimSequenceTokens, DimAutoencoderLatents}, 0},
	{ActOnlineMLPAutoencoderError, []Dimension{DimSequenceTokens, DimMLPActs}, 0},
	{ActOnlineResidualMLPAutoencoderError, []Dimension{DimSequenceTokens, DimResidualStreamChannels}, 0},
	{ActOnlineResidualAttnAutoencoderError, []Dimension{DimSequenceTokens, DimResidualStreamChannels}, 0},
}

func (a ActivationLocationType) info() (actInfo, bool) {
	for _, i := range actInfos {
		if i.alt == a {
			return i, true
		}
	}
	return actInfo{}, false
}

// ActivationLocationTypes lists all 26 activation location types in the
// original's order.
func ActivationLocationTypes() []ActivationLocationType {
	out := make([]ActivationLocationType, len(actInfos))
	for i, a := range actInfos {
		out[i] = a.alt
	}
	return out
}

// ParseActivationLocationType returns the type with this value
// ("mlp.post_act"); it is the original's `s in ActivationLocationType`.
func ParseActivationLocationType(s string) (ActivationLocationType, error) {
	if _, ok := ActivationLocationType(s).info(); ok {
		return ActivationLocationType(s), nil
	}
	return "", fmt.Errorf("%w: activation location type %q", ErrUnknownLocation, s)
}

// HasNoLayers reports whether the activation exists once per pass
// (resid.post_emb, resid.ln_f.scale, resid.post_ln_f, logits).
func (a ActivationLocationType) HasNoLayers() bool {
	switch a {
	case ActResidPostEmbedding, ActResidFinalLayerNormScale, ActResidPostFinalLayerNorm, ActLogits:
		return true
	}
	return false
}

// ExistsByDefault is false only for the online autoencoder latent, which
// exists only where hooks add it.
func (a ActivationLocationType) ExistsByDefault() bool { return a != ActOnlineAutoencoderLatent }

// ShapeSpecPerTokenSequence is the activation's shape for one sequence
// (no batch axis).
func (a ActivationLocationType) ShapeSpecPerTokenSequence() []Dimension {
	i, _ := a.info()
	return append([]Dimension(nil), i.shape...)
}

// NdimPerTokenSequence is the rank of ShapeSpecPerTokenSequence.
func (a ActivationLocationType) NdimPerTokenSequence() int { return len(a.ShapeSpecPerTokenSequence()) }

// NodeType is the node type of the activation's last axis.
func (a ActivationLocationType) NodeType() (NodeType, error) {
	i, ok := a.info()
	if !ok {
		return "", fmt.Errorf("%w: activation location type %q", ErrUnknownLocation, string(a))
	}
	return i.shape[len(i.shape)-1].NodeType()
}

// LocationWithinLayer is where the activation sits in its layer: the node
// type's location, refined by name for the residual stream; LocUnknown
// where neither says.
func (a ActivationLocationType) LocationWithinLayer() (LocationWithinLayer, error) {
	nt, err := a.NodeType()
	if err != nil {
		return LocUnknown, err
	}
	loc, err := nt.LocationWithinLayer()
	if err != nil || loc != LocUnknown {
		return loc, err
	}
	if nt == NodeResidualStreamChannel {
		switch a {
		case ActResidDeltaAttn:
			return LocAttn, nil
		case ActResidPostAttn:
			return LocResidPostAttn, nil
		case ActResidDeltaMLP:
			return LocMLP, nil
		case ActResidPostMLP:
			return LocResidPostMLP, nil
		}
	}
	return LocUnknown, nil
}

// HookPoint is the standard engine's hook point of the activation (the
// original's get_hook_location_type_for_activation_location_type); ok is
// false for the 9 types the standard engine does not map (the *_LAYER_NORM
// residuals and the online autoencoder types).
func (a ActivationLocationType) HookPoint() (Point, bool) {
	i, ok := a.info()
	return i.point, ok && i.point.Valid()
}

// StandardActivationLocationTypes lists the 17 types with a hook point
// (standard_model_activation_location_types).
func StandardActivationLocationTypes() []ActivationLocationType {
	var out []ActivationLocationType
	for _, i := range actInfos {
		if i.point.Valid() {
			out = append(out, i.alt)
		}
	}
	return out
}

// ActivationLocationTypeForPoint is the inverse of HookPoint.
func ActivationLocationTypeForPoint(p Point) (ActivationLocationType, bool) {
	for _, i := range actInfos {
		if i.point == p && p.Valid() {
			return i.alt, true
		}
	}
	return "", false
}

// ActivationLocationTypeAndPassType pairs an activation with a pass.
type ActivationLocationTypeAndPassType struct {
	ActivationLocationType ActivationLocationType
	PassType               PassType
}

// ExistsByDefault is the activation's ExistsByDefault.
func (a ActivationLocationTypeAndPassType) ExistsByDefault() bool {
	return a.ActivationLocationType.ExistsByDefault()
}

// WeightLocationType names a weight tensor common to transformer
// architectures.
type WeightLocationType string

// Weight location types (docs/behaviour.md §4.3).
const (
	WeightMLPToHidden          WeightLocationType = "mlp.to_hidden"
	WeightMLPToResidual        WeightLocationType = "mlp.to_residual"
	WeightEmbedding            WeightLocationType = "embedding"
	WeightUnembedding          WeightLocationType = "unembedding"
	WeightPositionEmbedding    WeightLocationType = "position_embedding"
	WeightAttnToQuery          WeightLocationType = "attn.to_query"
	WeightAttnToKey            WeightLocationType = "attn.to_key"
	WeightAttnToValue          WeightLocationType = "attn.to_value"
	WeightAttnToResidual       WeightLocationType = "attn.to_residual"
	WeightLayerNormGainFinal   WeightLocationType = "layer_norm_gain.final"
	WeightLayerNormBiasFinal   WeightLocationType = "layer_norm_bias.final"
	WeightLayerNormGainPreAttn WeightLocationType = "layer_norm_gain.pre_attn"
	WeightLayerNormGainPreMLP  WeightLocationType = "layer_norm_gain.pre_mlp"
)

var weightShapes = map[WeightLocationType][]Dimension{
	WeightPositionEmbedding:    {DimMaxContextLength, DimResidualStreamChannels},
	WeightEmbedding:            {DimVocabSize, DimResidualStreamChannels},
	WeightUnembedding:          {DimResidualStreamChannels, DimVocabSize},
	WeightAttnToQuery:          {DimAttnHeads, DimResidualStreamChannels, DimQueryAndKeyChannels},
	WeightAttnToKey:            {DimAttnHeads, DimResidualStreamChannels, DimQueryAndKeyChannels},
	WeightAttnToValue:          {DimAttnHeads, DimResidualStreamChannels, DimValueChannels},
	WeightAttnToResidual:       {DimAttnHeads, DimValueChannels, DimResidualStreamChannels},
	WeightMLPToHidden:          {DimResidualStreamChannels, DimMLPActs},
	WeightMLPToResidual:        {DimMLPActs, DimResidualStreamChannels},
	WeightLayerNormGainPreMLP:  {DimResidualStreamChannels},
	WeightLayerNormGainPreAttn: {DimResidualStreamChannels},
	WeightLayerNormGainFinal:   {DimResidualStreamChannels},
	WeightLayerNormBiasFinal:   {DimResidualStreamChannels},
}

// WeightLocationTypes lists the 13 weight location types in the original's
// order.
func WeightLocationTypes() []WeightLocationType {
	return []WeightLocationType{WeightMLPToHidden, WeightMLPToResidual, WeightEmbedding, WeightUnembedding,
		WeightPositionEmbedding, WeightAttnToQuery, WeightAttnToKey, WeightAttnToValue, WeightAttnToResidual,
		WeightLayerNormGainFinal, WeightLayerNormBiasFinal, WeightLayerNormGainPreAttn, WeightLayerNormGainPreMLP}
}

// ParseWeightLocationType returns the type with this value ("mlp.to_hidden").
func ParseWeightLocationType(s string) (WeightLocationType, error) {
	if _, ok := weightShapes[WeightLocationType(s)]; ok {
		return WeightLocationType(s), nil
	}
	return "", fmt.Errorf("%w: weight location type %q", ErrUnknownLocation, s)
}

// IsMLPSpecific reports whether the weight belongs to the MLP (to_hidden,
// to_residual, the pre-MLP LayerNorm gain).
func (w WeightLocationType) IsMLPSpecific() bool {
	return w == WeightMLPToHidden || w == WeightMLPToResidual || w == WeightLayerNormGainPreMLP
}

// HasNoLayers reports whether there is one such weight per model
// (embeddings, unembedding, final LayerNorm).
func (w WeightLocationType) HasNoLayers() bool {
	switch w {
	case WeightEmbedding, WeightUnembedding, WeightPositionEmbedding, WeightLayerNormGainFinal, WeightLayerNormBiasFinal:
		return true
	}
	return false
}

// IsAbsolutePositionEmbeddingSpecific reports whether the weight exists
// only in models with absolute position embeddings.
func (w WeightLocationType) IsAbsolutePositionEmbeddingSpecific() bool {
	return w == WeightPositionEmbedding
}

// ShapeSpec is the weight's standard shape: privileged axes first (heads),
// then input, then output.
func (w WeightLocationType) ShapeSpec() []Dimension {
	return append([]Dimension(nil), weightShapes[w]...)
}

// DimensionIndex is the axis of d in the weight's shape; d must occur
// exactly once (get_dimension_index_of_weight_location_type).
func (w WeightLocationType) DimensionIndex(d Dimension) (int, error) {
	spec, ok := weightShapes[w]
	if !ok {
		return 0, fmt.Errorf("%w: weight location type %q", ErrUnknownLocation, string(w))
	}
	idx, n := -1, 0
	for i, x := range spec {
		if x == d {
			idx = i
			n++
		}
	}
	if n != 1 {
		return 0, fmt.Errorf("%w: %s occurs %d times in the shape of %s %v, want once", ErrUnknownDimension, d, n, w, spec)
	}
	return idx, nil
}

// ParseStandardLocation parses the standard engine's location strings:
// "7/mlp/post_act" gives ("mlp/post_act", 7) and "resid/post_emb" gives
// ("resid/post_emb", -1) (parse_standard_location_str).
func ParseStandardLocation(s string) (string, int, error) {
	if s == "" {
		return "", 0, fmt.Errorf("%w: empty location", ErrUnknownLocation)
	}
	if s[0] < '0' || s[0] > '9' {
		return s, -1, nil
	}
	var layer int
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		layer = layer*10 + int(s[i]-'0')
		i++
		if layer > 1<<20 {
			return "", 0, fmt.Errorf("%w: layer in %q", ErrUnknownLocation, s)
		}
	}
	if i >= len(s) || s[i] != '/' || i+1 == len(s) {
		return "", 0, fmt.Errorf("%w: %q is not LAYER/PATH", ErrUnknownLocation, s)
	}
	return s[i+1:], layer, nil
}

package modelctx

// The dimensions, node types and location enums of the original's component
// registry are the shared vocabulary of package vocab; these names keep them
// beside ModelContext, whose methods take them.

import "github.com/onnx-tdb/onnx-tdb/vocab"

type (
	Dimension                         = vocab.Dimension
	LocationWithinLayer               = vocab.LocationWithinLayer
	NodeType                          = vocab.NodeType
	PassType                          = vocab.PassType
	ActivationLocationType            = vocab.ActivationLocationType
	ActivationLocationTypeAndPassType = vocab.ActivationLocationTypeAndPassType
	WeightLocationType                = vocab.WeightLocationType
)

const (
	DimSequenceTokens                     = vocab.DimSequenceTokens
	DimAttendedToSequenceTokens           = vocab.DimAttendedToSequenceTokens
	DimMaxContextLength                   = vocab.DimMaxContextLength
	DimResidualStreamChannels             = vocab.DimResidualStreamChannels
	DimVocabSize                          = vocab.DimVocabSize
	DimAttnHeads                          = vocab.DimAttnHeads
	DimQueryAndKeyChannels                = vocab.DimQueryAndKeyChannels
	DimValueChannels                      = vocab.DimValueChannels
	DimMLPActs                            = vocab.DimMLPActs
	DimLayers                             = vocab.DimLayers
	DimSingleton                          = vocab.DimSingleton
	DimAutoencoderLatents                 = vocab.DimAutoencoderLatents
	DimAutoencoderLatentsByPairs          = vocab.DimAutoencoderLatentsByPairs
	LocUnknown                            = vocab.LocUnknown
	LocEndOfPrevLayer                     = vocab.LocEndOfPrevLayer
	LocAttn                               = vocab.LocAttn
	LocResidPostAttn                      = vocab.LocResidPostAttn
	LocMLP                                = vocab.LocMLP
	LocResidPostMLP                       = vocab.LocResidPostMLP
	NodeAttentionHead                     = vocab.NodeAttentionHead
	NodeQKChannel                         = vocab.NodeQKChannel
	NodeVChannel                          = vocab.NodeVChannel
	NodeMLPNeuron                         = vocab.NodeMLPNeuron
	NodeAutoencoderLatent                 = vocab.NodeAutoencoderLatent
	NodeMLPAutoencoderLatent              = vocab.NodeMLPAutoencoderLatent
	NodeAttentionAutoencoderLatent        = vocab.NodeAttentionAutoencoderLatent
	NodeAutoencoderLatentByTokenPair      = vocab.NodeAutoencoderLatentByTokenPair
	NodeLayer                             = vocab.NodeLayer
	NodeResidualStreamChannel             = vocab.NodeResidualStreamChannel
	NodeVocabToken                        = vocab.NodeVocabToken
	PassForward                           = vocab.PassForward
	PassBackward                          = vocab.PassBackward
	ActResidPostEmbedding                 = vocab.ActResidPostEmbedding
	ActResidDeltaAttn                     = vocab.ActResidDeltaAttn
	ActResidPostAttn                      = vocab.ActResidPostAttn
	ActResidDeltaMLP                      = vocab.ActResidDeltaMLP
	ActResidPostMLP                       = vocab.ActResidPostMLP
	ActResidPostMLPLayerNorm              = vocab.ActResidPostMLPLayerNorm
	ActResidPostAttnLayerNorm             = vocab.ActResidPostAttnLayerNorm
	ActResidPostFinalLayerNorm            = vocab.ActResidPostFinalLayerNorm
	ActMLPInputLayerNormScale             = vocab.ActMLPInputLayerNormScale
	ActAttnInputLayerNormScale            = vocab.ActAttnInputLayerNormScale
	ActResidFinalLayerNormScale           = vocab.ActResidFinalLayerNormScale
	ActAttnQuery                          = vocab.ActAttnQuery
	ActAttnKey                            = vocab.ActAttnKey
	ActAttnValue                          = vocab.ActAttnValue
	ActAttnQKLogits                       = vocab.ActAttnQKLogits
	ActAttnQKProbs                        = vocab.ActAttnQKProbs
	ActAttnWeightedSumOfValues            = vocab.ActAttnWeightedSumOfValues
	ActMLPPreAct                          = vocab.ActMLPPreAct
	ActMLPPostAct                         = vocab.ActMLPPostAct
	ActLogits                             = vocab.ActLogits
	ActOnlineAutoencoderLatent            = vocab.ActOnlineAutoencoderLatent
	ActOnlineMLPAutoencoderLatent         = vocab.ActOnlineMLPAutoencoderLatent
	ActOnlineAttentionAutoencoderLatent   = vocab.ActOnlineAttentionAutoencoderLatent
	ActOnlineMLPAutoencoderError          = vocab.ActOnlineMLPAutoencoderError
	ActOnlineResidualMLPAutoencoderError  = vocab.ActOnlineResidualMLPAutoencoderError
	ActOnlineResidualAttnAutoencoderError = vocab.ActOnlineResidualAttnAutoencoderError
	WeightMLPToHidden                     = vocab.WeightMLPToHidden
	WeightMLPToResidual                   = vocab.WeightMLPToResidual
	WeightEmbedding                       = vocab.WeightEmbedding
	WeightUnembedding                     = vocab.WeightUnembedding
	WeightPositionEmbedding               = vocab.WeightPositionEmbedding
	WeightAttnToQuery                     = vocab.WeightAttnToQuery
	WeightAttnToKey                       = vocab.WeightAttnToKey
	WeightAttnToValue                     = vocab.WeightAttnToValue
	WeightAttnToResidual                  = vocab.WeightAttnToResidual
	WeightLayerNormGainFinal              = vocab.WeightLayerNormGainFinal
	WeightLayerNormBiasFinal              = vocab.WeightLayerNormBiasFinal
	WeightLayerNormGainPreAttn            = vocab.WeightLayerNormGainPreAttn
	WeightLayerNormGainPreMLP             = vocab.WeightLayerNormGainPreMLP
)

var (
	ErrUnknownDimension             = vocab.ErrUnknownDimension
	ErrUnknownLocation              = vocab.ErrUnknownLocation
	ErrNoLocation                   = vocab.ErrNoLocation
	ErrNoNodeType                   = vocab.ErrNoNodeType
	Dimensions                      = vocab.Dimensions
	ParseDimension                  = vocab.ParseDimension
	NodeTypes                       = vocab.NodeTypes
	ParseNodeType                   = vocab.ParseNodeType
	ActivationLocationTypes         = vocab.ActivationLocationTypes
	ParseActivationLocationType     = vocab.ParseActivationLocationType
	StandardActivationLocationTypes = vocab.StandardActivationLocationTypes
	ActivationLocationTypeForPoint  = vocab.ActivationLocationTypeForPoint
	WeightLocationTypes             = vocab.WeightLocationTypes
	ParseWeightLocationType         = vocab.ParseWeightLocationType
	ParseStandardLocation           = vocab.ParseStandardLocation
)

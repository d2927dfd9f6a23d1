package hooks

// The hook points, sites and dimensions are the shared vocabulary of package
// vocab; these names keep them where hooks are registered (hooks.MLP.PostAct).

import "github.com/onnx-tdb/onnx-tdb/vocab"

type (
	Dim             = vocab.Dim
	Point           = vocab.Point
	PointSpec       = vocab.PointSpec
	LayerNormPoints = vocab.LayerNormPoints
	Site            = vocab.Site
)

const (
	Batch                     = vocab.Batch
	Seq                       = vocab.Seq
	Keys                      = vocab.Keys
	Model                     = vocab.Model
	Heads                     = vocab.Heads
	HeadDim                   = vocab.HeadDim
	FF                        = vocab.FF
	Vocab                     = vocab.Vocab
	One                       = vocab.One
	Latents                   = vocab.Latents
	SAEInput                  = vocab.SAEInput
	ResidPostEmb              = vocab.ResidPostEmb
	LnAttnPostMeanSubtraction = vocab.LnAttnPostMeanSubtraction
	LnAttnScale               = vocab.LnAttnScale
	LnAttnPostScale           = vocab.LnAttnPostScale
	PostLnAttn                = vocab.PostLnAttn
	AttnQ                     = vocab.AttnQ
	AttnK                     = vocab.AttnK
	AttnV                     = vocab.AttnV
	AttnQKLogits              = vocab.AttnQKLogits
	AttnQKSoftmaxDenominator  = vocab.AttnQKSoftmaxDenominator
	AttnQKProbs               = vocab.AttnQKProbs
	AttnVOut                  = vocab.AttnVOut
	DeltaAttn                 = vocab.DeltaAttn
	PostAttn                  = vocab.PostAttn
	LnMLPPostMeanSubtraction  = vocab.LnMLPPostMeanSubtraction
	LnMLPScale                = vocab.LnMLPScale
	LnMLPPostScale            = vocab.LnMLPPostScale
	PostLnMLP                 = vocab.PostLnMLP
	MLPPreAct                 = vocab.MLPPreAct
	MLPPostAct                = vocab.MLPPostAct
	DeltaMLP                  = vocab.DeltaMLP
	PostMLP                   = vocab.PostMLP
	LnFPostMeanSubtraction    = vocab.LnFPostMeanSubtraction
	LnFScale                  = vocab.LnFScale
	LnFPostScale              = vocab.LnFPostScale
	PostLnF                   = vocab.PostLnF
	LogitsPoint               = vocab.LogitsPoint
	SAELatents                = vocab.SAELatents
	SAEReconstruction         = vocab.SAEReconstruction
	SAEError                  = vocab.SAEError
)

var (
	Resid           = vocab.Resid
	Attn            = vocab.Attn
	MLP             = vocab.MLP
	SAE             = vocab.SAE
	Logits          = vocab.Logits
	ErrUnknownPoint = vocab.ErrUnknownPoint
	ErrPointExists  = vocab.ErrPointExists
	RegisterPoint   = vocab.RegisterPoint
	Parse           = vocab.Parse
	TDBPoints       = vocab.TDBPoints
	Points          = vocab.Points
	ParseSite       = vocab.ParseSite
	ResidualInto    = vocab.ResidualInto
)

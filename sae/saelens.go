package sae

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/onnx-tdb/onnx-tdb/export/safetensors"
)

// The files of a SAELens folder.
const (
	saelensCfgName      = "cfg.json"
	saelensWeightsName  = "sae_weights.safetensors"
	saelensSparsityName = "sparsity.safetensors"
)

// DeadLog10Density is the log10 feature density at or below which a
// SAELens latent counts as dead (sparsity.safetensors).
const DeadLog10Density = -8

// IsSAELensFolder reports whether dir holds a SAELens SAE (cfg.json and
// sae_weights.safetensors).
func IsSAELensFolder(dir string) bool {
	for _, f := range []string{saelensCfgName, saelensWeightsName} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.IsDir() {
			return false
		}
	}
	return true
}

// saelensKey identifies a SAELens folder's content for the cache: its
// files' sizes and times, and the overrides applied.
func saelensKey(dir string, ov Overrides) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	parts := []string{"saelens", abs, ov.key()}
	for _, f := range []string{saelensCfgName, saelensWeightsName, saelensSparsityName} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return "", err
		}
		parts = append(parts, fmt.Sprintf("%s:%d:%d", f, st.Size(), st.ModTime().UnixNano()))
	}
	return cacheKey(strings.Join(parts, "\x00")), nil
}

// Overrides change a SAELens SAE as SAELens's registry does for some
// releases: a norm_scaling_factor folded into the weights and
// model_from_pretrained_kwargs entries over the cfg's.
type Overrides struct {
	NormScalingFactor float64         // 0: none
	Processing        map[string]bool // fold_ln, center_writing_weights, ...
}

func (o Overrides) key() string {
	s := fmt.Sprintf("nsf=%g", o.NormScalingFactor)
	for _, k := range []string{"fold_ln", "center_writing_weights", "fold_value_biases", "center_unembed"} {
		if v, ok := o.Processing[k]; ok {
			s += fmt.Sprintf(";%s=%v", k, v)
		}
	}
	return s
}

func (o Overrides) apply(p *Processing) {
	set := func(key string, dst *bool) {
		if v, ok := o.Processing[key]; ok {
			*dst = v
		}
	}
	set("fold_ln", &p.FoldLN)
	set("center_writing_weights", &p.CenterWritingWeights)
	set("fold_value_biases", &p.FoldValueBiases)
	set("center_unembed", &p.CenterUnembed)
}

// convertSAELens reads a SAELens folder and writes its converted folder.
func convertSAELens(src, dir string, ov Overrides) error {
	b, err := os.ReadFile(filepath.Join(src, saelensCfgName))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadSAELensFolder, err)
	}
	cfg, err := parseSAELensCfg(b)
	if err != nil {
		return err
	}
	ov.apply(&cfg.Site.Processing)
	st, err := safetensors.Open(filepath.Join(src, saelensWeightsName))
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrBadSAELensFolder, saelensWeightsName, err)
	}
	defer st.Close()
	p, err := saelensParams(cfg, st, ov.NormScalingFactor)
	if err != nil {
		return err
	}
	if err := readSparsity(filepath.Join(src, saelensSparsityName), p); err != nil {
		return err
	}
	m := folderManifest{
		Source: src, NInputs: cfg.DIn, NLatents: cfg.DSAE, Activation: p.act,
		Family: cfg.Architecture, NoInputBias: p.noInputBias, Dead: p.dead, Site: &cfg.Site,
	}
	if cfg.isTranscoder() {
		m.NOutputs = cfg.DOut
	}
	switch cfg.Norm {
	case NormConstantNormRescale, NormLayerNorm:
		m.Norm = cfg.Norm
	}
	return writeFolder(dir, m, func(ww *weightWriter) error { return writeSAELens(ww, p) })
}

// saelensParams holds a SAELens SAE in this package's layout: encoder
// [N,n], decoder [m,N] (SAELens stores both transposed).
type saelensParamSet struct {
	act         Activation
	n, N, m     int
	noInputBias bool
	encoder     []float32
	latentBias  []float32
	decoder     []float32
	bDec        []float32
	threshold   []float32
	magEncoder  []float32
	magBias     []float32
	skip        []float32
	frequency   []float32
	dead        *int
}

func readF32Tensor(st *safetensors.File, name string, shape ...int) ([]float32, error) {
	v, got, err := st.Float32(name)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrBadSAELensFolder, name, err)
	}
	if fmt.Sprint(got) != fmt.Sprint(shape) {
		return nil, fmt.Errorf("%w: %s has shape %v, cfg.json says %v", ErrShape, name, got, shape)
	}
	return v, nil
}

func hasTensor(st *safetensors.File, name string) bool {
	_, _, err := st.Raw(name)
	return err == nil
}

func saelensParams(cfg *saelensCfg, st *safetensors.File, nsf float64) (*saelensParamSet, error) {
	n, N, m := cfg.DIn, cfg.DSAE, cfg.DOut
	p := &saelensParamSet{n: n, N: N, m: m, noInputBias: !cfg.ApplyBDec || cfg.isTranscoder()}
	wEnc, err := readF32Tensor(st, "W_enc", n, N)
	if err != nil {
		return nil, err
	}
	wDec, err := readF32Tensor(st, "W_dec", N, m)
	if err != nil {
		return nil, err
	}
	if p.bDec, err = readF32Tensor(st, "b_dec", m); err != nil {
		return nil, err
	}
	if !cfg.isTranscoder() && m != n {
		return nil, fmt.Errorf("%w: b_dec has %d values, d_in is %d", ErrShape, m, n)
	}
	if cfg.Architecture == FamilyGated {
		if p.latentBias, err = readF32Tensor(st, "b_gate", N); err != nil {
			return nil, err
		}
	} else if p.latentBias, err = readF32Tensor(st, "b_enc", N); err != nil {
		return nil, err
	}
	p.encoder = transpose(wEnc, n, N)
	p.decoder = transpose(wDec, N, m)
	if hasTensor(st, "scaling_factor") {
		// Pre-6 finetuning factor: it scales the latents before decoding.
		s, err := readF32Tensor(st, "scaling_factor", N)
		if err != nil {
			return nil, err
		}
		scaleColumns(p.decoder, m, N, s, false)
	}
	switch cfg.Architecture {
	case FamilyStandard, FamilyTranscoder, FamilySkipTranscoder:
		p.act = Activation{Name: ReLU}
	case FamilyTopK:
		p.act = Activation{Name: TopK, K: cfg.K, PostAct: ReLU}
		if cfg.Rescale {
			// (pre·‖d_j‖) picks and scales the latents, (z/‖d_j‖) · W_dec
			// decodes: fold both into the weights.
			norms := rowNorms(wDec, N, m)
			scaleRows(p.encoder, N, n, norms)
			for j := range p.latentBias {
				p.latentBias[j] *= norms[j]
			}
			scaleColumns(p.decoder, m, N, norms, true)
		}
	case FamilyJumpReLU, FamilyJumpReLUTranscoder:
		p.act = Activation{Name: JumpReLU}
		if p.threshold, err = readF32Tensor(st, "threshold", N); err != nil {
			return nil, err
		}
	case FamilyGated:
		p.act = Activation{Name: Gated}
		rMag, err := readF32Tensor(st, "r_mag", N)
		if err != nil {
			return nil, err
		}
		if p.magBias, err = readF32Tensor(st, "b_mag", N); err != nil {
			return nil, err
		}
		p.magEncoder = append([]float32(nil), p.encoder...)
		e := make([]float32, N)
		for j, r := range rMag {
			e[j] = float32(math.Exp(float64(r)))
		}
		scaleRows(p.magEncoder, N, n, e)
	}
	if cfg.Architecture == FamilySkipTranscoder {
		if p.skip, err = readF32Tensor(st, "W_skip", m, n); err != nil {
			return nil, err
		}
	}
	if nsf != 0 && cfg.Norm == NormExpectedAverageOnlyIn {
		// SAELens's fold_activation_norm_scaling_factor, which from_pretrained
		// applies only to expected_average_only_in SAEs: W_enc·s, W_dec/s,
		// b_dec/s (and a JumpReLU threshold is in encoder units already).
		for i := range p.encoder {
			p.encoder[i] *= float32(nsf)
		}
		for i := range p.magEncoder {
			p.magEncoder[i] *= float32(nsf)
		}
		for i := range p.decoder {
			p.decoder[i] /= float32(nsf)
		}
		for i := range p.bDec {
			p.bDec[i] /= float32(nsf)
		}
	}
	return p, nil
}

// readSparsity reads log10 feature densities, when the file is there: the
// latents at or below DeadLog10Density are dead.
func readSparsity(path string, p *saelensParamSet) error {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	st, err := safetensors.Open(path)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrBadSAELensFolder, saelensSparsityName, err)
	}
	defer st.Close()
	v, err := readF32Tensor(st, "sparsity", p.N)
	if err != nil {
		return err
	}
	dead := 0
	p.frequency = make([]float32, p.N)
	for i, l := range v {
		if l <= DeadLog10Density {
			dead++
		}
		p.frequency[i] = float32(math.Pow(10, float64(l)))
	}
	p.dead = &dead
	return nil
}

func writeSAELens(ww *weightWriter, p *saelensParamSet) error {
	N, n, m := int64(p.N), int64(p.n), int64(p.m)
	freq := p.frequency
	if freq == nil {
		freq = make([]float32, p.N)
		for i := range freq {
			freq[i] = 1
		}
	}
	type t struct {
		key  string
		dims []int64
		v    []float32
	}
	list := []t{
		{keyPreBias, []int64{m}, p.bDec},
		{keyEncoder, []int64{N, n}, p.encoder},
		{keyLatentBias, []int64{N}, p.latentBias},
		{keyDecoder, []int64{m, N}, p.decoder},
		{keyFrequency, []int64{N}, freq},
		{keyMeanSquare, []int64{N}, make([]float32, p.N)},
	}
	if p.threshold != nil {
		list = append(list, t{keyThreshold, []int64{N}, p.threshold})
	}
	if p.magEncoder != nil {
		list = append(list, t{keyMagEncoder, []int64{N, n}, p.magEncoder}, t{keyMagBias, []int64{N}, p.magBias})
	}
	if p.skip != nil {
		list = append(list, t{keySkip, []int64{m, n}, p.skip})
	}
	for _, x := range list {
		if err := ww.putF32(x.key, x.dims, x.v); err != nil {
			return err
		}
	}
	return ww.putI64(keyLastNZ, []int64{N}, make([]int64, p.N))
}

// transpose returns the [cols, rows] transpose of a [rows, cols] matrix.
func transpose(a []float32, rows, cols int) []float32 {
	out := make([]float32, len(a))
	const blk = 64
	for i0 := 0; i0 < rows; i0 += blk {
		for j0 := 0; j0 < cols; j0 += blk {
			for i := i0; i < min(i0+blk, rows); i++ {
				for j := j0; j < min(j0+blk, cols); j++ {
					out[j*rows+i] = a[i*cols+j]
				}
			}
		}
	}
	return out
}

// rowNorms is the L2 norm of each row of a [rows, cols] matrix.
func rowNorms(a []float32, rows, cols int) []float32 {
	out := make([]float32, rows)
	for i := range out {
		var s float64
		for _, v := range a[i*cols : (i+1)*cols] {
			s += float64(v) * float64(v)
		}
		out[i] = float32(math.Sqrt(s))
	}
	return out
}

func scaleRows(a []float32, rows, cols int, s []float32) {
	for i := 0; i < rows; i++ {
		for j := i * cols; j < (i+1)*cols; j++ {
			a[j] *= s[i]
		}
	}
}

// scaleColumns multiplies (or divides) column j of a [rows, cols] matrix
// by s[j].
func scaleColumns(a []float32, rows, cols int, s []float32, divide bool) {
	for i := 0; i < rows; i++ {
		row := a[i*cols : (i+1)*cols]
		for j := range row {
			if divide {
				row[j] /= s[j]
			} else {
				row[j] *= s[j]
			}
		}
	}
}

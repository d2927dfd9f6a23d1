package sae

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// DeadLatentThreshold is the activation frequency below which a latent
// counts as dead (the original's ACTIVATION_FREQUENCY_THRESHOLD_FOR_DEAD_LATENTS).
const DeadLatentThreshold = 1e-8

// ErrNoFrequencies is returned by DeadLatents when every activation
// frequency is 0 (the statistics were never recorded).
var ErrNoFrequencies = errors.New("no activation frequencies recorded")

// DeadLatents counts the latents whose recorded activation frequency is
// below DeadLatentThreshold (the original's count_dead_latents). A file
// without frequencies has the default of ones: no dead latents.
func (a *Autoencoder) DeadLatents() (int, error) {
	if a.man.Family != FamilyTDB && a.man.Family != FamilyOpenAIV5 {
		// SAELens folders: log10 densities at or below DeadLog10Density,
		// when sparsity.safetensors was there.
		if a.man.Dead == nil {
			return 0, fmt.Errorf("sae %s: %w", a.Source, ErrNoFrequencies)
		}
		return *a.man.Dead, nil
	}
	freq, _, err := a.Tensor(keyFrequency)
	if err != nil {
		return 0, err
	}
	dead, zeros := 0, 0
	for _, f := range freq {
		if f < DeadLatentThreshold {
			dead++
		}
		if f == 0 {
			zeros++
		}
	}
	if zeros == len(freq) {
		return 0, fmt.Errorf("sae %s: %w", a.Source, ErrNoFrequencies)
	}
	return dead, nil
}

// Trim returns a new autoencoder with only the first keep latents (the
// original's omit_least_active_latents with preserve_indices, which assumes
// dead latents are stored last, so latent ids stay the same): encoder rows,
// decoder columns, latent_bias and the statistics are cut.
//
// Unlike the original, which builds a fresh Autoencoder and forgets to copy
// pre_bias (left at zero) and the activation (reset to ReLU), Trim keeps
// both: the trimmed autoencoder computes exactly the kept latents of this
// one. The trimmed folder is written once beside this one (<dir>.keep<K>),
// or privately for an autoencoder from LoadStateDict. The receiver stays
// open; the caller closes both.
func (a *Autoencoder) Trim(keep int) (*Autoencoder, error) {
	if a.man.Family != FamilyTDB {
		return nil, fmt.Errorf("%w: only TDB's own autoencoders are trimmed (this is %s)", ErrTrim, a.man.Family)
	}
	if keep <= 0 || keep > a.NLatents {
		return nil, fmt.Errorf("%w: keep %d of %d latents", ErrTrim, keep, a.NLatents)
	}
	if a.Activation.Name == TopK && keep < a.Activation.K {
		return nil, fmt.Errorf("%w: keep %d latents, fewer than TopK's k=%d", ErrTrim, keep, a.Activation.K)
	}
	if keep == a.NLatents && !a.ownDir {
		return openFolder(a.dir, a.Source, a.opts, false)
	}
	m := folderManifest{Source: a.Source, NInputs: a.NInputs, NLatents: keep, Activation: a.Activation}
	fill := func(ww *weightWriter) error { return a.writeTrimmed(ww, keep) }
	if a.ownDir {
		tmp, err := os.MkdirTemp("", "onnx-tdb-sae-")
		if err != nil {
			return nil, err
		}
		dir := filepath.Join(tmp, "sae")
		if err := writeFolder(dir, m, fill); err != nil {
			os.RemoveAll(tmp)
			return nil, fmt.Errorf("trim sae: %w", err)
		}
		ae, err := openFolder(dir, a.Source, a.opts, true)
		if err != nil {
			os.RemoveAll(tmp)
		}
		return ae, err
	}
	dir := fmt.Sprintf("%s.keep%d", a.dir, keep)
	defer lockFolder(dir)()
	if !isConverted(dir) {
		if err := writeFolder(dir, m, fill); err != nil {
			return nil, fmt.Errorf("trim sae: %w", err)
		}
	}
	return openFolder(dir, a.Source, a.opts, false)
}

// writeTrimmed copies the kept part of every tensor from the weights file,
// a row at a time, without reading the whole autoencoder into memory.
func (a *Autoencoder) writeTrimmed(ww *weightWriter, keep int) error {
	f, err := os.Open(filepath.Join(a.dir, weightsName))
	if err != nil {
		return err
	}
	defer f.Close()
	N, n, K := int64(a.NLatents), int64(a.NInputs), int64(keep)
	prefix := func(key string, bytes int64) func(w io.Writer) error {
		return func(w io.Writer) error {
			ref := a.man.Tensors[key]
			_, err := io.Copy(w, io.NewSectionReader(f, ref.Offset, bytes))
			return err
		}
	}
	for _, t := range []struct {
		key   string
		dtype string
		dims  []int64
		fill  func(w io.Writer) error
	}{
		{keyPreBias, "float32", []int64{n}, prefix(keyPreBias, 4*n)},
		{keyEncoder, "float32", []int64{K, n}, prefix(keyEncoder, 4*K*n)},
		{keyLatentBias, "float32", []int64{K}, prefix(keyLatentBias, 4*K)},
		{keyDecoder, "float32", []int64{n, K}, func(w io.Writer) error {
			ref := a.man.Tensors[keyDecoder]
			for r := int64(0); r < n; r++ {
				if _, err := io.Copy(w, io.NewSectionReader(f, ref.Offset+4*r*N, 4*K)); err != nil {
					return err
				}
			}
			return nil
		}},
		{keyFrequency, "float32", []int64{K}, prefix(keyFrequency, 4*K)},
		{keyMeanSquare, "float32", []int64{K}, prefix(keyMeanSquare, 4*K)},
		{keyLastNZ, "int64", []int64{K}, prefix(keyLastNZ, 8*K)},
	} {
		if err := ww.put(t.key, t.dtype, t.dims, t.fill); err != nil {
			return err
		}
	}
	return nil
}

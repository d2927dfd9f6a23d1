package llama

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/onnx-tdb/onnx-tdb/export/safetensors"
)

// ConfigFile and TokenizerFile are the Hugging Face folder's file names.
const (
	ConfigFile    = "config.json"
	TokenizerFile = "tokenizer.json"
)

// ErrNotCheckpoint is returned for a folder that is not a Llama checkpoint.
var ErrNotCheckpoint = errors.New("not a llama checkpoint folder")

// Checkpoint is an open Hugging Face LlamaForCausalLM folder. It owns the
// open safetensors files; Close releases them.
type Checkpoint struct {
	Dir    string
	Config Config
	set    *safetensors.Set
}

// looksLlama reports whether a config.json names the llama model type or
// the LlamaForCausalLM architecture.
func looksLlama(b []byte) bool {
	var h struct {
		ModelType     string   `json:"model_type"`
		Architectures []string `json:"architectures"`
	}
	if json.Unmarshal(b, &h) != nil {
		return false
	}
	for _, a := range h.Architectures {
		if a == "LlamaForCausalLM" {
			return true
		}
	}
	return h.ModelType == "llama"
}

// OpenCheckpoint reads dir's config.json and opens its safetensors file or
// shards.
func OpenCheckpoint(dir string) (*Checkpoint, error) {
	b, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s has no %s", ErrNotCheckpoint, dir, ConfigFile)
		}
		return nil, fmt.Errorf("open llama checkpoint: %w", err)
	}
	cfg, err := ParseConfig(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, ConfigFile), err)
	}
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		return nil, fmt.Errorf("open llama checkpoint %s: %w", dir, err)
	}
	return &Checkpoint{Dir: dir, Config: cfg, set: set}, nil
}

// Close closes the checkpoint's files.
func (c *Checkpoint) Close() error { return c.set.Close() }

// Describe names the checkpoint for messages and the manifest.
func (c *Checkpoint) Describe() string { return "hf-llama:" + c.Dir }

// Tensor returns a tensor widened to float32 and its shape, looked up
// under its Hugging Face name or that name without the "model." prefix.
func (c *Checkpoint) Tensor(name string) ([]float32, []int, error) {
	for _, n := range sourceNames(name) {
		if c.set.Has(n) {
			v, shape, err := c.set.Float32(n)
			if err != nil {
				return nil, nil, fmt.Errorf("read %s: %w", n, err)
			}
			return v, shape, nil
		}
	}
	return nil, nil, fmt.Errorf("%s: %w %q", c.Dir, safetensors.ErrNoTensor, name)
}

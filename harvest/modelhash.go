package harvest

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/onnx-tdb/onnx-tdb/modelctx"
)

// hashSamples and sampleBytes size the weights sample of a model hash.
const (
	hashSamples = 64
	sampleBytes = 64 << 10
)

// ModelHash identifies an opened model for the job: sha256 of its manifest
// (less its name and source, which differ between copies of one model) and
// of 64 evenly spaced 64 KiB samples of its weights file with its size.
func ModelHash(m *modelctx.Transformer) (string, error) {
	raw, err := os.ReadFile(filepath.Join(m.Dir(), "manifest.json"))
	if err != nil {
		return "", fmt.Errorf("model hash: %w", err)
	}
	var man map[string]any
	if err := json.Unmarshal(raw, &man); err != nil {
		return "", fmt.Errorf("model hash: manifest: %w", err)
	}
	delete(man, "name")
	delete(man, "source")
	canon, _ := json.Marshal(man) // map keys sorted
	h := sha256.New()
	h.Write(canon)
	if wf := m.Manifest().Weights.File; wf != "" {
		if err := sampleFile(h, filepath.Join(m.Dir(), wf)); err != nil {
			return "", fmt.Errorf("model hash: %w", err)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func sampleFile(h io.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	size := st.Size()
	binary.Write(h, binary.LittleEndian, size)
	buf := make([]byte, sampleBytes)
	for i := int64(0); i < hashSamples; i++ {
		off := size * i / hashSamples
		n, err := f.ReadAt(buf, off)
		if err != nil && err != io.EOF {
			return err
		}
		h.Write(buf[:n])
	}
	return nil
}

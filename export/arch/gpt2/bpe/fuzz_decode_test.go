package bpe

import (
	"encoding/binary"
	"testing"
)

// FuzzDecode: ids from anywhere (a --tokens row, a saved file) decode to a
// string or an error, never a panic; ids in range always decode.
func FuzzDecode(f *testing.F) {
	tok, err := GPT2()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(binary.LittleEndian.AppendUint32(nil, 15496))
	f.Add(binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, 50256), 0xffffffff))
	f.Add([]byte{0x7f, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		var ids []int
		inRange := true
		for len(b) >= 4 {
			id := int(int32(binary.LittleEndian.Uint32(b)))
			inRange = inRange && id >= 0 && id < tok.NVocab()
			ids = append(ids, id)
			b = b[4:]
		}
		_, err := tok.Decode(ids)
		if inRange && err != nil {
			t.Fatalf("ids in range %v: %v", ids, err)
		}
		tok.DecodeTokens(ids)
	})
}

package main

import (
	"debug/elf"
	"encoding/binary"
	"flag"
	"fmt"
	"os"
)

const fatbinMagic = 0xBA55ED50

func main() {
	sm := flag.Uint("sm", 90, "SM version to keep (90 for H100/H200)")
	flag.Parse()
	if flag.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: trimfatbin [-sm N] in.so out.so")
		os.Exit(2)
	}
	if err := trim(flag.Arg(0), flag.Arg(1), uint32(*sm)); err != nil {
		fmt.Fprintln(os.Stderr, "trimfatbin:", err)
		os.Exit(1)
	}
}

func trim(in, out string, sm uint32) error {
	f, err := elf.Open(in)
	if err != nil {
		return err
	}
	sec := f.Section(".nv_fatbin")
	f.Close()
	if sec == nil {
		return fmt.Errorf("%s has no .nv_fatbin section", in)
	}
	data, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	le := binary.LittleEndian
	start, end := int(sec.Offset), int(sec.Offset+sec.Size)
	kept, zeroed := 0, 0
	for p := start; p+16 <= end; {
		if le.Uint32(data[p:]) != fatbinMagic {
			p += 8 // padding between fat binaries
			continue
		}
		hsz := int(le.Uint16(data[p+6:]))
		size := int(le.Uint64(data[p+8:]))
		first, stop := p+hsz, p+hsz+size
		if stop > end {
			return fmt.Errorf("fat binary at %#x runs past the section", p)
		}
		var entry []byte
		for q := first; q+32 <= stop; {
			ehsz := int(le.Uint32(data[q+4:]))
			psz := int(le.Uint64(data[q+8:]))
			if ehsz < 32 || q+ehsz+psz > stop {
				return fmt.Errorf("bad entry at %#x", q)
			}
			if le.Uint32(data[q+28:]) == sm && entry == nil {
				entry = append([]byte(nil), data[q:q+ehsz+psz]...)
			}
			q += ehsz + psz
		}
		if entry != nil {
			copy(data[first:], entry)
			clear(data[first+len(entry) : stop])
			le.PutUint64(data[p+8:], uint64(len(entry)))
			kept += len(entry)
			zeroed += stop - first - len(entry)
		}
		p = stop
	}
	fmt.Printf("kept %.1f MB of sm_%d kernels, zeroed %.1f MB\n", float64(kept)/1e6, sm, float64(zeroed)/1e6)
	return os.WriteFile(out, data, 0o755)
}

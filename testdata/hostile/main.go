// Command hostile writes the hostile input files of package internal/hostile
// to a folder, for trying them by hand (onnx-tdb sae info, export, ...):
//
//	go run ./testdata/hostile -out /tmp/hostile
//
// The tests generate the same bytes in memory; nothing here is committed.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/onnx-tdb/onnx-tdb/internal/hostile"
)

func main() {
	out := flag.String("out", "hostile-files", "folder to write the files to")
	flag.Parse()
	if err := write(*out); err != nil {
		fmt.Fprintln(os.Stderr, "hostile:", err)
		os.Exit(1)
	}
}

func write(out string) error {
	files := append(hostile.PT(), hostile.Configs()...)
	for _, f := range files {
		dir := out
		if f.Kind == "config" {
			dir = filepath.Join(out, "config", f.Name[:len(f.Name)-len(".json")])
			f.Name = "config.json"
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, f.Name), f.Bytes, 0o644); err != nil {
			return err
		}
	}
	fmt.Print(hostile.Sizes(files))
	return nil
}

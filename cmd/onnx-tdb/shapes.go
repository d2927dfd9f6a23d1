package main

import (
	"fmt"
	"strings"

	"github.com/onnx-tdb/onnx-tdb/export"
	"github.com/onnx-tdb/onnx-tdb/hooks"
)

// dimShape writes a point's shape in dimension terms, with the model's size
// of each fixed one: [batch seq heads=12 d_head=64].
func dimShape(p hooks.Point, cfg export.Dims) string {
	var parts []string
	for _, d := range p.Shape() {
		if n := cfg.Size(d); n > 0 && d != hooks.One {
			parts = append(parts, fmt.Sprintf("%s=%d", d, n))
		} else {
			parts = append(parts, string(d))
		}
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// plural writes "1 token", "2 tokens", "3 entries".
func plural(n int, word string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, word)
	}
	if w, ok := strings.CutSuffix(word, "y"); ok {
		return fmt.Sprintf("%d %sies", n, w)
	}
	return fmt.Sprintf("%d %ss", n, word)
}

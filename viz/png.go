package viz

import (
	"bufio"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"unicode/utf8"

	"github.com/onnx-tdb/onnx-tdb/hooks"
	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// HeatmapOptions set the look of a PNG heatmap.
type HeatmapOptions struct {
	Cell  int    // cell side in pixels (default 24)
	Title string // drawn above the map
}

// Layout of a heatmap picture: where its cells start, for tests and tools.
type Layout struct {
	X0, Y0, Cell int
}

// WriteAttentionPNG draws one row and head of attn.qk_probs [B,T,Tk,H] as
// a query × key heatmap (darker is more attention; masked cells light
// grey) with the tokens along both axes, and returns where the cells are.
func WriteAttentionPNG(w io.Writer, probs *hooks.Tensor, row, head int, tokens []string, o HeatmapOptions) (Layout, error) {
	m, err := headMatrix(probs, row, head)
	if err != nil {
		return Layout{}, err
	}
	Tk := len(m[0])
	if len(tokens) != Tk {
		return Layout{}, fmt.Errorf("viz: %d tokens for %d key positions", len(tokens), Tk)
	}
	cell := o.Cell
	if cell <= 0 {
		cell = 24
	}
	face := basicfont.Face7x13
	label := 0
	for _, t := range tokens {
		if n := utf8.RuneCountInString(clip(t)); n > label {
			label = n
		}
	}
	labelPx := label*7 + 8
	titleH := 0
	if o.Title != "" {
		titleH = 20
	}
	lay := Layout{X0: labelPx, Y0: titleH + labelPx, Cell: cell}
	img := image.NewRGBA(image.Rect(0, 0, lay.X0+Tk*cell+4, lay.Y0+len(m)*cell+4))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)
	ink := &font.Drawer{Dst: img, Src: image.Black, Face: face}
	if o.Title != "" {
		ink.Dot = fixed.P(4, 14)
		ink.DrawString(o.Title)
	}
	off := Tk - len(m) // queries are the last len(m) positions
	for q := range m {
		ink.Dot = fixed.P(4, lay.Y0+q*cell+cell/2+5)
		ink.DrawString(clip(tokens[off+q]))
	}
	for k := 0; k < Tk; k++ {
		drawVertical(img, face, clip(tokens[k]), lay.X0+k*cell+cell/2-6, lay.Y0-4)
	}
	for q, r := range m {
		for k, v := range r {
			c := color.RGBA{0xf0, 0xf0, 0xf0, 0xff}
			if k <= off+q {
				c = shade(v)
			}
			rect := image.Rect(lay.X0+k*cell, lay.Y0+q*cell, lay.X0+(k+1)*cell-1, lay.Y0+(q+1)*cell-1)
			draw.Draw(img, rect, &image.Uniform{C: c}, image.Point{}, draw.Src)
		}
	}
	bw := bufio.NewWriter(w)
	if err := png.Encode(bw, img); err != nil {
		return Layout{}, fmt.Errorf("viz: encoding png: %w", err)
	}
	return lay, bw.Flush()
}

// shade maps 0..1 to white..navy.
func shade(v float32) color.RGBA {
	if v < 0 {
		v = 0
	}
	if v > 1 {
		v = 1
	}
	mix := func(a, b uint8) uint8 { return uint8(float32(a) + (float32(b)-float32(a))*v + 0.5) }
	return color.RGBA{mix(0xff, 0x1f), mix(0xff, 0x3a), mix(0xff, 0x5f), 0xff}
}

// clip shortens a token label and makes its spaces and newlines visible.
func clip(s string) string {
	out := []rune{}
	for _, r := range s {
		switch {
		case r == ' ':
			r = '_'
		case r == '\n':
			r = '|'
		case r < ' ' || r > '~':
			r = '?' // the bitmap font has ASCII only
		}
		out = append(out, r)
		if len(out) == 12 {
			break
		}
	}
	return string(out)
}

// drawVertical writes s upwards from (x, bottom), one glyph per line.
func drawVertical(img draw.Image, face font.Face, s string, x, bottom int) {
	tmp := image.NewRGBA(image.Rect(0, 0, len(s)*7+2, 14))
	draw.Draw(tmp, tmp.Bounds(), image.White, image.Point{}, draw.Src)
	d := &font.Drawer{Dst: tmp, Src: image.Black, Face: face, Dot: fixed.P(1, 11)}
	d.DrawString(s)
	// Rotate by 90° anticlockwise into img.
	b := tmp.Bounds()
	for y := 0; y < b.Dy(); y++ {
		for xx := 0; xx < b.Dx(); xx++ {
			c := tmp.RGBAAt(xx, y)
			if c.R < 0x80 {
				img.Set(x+y, bottom-xx, c)
			}
		}
	}
}

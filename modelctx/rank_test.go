package modelctx

import (
	"fmt"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/hooks"
)

func TestTopK(t *testing.T) {
	v := []float32{1, 5, 3, 5, -1}
	for _, tc := range []struct {
		k    int
		want string
	}{{0, "[]"}, {1, "[1]"}, {2, "[1 3]"}, {3, "[1 3 2]"}, {9, "[1 3 2 0 4]"}, {-2, "[]"}} {
		if got := fmt.Sprint(TopK(v, tc.k)); got != tc.want {
			t.Errorf("TopK(k=%d) = %s, want %s", tc.k, got, tc.want)
		}
	}
}

func TestTopNextTokensReadsLastRealPosition(t *testing.T) {
	out := &Output{
		Logits: &hooks.Tensor{Shape: []int{2, 2, 3}, Data: []float32{0, 9, 1, 5, 0, 1, 2, 0, 7, 9, 9, 9}},
		Pad:    [][]bool{{false, false}, {false, true}},
	}
	top, err := out.TopNextTokens(2, nil)
	if err != nil {
		t.Fatal(err)
	}
	if top[0].Position != 1 || top[0].Top[0].ID != 0 || top[1].Position != 0 || top[1].Top[0].ID != 2 || top[1].Top[1].ID != 0 {
		t.Fatalf("got %+v", top)
	}
	if _, err := out.TopNextTokens(-1, nil); err == nil {
		t.Error("k = -1 accepted")
	}
}

func TestRankAttributions(t *testing.T) {
	act := &hooks.Tensor{Shape: []int{1, 2, 2}, Data: []float32{1, -4, 2, 3}}
	grad := &hooks.Tensor{Shape: []int{1, 2, 2}, Data: []float32{1, 1, 1, 1}}
	batch := Batch{Tokens: [][]int{{7, 8}}, Pad: [][]bool{{false, false}}}
	got, err := RankAttributions(act, grad, batch, 0, 2, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Attribution != -4 || got[0].Position != 0 || got[0].Index[0] != 1 || got[1].Attribution != 3 || got[1].TokenID != 8 {
		t.Fatalf("by magnitude: %+v", got)
	}
	batch.Pad[0][1] = true
	if got, _ := RankAttributions(act, grad, batch, 0, 5, false, nil); len(got) != 2 || got[0].Attribution != 1 {
		t.Fatalf("pads must be skipped: %+v", got)
	}
	for _, bad := range []struct {
		row, k int
	}{{1, 2}, {0, -1}} {
		if _, err := RankAttributions(act, grad, batch, bad.row, bad.k, false, nil); err == nil {
			t.Errorf("row %d k %d accepted", bad.row, bad.k)
		}
	}
}

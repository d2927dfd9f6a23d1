package queue

import (
	"errors"
	"testing"
)

func TestDecodeShard(t *testing.T) {
	ok := Shard{Job: "0123456789abcdef0123", Pass: 2, Index: 3, First: 96, Count: 32}
	got, err := DecodeShard(ok.Encode())
	if err != nil || got != ok {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	if ok.ID() != "p2/000000000096+32" {
		t.Fatalf("id %s", ok.ID())
	}
	for name, in := range map[string]string{
		"not json":    `{`,
		"bad job":     `{"job":"../x","pass":1,"index":0,"first":0,"count":1}`,
		"upper job":   `{"job":"0123456789ABCDEF","pass":1,"index":0,"first":0,"count":1}`,
		"pass 3":      `{"job":"0123456789abcdef","pass":3,"index":0,"first":0,"count":1}`,
		"no examples": `{"job":"0123456789abcdef","pass":1,"index":0,"first":0,"count":0}`,
		"negative":    `{"job":"0123456789abcdef","pass":1,"index":0,"first":-4,"count":4}`,
	} {
		if _, err := DecodeShard([]byte(in)); !errors.Is(err, ErrBadMessage) {
			t.Errorf("%s: got %v, want ErrBadMessage", name, err)
		}
	}
}

func FuzzDecodeShard(f *testing.F) {
	f.Add(Shard{Job: "0123456789abcdef", Pass: 1, Index: 0, First: 0, Count: 8}.Encode())
	f.Add([]byte(`{"job":"0123456789abcdef","pass":2,"index":7,"first":56,"count":8,"extra":1}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := DecodeShard(b)
		if err != nil {
			if !errors.Is(err, ErrBadMessage) {
				t.Fatalf("error %v does not wrap ErrBadMessage", err)
			}
			return
		}
		again, err := DecodeShard(s.Encode())
		if err != nil || again != s {
			t.Fatalf("re-encoded shard %+v reads as %+v, %v", s, again, err)
		}
	})
}

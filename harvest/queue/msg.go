package queue

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
)

// ErrBadMessage marks a shard message that cannot be read.
var ErrBadMessage = errors.New("bad shard message")

// Shard is one unit of work: examples [First, First+Count) of a job, for
// one pass.
type Shard struct {
	Job   string `json:"job"`
	Pass  int    `json:"pass"`
	Index int    `json:"index"`
	First int64  `json:"first"`
	Count int    `json:"count"`
}

var jobIDPattern = regexp.MustCompile(`^[0-9a-f]{16,64}$`)

// ValidJobID reports whether id is a job id (lower-case hex).
func ValidJobID(id string) bool { return jobIDPattern.MatchString(id) }

// Encode writes the message body.
func (s Shard) Encode() []byte {
	b, _ := json.Marshal(s)
	return b
}

// ID is the shard's name in its job's object store, from its pass and
// example range ("p1/000000000064+32"): shards of another size have other
// names, so a job resumed with another shard size ignores them.
func (s Shard) ID() string { return PartialName(s.Pass, s.First, s.Count) }

// PartialName names the stored partial of a pass over examples [first, first+count).
func PartialName(pass int, first int64, count int) string {
	return fmt.Sprintf("p%d/%012d+%d", pass, first, count)
}

// DecodeShard reads and checks a message body; the error wraps
// ErrBadMessage.
func DecodeShard(b []byte) (Shard, error) {
	var s Shard
	if err := json.Unmarshal(b, &s); err != nil {
		return Shard{}, fmt.Errorf("%w: %v", ErrBadMessage, err)
	}
	switch {
	case !ValidJobID(s.Job):
		return Shard{}, fmt.Errorf("%w: job id %q", ErrBadMessage, s.Job)
	case s.Pass != 1 && s.Pass != 2:
		return Shard{}, fmt.Errorf("%w: pass %d", ErrBadMessage, s.Pass)
	case s.Index < 0 || s.Index > 999999 || s.First < 0 || s.Count <= 0 || s.Count > 1<<30:
		return Shard{}, fmt.Errorf("%w: shard %d of examples [%d,+%d)", ErrBadMessage, s.Index, s.First, s.Count)
	}
	return s, nil
}

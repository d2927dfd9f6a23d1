package analysis

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseToken reads a token given on the command line: "#ID" for a token
// id, else text (with its leading space, " Mary") that encode must turn
// into exactly one token. V is the vocabulary size (0: unchecked).
func ParseToken(spec string, V int, encode func(string) ([]int, error)) (int, error) {
	if rest, ok := strings.CutPrefix(spec, "#"); ok && rest != "" {
		id, err := strconv.Atoi(rest)
		if err != nil || id < 0 || strconv.Itoa(id) != rest {
			return 0, fmt.Errorf("%w: %q: want #ID with ID a token id", ErrToken, spec)
		}
		if V > 0 && id >= V {
			return 0, fmt.Errorf("%w: %q: the vocabulary is [0,%d)", ErrToken, spec, V)
		}
		return id, nil
	}
	if spec == "" {
		return 0, fmt.Errorf("%w: empty token text", ErrToken)
	}
	if encode == nil {
		return 0, fmt.Errorf("%w: %q: the model has no tokenizer; give #ID", ErrToken, spec)
	}
	ids, err := encode(spec)
	if err != nil {
		return 0, fmt.Errorf("%w: %q: %w", ErrToken, spec, err)
	}
	if len(ids) != 1 {
		return 0, fmt.Errorf("%w: %q is %d tokens %v, not one (a word usually needs its leading space, \" Mary\")", ErrToken, spec, len(ids), ids)
	}
	if V > 0 && (ids[0] < 0 || ids[0] >= V) {
		return 0, fmt.Errorf("%w: %q encodes to %d, the vocabulary is [0,%d)", ErrToken, spec, ids[0], V)
	}
	return ids[0], nil
}

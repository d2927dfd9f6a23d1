package fetch

import (
	"fmt"
	"net/url"
	"path"
	"strings"
)

// blobHostSuffix is the public Blob Storage host: https://<account>.blob.core.windows.net.
const blobHostSuffix = ".blob.core.windows.net"

// maxPathLen is the longest blob name the service accepts.
const maxPathLen = 1024

// Location names one blob, or a folder-like prefix of blobs when Path is a prefix.
type Location struct {
	Account   string // storage account, e.g. "openaipublic"
	Container string // e.g. "neuron-explainer"
	Path      string // blob name inside the container, '/'-separated, not URL-escaped
}

// Parse reads an az://<account>/<container>/<path> or
// https://<account>.blob.core.windows.net/<container>/<path> location. The https path is
// URL-decoded; the az path is taken literally. A trailing '/' is dropped. Anything else, and
// paths with empty, "." or ".." segments, fail with ErrBadLocation.
func Parse(s string) (Location, error) {
	var loc Location
	switch {
	case hasPrefixFold(s, "az://"):
		rest := s[len("az://"):]
		loc.Account, rest, _ = strings.Cut(rest, "/")
		loc.Container, loc.Path, _ = strings.Cut(rest, "/")
	case hasPrefixFold(s, "https://"):
		u, err := url.Parse(s)
		if err != nil {
			return Location{}, fmt.Errorf("%w %q: %v", ErrBadLocation, s, err)
		}
		if u.User != nil || u.Port() != "" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
			return Location{}, fmt.Errorf("%w %q: want https://<account>%s/<container>/<path> with no port, query or fragment",
				ErrBadLocation, s, blobHostSuffix)
		}
		account, ok := strings.CutSuffix(strings.ToLower(u.Hostname()), blobHostSuffix)
		if !ok {
			return Location{}, fmt.Errorf("%w %q: host is not <account>%s", ErrBadLocation, s, blobHostSuffix)
		}
		loc.Account = account
		loc.Container, loc.Path, _ = strings.Cut(strings.TrimPrefix(u.Path, "/"), "/")
	default:
		return Location{}, fmt.Errorf("%w %q: want az://<account>/<container>/<path> or https://<account>%s/<container>/<path>",
			ErrBadLocation, s, blobHostSuffix)
	}
	loc.Path = strings.TrimSuffix(loc.Path, "/")
	if err := loc.check(false); err != nil {
		return Location{}, fmt.Errorf("%w %q: %s", ErrBadLocation, s, err.Error())
	}
	return loc, nil
}

// URL returns the canonical https form, with the path escaped segment by segment.
func (l Location) URL() string {
	u := "https://" + l.Account + blobHostSuffix + "/" + l.Container
	if l.Path != "" {
		u += "/" + escapePath(l.Path)
	}
	return u
}

// String returns URL().
func (l Location) String() string { return l.URL() }

// Join appends path elements, '/'-separated, cleaning "." and ".." as path.Join does.
// A result that climbs above the container is caught when the location is used.
func (l Location) Join(elem ...string) Location {
	p := path.Join(append([]string{l.Path}, elem...)...)
	if p == "." {
		p = ""
	}
	l.Path = strings.TrimPrefix(p, "/")
	return l
}

// check validates the names; with blob set, the path must name a blob, not be empty.
func (l Location) check(blob bool) error {
	if !validAccount(l.Account) {
		return fmt.Errorf("account %q is not 3-24 lower-case letters and digits", l.Account)
	}
	if !validContainer(l.Container) {
		return fmt.Errorf("container %q is not 3-63 lower-case letters, digits and '-'", l.Container)
	}
	if l.Path == "" {
		if blob {
			return fmt.Errorf("no blob path after the container")
		}
		return nil
	}
	if len(l.Path) > maxPathLen {
		return fmt.Errorf("path longer than %d bytes", maxPathLen)
	}
	for _, seg := range strings.Split(l.Path, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("path %q has an empty, '.' or '..' segment", l.Path)
		}
	}
	for _, r := range l.Path {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("path %q has a control character", l.Path)
		}
	}
	return nil
}

func validAccount(s string) bool {
	if len(s) < 3 || len(s) > 24 {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func validContainer(s string) bool {
	if s == "$root" || s == "$web" || s == "$logs" {
		return true
	}
	if len(s) < 3 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' || strings.Contains(s, "--") {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// escapePath URL-escapes each '/'-separated segment.
func escapePath(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

package atomicdir

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func write(name, text string) func(string) error {
	return func(tmp string) error { return os.WriteFile(filepath.Join(tmp, name), []byte(text), 0o644) }
}

func read(t *testing.T, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// entries lists the parent folder: nothing temporary may be left there.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestWrite(t *testing.T) {
	boom := errors.New("boom")
	for _, tc := range []struct {
		name     string
		existing string // "" for none
		fill     func(string) error
		onExists func(string) Exists
		wantErr  error
		want     string // content of out/f after, "" for no folder
	}{
		{"new folder", "", write("f", "new"), nil, nil, "new"},
		{"fill fails", "", func(tmp string) error { write("f", "half")(tmp); return boom }, nil, boom, ""},
		{"replace", "old", write("f", "new"), nil, nil, "new"},
		{"keep the winner", "old", write("f", "new"), func(string) Exists { return Keep }, nil, "old"},
		{"fill fails, old kept", "old", func(string) error { return boom }, nil, boom, "old"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			out := filepath.Join(parent, "out")
			if tc.existing != "" {
				if err := os.Mkdir(out, 0o755); err != nil {
					t.Fatal(err)
				}
				write("f", tc.existing)(out)
			}
			err := Write(out, tc.fill, tc.onExists)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if tc.want == "" {
				if _, err := os.Stat(out); !os.IsNotExist(err) {
					t.Fatalf("out exists after a failed write: %v", err)
				}
			} else if got := read(t, out, "f"); got != tc.want {
				t.Fatalf("out/f = %q, want %q", got, tc.want)
			}
			if names := entries(t, parent); len(names) > 1 || (len(names) == 1 && names[0] != "out") {
				t.Fatalf("left behind: %v", names)
			}
		})
	}
}

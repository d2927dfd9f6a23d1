package main

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/onnx-tdb/onnx-tdb/export"
	"github.com/onnx-tdb/onnx-tdb/export/fetch"
	"github.com/onnx-tdb/onnx-tdb/internal/atomicdir"
	"github.com/urfave/cli/v2"
)

// cacheEntry is one thing in the cache a user may want to reclaim.
type cacheEntry struct {
	Kind    string // export, sae, checkpoint, leftover
	Path    string
	Bytes   int64
	LastUse time.Time
}

// cacheSkip are the cache's top-level folders that hold tools, not models.
var cacheSkip = map[string]bool{"onnxruntime": true, "azurite": true}

// scanCache lists the exports, converted SAEs, downloaded checkpoints and
// leftovers of killed runs under root.
func scanCache(root string) ([]cacheEntry, error) {
	var out []cacheEntry
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == root {
				return err
			}
			return nil
		}
		if p == root {
			return nil
		}
		if rel, _ := filepath.Rel(root, p); d.IsDir() && cacheSkip[rel] {
			return filepath.SkipDir
		}
		name := d.Name()
		if strings.Contains(name, atomicdir.TmpInfix) || strings.Contains(name, atomicdir.OldInfix) || strings.Contains(name, atomicdir.PartInfix) {
			if atomicdir.Leftover(p) {
				out = append(out, entryOf("leftover", p))
			}
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.IsDir() {
			return nil
		}
		for _, m := range []struct{ file, kind string }{{export.ManifestFile, "export"}, {"sae.json", "sae"}, {"config.json", "checkpoint"}} {
			if _, err := os.Stat(filepath.Join(p, m.file)); err == nil {
				out = append(out, entryOf(m.kind, p))
				return filepath.SkipDir
			}
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].LastUse.Before(out[j].LastUse) })
	return out, err
}

// entryOf sizes a cache entry; its last use is the newest of its files'
// modification times and of the use marker Resolve touches.
func entryOf(kind, p string) cacheEntry {
	e := cacheEntry{Kind: kind, Path: p, Bytes: atomicdir.DiskUsage(p)}
	filepath.WalkDir(p, func(_ string, d fs.DirEntry, err error) error {
		if err == nil {
			if fi, err := d.Info(); err == nil && fi.ModTime().After(e.LastUse) {
				e.LastUse = fi.ModTime()
			}
		}
		return nil
	})
	return e
}

func cacheCommand() *cli.Command {
	return &cli.Command{
		Name:  "cache",
		Usage: "list or prune the cache: exports, converted SAEs, downloaded checkpoints",
		Subcommands: []*cli.Command{
			{
				Name:  "list",
				Usage: "list what the cache holds, least recently used first, with sizes",
				Action: func(c *cli.Context) error {
					root, err := cacheRoot(c)
					if err != nil {
						return err
					}
					entries, err := scanCache(root)
					if err != nil {
						return err
					}
					printCache(c, root, entries)
					return nil
				},
			},
			{
				Name:  "prune",
				Usage: "remove leftovers of killed runs, and entries unused for --older-than (or --all)",
				Flags: []cli.Flag{
					&cli.DurationFlag{Name: "older-than", Usage: "also remove entries last used longer ago than this (e.g. 720h)"},
					&cli.BoolFlag{Name: "all", Usage: "also remove every export, converted SAE and downloaded checkpoint"},
					&cli.BoolFlag{Name: "dry-run", Usage: "list what would be removed, remove nothing"},
				},
				Action: func(c *cli.Context) error {
					root, err := cacheRoot(c)
					if err != nil {
						return err
					}
					if d := c.Duration("older-than"); c.IsSet("older-than") && d <= 0 {
						return fmt.Errorf("--older-than %v: want a positive duration", d)
					}
					entries, err := scanCache(root)
					if err != nil {
						return err
					}
					var gone []cacheEntry
					var freed int64
					for _, e := range entries {
						old := c.IsSet("older-than") && time.Since(e.LastUse) > c.Duration("older-than")
						if e.Kind != "leftover" && !old && !c.Bool("all") {
							continue
						}
						if !c.Bool("dry-run") {
							if err := os.RemoveAll(e.Path); err != nil {
								return fmt.Errorf("remove %s: %w", e.Path, err)
							}
						}
						gone = append(gone, e)
						freed += e.Bytes
					}
					verb := "removed"
					if c.Bool("dry-run") {
						verb = "would remove"
					}
					printCache(c, root, gone)
					fmt.Fprintf(c.App.Writer, "%s %s, %s\n", verb, plural(len(gone), "entry"), humanSize(freed))
					return nil
				},
			},
		},
	}
}

func cacheRoot(c *cli.Context) (string, error) {
	fc, err := fetch.New(fetchOptions(c))
	if err != nil {
		return "", err
	}
	return fc.Dir(), nil
}

func printCache(c *cli.Context, root string, entries []cacheEntry) {
	tw := tabwriter.NewWriter(c.App.Writer, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tSIZE\tLAST USE\tPATH")
	var total int64
	for _, e := range entries {
		rel, err := filepath.Rel(root, e.Path)
		if err != nil {
			rel = e.Path
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.Kind, humanSize(e.Bytes), e.LastUse.Format("2006-01-02 15:04"), rel)
		total += e.Bytes
	}
	tw.Flush()
	if len(entries) > 0 {
		fmt.Fprintf(c.App.Writer, "%s in %s under %s\n", humanSize(total), plural(len(entries), "entry"), root)
	}
}

// humanSize writes n bytes in B, kB, MB, GB (powers of 1000).
func humanSize(n int64) string {
	f, units := float64(n), []string{"B", "kB", "MB", "GB", "TB"}
	i := 0
	for f >= 1000 && i < len(units)-1 {
		f /= 1000
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d B", n)
	}
	return fmt.Sprintf("%.1f %s", f, units[i])
}

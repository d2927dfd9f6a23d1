package serve

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// handleRecord answers one unit's record of a record set.
func (s *Server) handleRecord(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	load, ok := s.records[name]
	if !ok {
		return errorf(http.StatusNotFound, "%v: record set %q (loaded: %s)", ErrNotFound, name, strings.Join(s.recordNames, ", "))
	}
	layer, err1 := strconv.Atoi(r.PathValue("layer"))
	unit, err2 := strconv.Atoi(r.PathValue("unit"))
	if err1 != nil || err2 != nil || layer < 0 || unit < 0 {
		return badRequest(fmt.Errorf("records/%s/%s/%s: layer and unit are non-negative integers", name, r.PathValue("layer"), r.PathValue("unit")))
	}
	var rec json.RawMessage
	err := s.run(r.Context(), func() error {
		var err error
		rec, err = load(r.Context(), layer, unit)
		return err
	})
	if err != nil {
		return fmt.Errorf("record set %s, layer %d, unit %d: %w", name, layer, unit, err)
	}
	if !json.Valid(rec) {
		return fmt.Errorf("record set %s, layer %d, unit %d: the loader returned invalid JSON", name, layer, unit)
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(rec)
	return nil
}

// handleWorkflow hands the body to the plugged-in workflows.
func (s *Server) handleWorkflow(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	if s.workflows == nil || !contains(s.workflows.Names(), name) {
		return errorf(http.StatusNotFound, "%v: workflow %q", ErrNotFound, name)
	}
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	if !json.Valid(body) {
		return badRequest(errors.New("malformed JSON"))
	}
	var head struct {
		Model string `json:"model"`
	}
	_ = json.Unmarshal(body, &head) // a body that is not an object names no model
	m, _, err := s.model(head.Model)
	if err != nil {
		return err
	}
	var out any
	err = s.run(r.Context(), func() error {
		var err error
		out, err = s.workflows.Run(r.Context(), name, m, body)
		return err
	})
	if err != nil {
		return fmt.Errorf("workflow %s: %w", name, err)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

package httpapi

import (
	"bytes"
	"encoding/json"
	"strings"

	"github.com/wxpush/wxpush/service"
)

// Duplicate keys: encoding/json keeps the last of two equal keys in an
// object, so {"touser":"a","touser":"b"} would silently send to b. The
// request is refused instead, naming the key. The check is one pass over
// the bytes of a body that already decoded (so it is valid JSON), without
// allocating unless a key is escaped or an object has many keys.

// keyMode says how an object's keys compare.
type keyMode int

const (
	// structKeys: the object decodes into a struct (a request, its
	// miniprogram, a data value), whose field names encoding/json matches
	// case-insensitively: "touser" and "TOUSER" are the same key.
	structKeys keyMode = iota
	// mapKeys: the object decodes into a map (data): keys are exact.
	mapKeys
)

// duplicateKey returns a 400 naming the first key given twice in one
// object of the send request (or batch item) b, or nil. b must be valid
// JSON.
func duplicateKey(b []byte) *service.Error {
	s := keyScanner{b: b}
	s.ws()
	if path, ok := s.object(structKeys, false); ok {
		return duplicateError(path)
	}
	return nil
}

// duplicateTopKey is duplicateKey for the outermost object only (a batch,
// whose items are checked one by one).
func duplicateTopKey(b []byte) *service.Error {
	s := keyScanner{b: b}
	s.ws()
	if path, ok := s.object(structKeys, true); ok {
		return duplicateError(path)
	}
	return nil
}

func duplicateError(path string) *service.Error {
	return invalid(path, "duplicate key %q: a JSON object must give each key once", path)
}

// keyScanner walks valid JSON.
type keyScanner struct {
	b []byte
	i int
}

func (s *keyScanner) ws() {
	for s.i < len(s.b) && (s.b[s.i] == ' ' || s.b[s.i] == '\t' || s.b[s.i] == '\n' || s.b[s.i] == '\r') {
		s.i++
	}
}

// str scans the string at s.i and returns its contents (unescaped only
// when it holds an escape).
func (s *keyScanner) str() []byte {
	start := s.i + 1
	escaped := false
	j := start
	for j < len(s.b) && s.b[j] != '"' {
		if s.b[j] == '\\' {
			escaped = true
			j++
		}
		j++
	}
	s.i = j + 1
	raw := s.b[start:min(j, len(s.b))]
	if !escaped {
		return raw
	}
	var out string
	if err := json.Unmarshal(s.b[start-1:min(j+1, len(s.b))], &out); err != nil {
		return raw
	}
	return []byte(out)
}

// skip scans over the value at s.i.
func (s *keyScanner) skip() {
	if s.i >= len(s.b) {
		return
	}
	switch s.b[s.i] {
	case '"':
		s.str()
	case '{', '[':
		depth := 0
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case '"':
				s.str()
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
			}
			s.i++
			if depth == 0 {
				return
			}
		}
	default: // number, true, false, null
		for s.i < len(s.b) && !strings.ContainsRune(",}] \t\r\n", rune(s.b[s.i])) {
			s.i++
		}
	}
}

// object scans the object at s.i (anything else is skipped) and returns
// the path of its first duplicate key, looking into the objects of the
// request's layout unless shallow.
func (s *keyScanner) object(mode keyMode, shallow bool) (string, bool) {
	if s.i >= len(s.b) || s.b[s.i] != '{' {
		s.skip()
		return "", false
	}
	s.i++
	// The first keys are compared in place; an object with more goes to a
	// map. (The array must not have its address taken: it stays on the
	// stack.)
	var small [16][]byte
	n := 0
	var many map[string]struct{}
	for {
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] == '}' {
			s.i++
			return "", false
		}
		if s.b[s.i] == ',' {
			s.i++
			continue
		}
		key := s.str()
		dup := false
		if many == nil && n < len(small) {
			for _, k := range small[:n] {
				if mode == mapKeys && bytes.Equal(k, key) || mode == structKeys && bytes.EqualFold(k, key) {
					dup = true
					break
				}
			}
			small[n] = key
			n++
		} else {
			if many == nil {
				many = make(map[string]struct{}, 2*n)
				for _, k := range small[:n] {
					many[foldKey(k, mode)] = struct{}{}
				}
			}
			f := foldKey(key, mode)
			_, dup = many[f]
			many[f] = struct{}{}
		}
		if dup {
			return string(key), true
		}
		s.ws()
		s.i++ // ':'
		s.ws()
		child, descend := childMode(mode, key)
		if shallow || !descend {
			s.skip()
			continue
		}
		if path, ok := s.object(child, false); ok {
			return string(key) + "." + path, true
		}
	}
}

// foldKey is the form in which two keys of a mode are equal when equal.
func foldKey(k []byte, mode keyMode) string {
	if mode == mapKeys {
		return string(k)
	}
	return strings.ToLower(strings.ToUpper(string(k)))
}

// childMode says whether the value of key, in an object of mode, is an
// object of the request's layout, and how its keys compare.
func childMode(mode keyMode, key []byte) (keyMode, bool) {
	if mode == mapKeys {
		return structKeys, true // a data value
	}
	switch {
	case bytes.EqualFold(key, []byte("data")):
		return mapKeys, true
	case bytes.EqualFold(key, []byte("miniprogram")):
		return structKeys, true
	}
	return 0, false
}

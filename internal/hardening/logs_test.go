//go:build hardening

package hardening

import (
	"bytes"
	"context"
	"encoding/pem"
	"strings"
	"sync"
)

// output keeps what a process (or an in-process logger) wrote, line by
// line, and wakes those waiting for a line.
type output struct {
	name    string
	mu      sync.Mutex
	lines   []string
	partial []byte
	notify  chan struct{}
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.partial = append(o.partial, p...)
	for {
		i := bytes.IndexByte(o.partial, '\n')
		if i < 0 {
			break
		}
		o.lines = append(o.lines, string(o.partial[:i]))
		o.partial = o.partial[i+1:]
	}
	if len(o.partial) == 0 {
		o.partial = nil
	}
	close(o.notify)
	o.notify = make(chan struct{})
	return len(p), nil
}

// mark returns the number of lines so far, to wait for or read what
// comes after.
func (o *output) mark() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.lines)
}

// waitFrom waits for a line from mark on that satisfies pred.
func (o *output) waitFrom(ctx context.Context, mark int, exited <-chan struct{}, pred func(string) bool) (string, error) {
	for {
		o.mu.Lock()
		for ; mark < len(o.lines); mark++ {
			if pred(o.lines[mark]) {
				l := o.lines[mark]
				o.mu.Unlock()
				return l, nil
			}
		}
		ch := o.notify
		o.mu.Unlock()
		select {
		case <-ch:
		case <-exited:
			exited = nil // look at what it wrote last, once more
			o.mu.Lock()
			found := ""
			for ; mark < len(o.lines); mark++ {
				if pred(o.lines[mark]) {
					found = o.lines[mark]
					break
				}
			}
			o.mu.Unlock()
			if found != "" {
				return found, nil
			}
			return "", errExited
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// find returns the lines from mark on that satisfy pred.
func (o *output) find(mark int, pred func(string) bool) []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []string
	for _, l := range o.lines[min(mark, len(o.lines)):] {
		if pred(l) {
			out = append(out, l)
		}
	}
	return out
}

// all returns every line, the partial last one included.
func (o *output) all() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := append([]string(nil), o.lines...)
	if len(o.partial) > 0 {
		out = append(out, string(o.partial))
	}
	return out
}

func (o *output) tail(n int) string { return o.tailFrom(0, n) }

// tailFrom returns the last n lines from mark on.
func (o *output) tailFrom(mark, n int) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	lines := o.lines[min(mark, len(o.lines)):]
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// secret is a value no log line may show, except lines containing allow
// (when set): the one place it is printed on purpose.
type secret struct {
	name, value, allow string
}

// logbook holds the output of everything the suite ran and the secrets
// that must not appear in it.
type logbook struct {
	mu      sync.Mutex
	outputs []*output
	secrets []secret
}

var logs logbook

// open starts a new output, kept for the final scan.
func (l *logbook) open(name string) *output {
	o := &output{name: name, notify: make(chan struct{})}
	l.mu.Lock()
	l.outputs = append(l.outputs, o)
	l.mu.Unlock()
	return o
}

// secret adds a value that must never be logged. Short values would match
// by chance and are left out.
func (l *logbook) secret(name, value string) { l.secretAllowed(name, value, "") }

// secretAllowed adds a value that may appear only in lines containing
// allow.
func (l *logbook) secretAllowed(name, value, allow string) {
	if len(value) < 8 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.secrets {
		if s.value == value {
			return
		}
	}
	l.secrets = append(l.secrets, secret{name: name, value: value, allow: allow})
}

// secretPEM adds every line of base64 in a PEM private key: any part of
// a key in a log is a leak.
func (l *logbook) secretPEM(name string, raw []byte) {
	for len(raw) > 0 {
		var block *pem.Block
		block, raw = pem.Decode(raw)
		if block == nil {
			return
		}
		if !strings.Contains(block.Type, "PRIVATE KEY") {
			continue
		}
		body := pem.EncodeToMemory(&pem.Block{Type: block.Type, Bytes: block.Bytes})
		for _, line := range strings.Split(string(body), "\n") {
			if len(line) >= 40 && !strings.HasPrefix(line, "-----") {
				l.secret(name+" (private key)", line)
			}
		}
	}
}

// leak is a secret found in a log line.
type leak struct {
	secret, source, line string
}

// scan looks for every secret in every line of every output; it returns
// how many lines, outputs and secrets it looked at, how many lines showed
// a secret where it is printed on purpose, and the leaks.
func (l *logbook) scan() (lines, sources, secrets, allowed int, leaks []leak) {
	l.mu.Lock()
	outs := append([]*output(nil), l.outputs...)
	secs := append([]secret(nil), l.secrets...)
	l.mu.Unlock()
	for _, o := range outs {
		for _, line := range o.all() {
			lines++
			for _, s := range secs {
				if !strings.Contains(line, s.value) {
					continue
				}
				if s.allow != "" && strings.Contains(line, s.allow) {
					allowed++
					continue
				}
				leaks = append(leaks, leak{secret: s.name, source: o.name, line: redact(line, s.value)})
			}
		}
	}
	return lines, len(outs), len(secs), allowed, leaks
}

// redact hides the secret in a line quoted in a failure message.
func redact(line, value string) string {
	line = strings.ReplaceAll(line, value, "<SECRET>")
	if len(line) > 300 {
		line = line[:300] + "…"
	}
	return line
}

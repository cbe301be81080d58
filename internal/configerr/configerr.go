// Package configerr is how configuration errors name the key they are about.
//
// A library package validates its own section and knows only its keys
// relative to that section ("listen", "users[0].name"); where the section
// sits in the configuration file ("mqtt.embedded") is known only to the
// configuration's owner, which qualifies the error with Prefix. The text a
// person reads is then exactly "mqtt.embedded.listen: ...", with every
// key the message names, in the key part or in the sentence, qualified
// alike.
package configerr

import (
	"errors"
	"fmt"
	"strings"
)

// Key is a key named inside an error's sentence, such as the other half
// of a pair of settings ("needs %s: true"). Prefix qualifies it like the
// error's own key.
type Key string

// Error is a configuration error about one or more keys.
type Error struct {
	// Keys are the keys the error is about, relative to the section that
	// made the error until Prefix qualifies them; usually one.
	Keys []string

	format string
	args   []any
}

// Errorf returns an error about key whose sentence is format and args, as
// in fmt.Errorf (%w wraps); args of type Key are qualified by Prefix.
func Errorf(key, format string, args ...any) error {
	return &Error{Keys: []string{key}, format: format, args: args}
}

// Pair returns an error about two keys at once ("a and b: ...").
func Pair(a, b, format string, args ...any) error {
	return &Error{Keys: []string{a, b}, format: format, args: args}
}

// Error is "key: sentence", with "a and b" for two keys.
func (e *Error) Error() string {
	return strings.Join(e.Keys, " and ") + ": " + e.cause().Error()
}

// Unwrap returns what the sentence wraps with %w, if anything.
func (e *Error) Unwrap() error { return errors.Unwrap(e.cause()) }

func (e *Error) cause() error {
	args := make([]any, len(e.args))
	for i, a := range e.args {
		if k, ok := a.(Key); ok {
			a = string(k)
		}
		args[i] = a
	}
	return fmt.Errorf(e.format, args...)
}

// Prefix qualifies err with the section it came from: an *Error gets
// prefix and a dot before each of its keys (the ones in its sentence
// too); the errors of an errors.Join are qualified one by one; any other
// error is taken to start with its relative key and reads
// "prefix.<its text>". A nil err stays nil.
func Prefix(prefix string, err error) error {
	if err == nil {
		return nil
	}
	fe, ok := err.(*Error)
	if !ok {
		if j, ok := err.(interface{ Unwrap() []error }); ok { // errors.Join
			errs := j.Unwrap()
			out := make([]error, len(errs))
			for i, e := range errs {
				out[i] = Prefix(prefix, e)
			}
			return errors.Join(out...)
		}
		return fmt.Errorf("%s.%w", prefix, err)
	}
	q := &Error{Keys: make([]string, len(fe.Keys)), format: fe.format, args: make([]any, len(fe.args))}
	for i, k := range fe.Keys {
		q.Keys[i] = prefix + "." + k
	}
	for i, a := range fe.args {
		if k, ok := a.(Key); ok {
			a = Key(prefix + "." + string(k))
		}
		q.args[i] = a
	}
	return q
}

// Package command turns fleet2mqtt's commands into signed Vehicle Command
// Protocol messages. Build validates a command given by its Tesla REST
// name and JSON arguments (the names and arguments Tesla's HTTP proxy
// accepts, listed by Names) and encodes it for the domain that executes
// it; the wire and cryptography are in ./protocol.
package command

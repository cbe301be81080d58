package envelope

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"
)

// FuzzParse feeds Parse arbitrary bytes, seeded with every golden frame and
// reference response. Parse must never panic, must classify every failure,
// and whatever it accepts must survive a rebuild by AppendFrame.
func FuzzParse(f *testing.F) {
	entries, err := os.ReadDir(goldenDir)
	if err != nil {
		f.Fatal(err)
	}
	var seeds int
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".bin") || strings.HasSuffix(name, ".payload.bin") {
			continue
		}
		f.Add(readGolden(f, name))
		seeds++
	}
	if seeds == 0 {
		f.Fatal("no golden frames found")
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, err := Parse(data)
		if err != nil {
			structural := errors.Is(err, ErrTruncated) || errors.Is(err, ErrBadOffset) || errors.Is(err, ErrBadVTable)
			if !structural && !errors.Is(err, ErrNoMessage) && !errors.Is(err, ErrUnknownType) {
				t.Fatalf("unclassified error: %v", err)
			}
			if structural && !equalFrame(fr, Frame{}) {
				t.Fatalf("structural error %v returned fields: %s", err, describe(fr))
			}
			return
		}
		if fr.Type != TypeStream && fr.Type != TypeStreamAck {
			t.Fatalf("Parse accepted type %v", fr.Type)
		}
		b := AppendFrame(nil, fr)
		again, err := Parse(b)
		if err != nil {
			t.Fatalf("Parse of rebuilt frame: %v", err)
		}
		if !equalFrame(fr, again) {
			t.Fatalf("rebuilt frame differs\n got %s\nwant %s", describe(again), describe(fr))
		}
		if !bytes.Equal(AppendFrame(nil, again), b) {
			t.Fatal("rebuilding is not stable")
		}
	})
}

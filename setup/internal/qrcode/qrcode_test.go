package qrcode

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The golden symbols in testdata were made by Debian's qrencode 4.1, an
// independent encoder:
//
//	qrencode -l M -8 -m 0 -t ASCII -o - < text
//
// converted to one row per line ('#' dark, '.' light) under the text. They
// cover versions 1 to 10, both block groups, version information (7+), the
// 16-bit character count (10) and UTF-8 text.

type golden struct {
	name, text string
	rows       []string
}

func loadGoldens(t *testing.T) []golden {
	t.Helper()
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden symbols in testdata: %v", err)
	}
	var out []golden
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
		out = append(out, golden{name: filepath.Base(f), text: lines[0], rows: lines[1:]})
	}
	return out
}

func (g golden) dark(x, y int) bool { return g.rows[y][x] == '#' }

// goldenMask reads the mask from the golden's format information (the
// copy beside the upper-left finder).
func goldenMask(t *testing.T, g golden) int {
	t.Helper()
	bits := 0
	pos := [][2]int{{8, 0}, {8, 1}, {8, 2}, {8, 3}, {8, 4}, {8, 5}, {8, 7}, {8, 8}, {7, 8}, {5, 8}, {4, 8}, {3, 8}, {2, 8}, {1, 8}, {0, 8}}
	for i, p := range pos {
		if g.dark(p[0], p[1]) {
			bits |= 1 << i
		}
	}
	for m := range 8 {
		if formatBits(m) == bits {
			return m
		}
	}
	t.Fatalf("%s: format bits %015b are not level M", g.name, bits)
	return -1
}

func diff(t *testing.T, name string, c *Code, g golden) {
	t.Helper()
	if c.Size != len(g.rows) {
		t.Fatalf("%s: size %d, golden %d", name, c.Size, len(g.rows))
	}
	bad := 0
	for y := range c.Size {
		for x := range c.Size {
			if c.Dark(x, y) != g.dark(x, y) {
				if bad < 5 {
					t.Errorf("%s: module (x=%d, y=%d) dark=%v, golden %v", name, x, y, c.Dark(x, y), g.dark(x, y))
				}
				bad++
			}
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d modules differ", name, bad)
	}
}

// TestGoldenWithGoldenMask checks everything but the mask choice: data
// encoding, Reed-Solomon blocks, interleaving, placement, function
// patterns, format and version information.
func TestGoldenWithGoldenMask(t *testing.T) {
	for _, g := range loadGoldens(t) {
		t.Run(g.name, func(t *testing.T) {
			c, err := encode([]byte(g.text), goldenMask(t, g))
			if err != nil {
				t.Fatal(err)
			}
			diff(t, g.name, c, g)
		})
	}
}

// TestMaskChoice checks that Encode keeps the mask of lowest penalty.
// (Encoders differ here: qrencode scores finder-like patterns its own way
// and often picks another mask; every mask is valid for decoders.)
func TestMaskChoice(t *testing.T) {
	for _, g := range loadGoldens(t) {
		c, err := Encode(g.text)
		if err != nil {
			t.Fatal(err)
		}
		for m := range 8 {
			other, _ := encode([]byte(g.text), m)
			if other.penalty() < c.penalty() {
				t.Errorf("%s: mask %d scores %d, below the chosen mask %d's %d", g.name, m, other.penalty(), c.Mask, c.penalty())
			}
		}
	}
}

func TestLinePenalty(t *testing.T) {
	tests := []struct {
		line string
		want int
	}{
		{"#.#.#.#.#.", 0},
		{"#####.#.#.", 3},   // one run of five
		{"#######.#.", 5},   // run of seven: 3 + 2
		{".....#####", 6},   // two runs of five
		{"#.###.#....", 40}, // finder-like, four light after
		{"....#.###.#", 40}, // finder-like, four light before (1 run of 4 scores nothing)
		{"#.###.#...#", 40}, // light at the start counts as outside the symbol
		{"#.#.###.#.#", 0},  // no finder-like pattern
	}
	for _, tc := range tests {
		line := make([]bool, len(tc.line))
		for i, ch := range tc.line {
			line[i] = ch == '#'
		}
		if got := linePenalty(line); got != tc.want {
			t.Errorf("linePenalty(%s) = %d, want %d", tc.line, got, tc.want)
		}
	}
}

func TestVersionsAndCapacity(t *testing.T) {
	tests := []struct {
		n       int
		version int
		err     error
	}{
		{0, 1, nil}, {14, 1, nil}, {15, 2, nil}, {26, 2, nil}, {27, 3, nil},
		{62, 4, nil}, {106, 6, nil}, {122, 7, nil}, {152, 8, nil}, {180, 9, nil},
		{181, 10, nil}, {213, 10, nil}, {214, 0, ErrTooLong},
	}
	for _, tc := range tests {
		c, err := Encode(strings.Repeat("x", tc.n))
		if err != tc.err {
			t.Errorf("%d bytes: error %v, want %v", tc.n, err, tc.err)
			continue
		}
		if err == nil && (c.Version != tc.version || c.Size != 17+4*tc.version) {
			t.Errorf("%d bytes: version %d size %d, want version %d", tc.n, c.Version, c.Size, tc.version)
		}
	}
}

// TestReedSolomon uses the worked example of the standard's annex I
// ("01234567" at 1-M): its data codewords and the ten error correction
// codewords the standard lists.
func TestReedSolomon(t *testing.T) {
	data := []byte{0x10, 0x20, 0x0C, 0x56, 0x61, 0x80, 0xEC, 0x11, 0xEC, 0x11, 0xEC, 0x11, 0xEC, 0x11, 0xEC, 0x11}
	want := []byte{0xA5, 0x24, 0xD4, 0xC1, 0xED, 0x36, 0xC7, 0x87, 0x2C, 0x55}
	if got := remainder(data, generator(10)); !bytes.Equal(got, want) {
		t.Errorf("error correction % X, want % X", got, want)
	}
}

func TestFormatAndVersionBits(t *testing.T) {
	// Level M, mask 0 is 101010000010010 (ISO/IEC 18004 annex C);
	// version 7's information is 000111110010010100 (annex D).
	if got := formatBits(0); got != 0b101010000010010 {
		t.Errorf("format bits of M/0 = %015b", got)
	}
	if got := versionBits(7); got != 0b000111110010010100 {
		t.Errorf("version 7 bits = %018b", got)
	}
}

func TestSVG(t *testing.T) {
	c, err := Encode("https://tesla.com/_ak/example.com")
	if err != nil {
		t.Fatal(err)
	}
	svg := c.SVG(4, `pairing <link> & "more"`)
	for _, want := range []string{
		`viewBox="0 0 37 37"`, `<title>pairing &lt;link&gt; &amp; &quot;more&quot;</title>`,
		`M4 4h7v1h-7z`, // the upper-left finder's top edge, after the quiet zone
	} {
		if !strings.Contains(svg, want) {
			t.Errorf("svg lacks %s:\n%.300s", want, svg)
		}
	}
}

// TestDecodesWithZbar decodes rendered symbols with zbarimg (Debian's
// zbar-tools), a decoder independent of this package, when it is there.
func TestDecodesWithZbar(t *testing.T) {
	zbar, err := exec.LookPath("zbarimg")
	if err != nil {
		t.Skip("zbarimg not installed (Debian package zbar-tools); golden tests still ran")
	}
	for _, text := range []string{
		"https://tesla.com/_ak/telemetry.example.com?vin=5YJ3E1EA7KF000001",
		"https://tesla.com/_ak/fleet.example.org",
		strings.Repeat("0123456789abcdef", 13),
	} {
		c, err := Encode(text)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "qr.png")
		writePNG(t, c, path)
		out, err := exec.Command(zbar, "--quiet", "--raw", "-Sdisable", "-Sqrcode.enable", path).Output()
		if err != nil {
			t.Fatalf("zbarimg: %v", err)
		}
		if got := strings.TrimRight(string(out), "\n"); got != text {
			t.Errorf("zbarimg read %q, want %q", got, text)
		}
	}
}

func writePNG(t *testing.T, c *Code, path string) {
	t.Helper()
	const scale, quiet = 4, 4
	dim := (c.Size + 2*quiet) * scale
	img := image.NewGray(image.Rect(0, 0, dim, dim))
	for y := range dim {
		for x := range dim {
			v := color.Gray{Y: 255}
			if c.Dark(x/scale-quiet, y/scale-quiet) {
				v.Y = 0
			}
			img.SetGray(x, y, v)
		}
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := png.Encode(f, img); err != nil {
		t.Fatal(err)
	}
}

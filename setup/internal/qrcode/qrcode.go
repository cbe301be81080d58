// Package qrcode encodes short texts, such as the virtual key pairing link,
// as QR codes (ISO/IEC 18004) and draws them as SVG.
//
// It covers what the setup page needs and nothing more: byte mode, error
// correction level M (15 % of the symbol may be damaged), versions 1 to 10
// (up to 213 bytes), and the mask chosen by the standard's penalty rules.
package qrcode

import (
	"errors"
	"strconv"
	"strings"
)

// MaxVersion is the largest symbol version the encoder makes (57×57
// modules).
const MaxVersion = 10

// ErrTooLong is returned for a text that does not fit in a version 10
// symbol at level M.
var ErrTooLong = errors.New("qrcode: text longer than 213 bytes")

// Code is an encoded symbol: Size×Size modules, true for dark.
type Code struct {
	// Version is the symbol version, 1 to MaxVersion.
	Version int
	// Mask is the data mask pattern applied, 0 to 7.
	Mask int
	// Size is the number of modules per side: 17 + 4·Version.
	Size    int
	modules []bool
}

// Dark reports whether the module in row y, column x is dark. Coordinates
// outside the symbol (the quiet zone) are light.
func (c *Code) Dark(x, y int) bool {
	if x < 0 || y < 0 || x >= c.Size || y >= c.Size {
		return false
	}
	return c.modules[y*c.Size+x]
}

// blockLayout is how one version splits its codewords at level M: blocks
// of the first group carry data1 data codewords, those of the second one
// more; every block gets ecPerBlock error correction codewords.
type blockLayout struct {
	ecPerBlock     int
	blocks1, data1 int
	blocks2        int // the second group's blocks carry data1+1 each
}

// levelM holds the level M block layout of versions 1 to 10 (ISO/IEC
// 18004, table 9).
var levelM = [MaxVersion + 1]blockLayout{
	1:  {10, 1, 16, 0},
	2:  {16, 1, 28, 0},
	3:  {26, 1, 44, 0},
	4:  {18, 2, 32, 0},
	5:  {24, 2, 43, 0},
	6:  {16, 4, 27, 0},
	7:  {18, 4, 31, 0},
	8:  {22, 2, 38, 2},
	9:  {22, 3, 36, 2},
	10: {26, 4, 43, 1},
}

// alignment lists the row and column centres of the alignment patterns.
var alignment = [MaxVersion + 1][]int{
	2:  {6, 18},
	3:  {6, 22},
	4:  {6, 26},
	5:  {6, 30},
	6:  {6, 34},
	7:  {6, 22, 38},
	8:  {6, 24, 42},
	9:  {6, 26, 46},
	10: {6, 28, 50},
}

func (l blockLayout) dataCodewords() int { return l.blocks1*l.data1 + l.blocks2*(l.data1+1) }

// capacity is how many bytes a version holds in byte mode: the data
// codewords less the 4-bit mode and the character count (8 bits up to
// version 9, 16 from version 10).
func capacity(version int) int {
	return (levelM[version].dataCodewords()*8 - 4 - countBits(version)) / 8
}

func countBits(version int) int {
	if version < 10 {
		return 8
	}
	return 16
}

// Encode encodes text in byte mode at level M, in the smallest version
// that holds it, with the mask of lowest penalty.
func Encode(text string) (*Code, error) {
	return encode([]byte(text), -1)
}

// encode builds the symbol; mask < 0 chooses the best one.
func encode(data []byte, mask int) (*Code, error) {
	version := 0
	for v := 1; v <= MaxVersion; v++ {
		if len(data) <= capacity(v) {
			version = v
			break
		}
	}
	if version == 0 {
		return nil, ErrTooLong
	}
	codewords := interleave(version, dataCodewords(version, data))

	size := 17 + 4*version
	base := &Code{Version: version, Size: size, modules: make([]bool, size*size)}
	function := make([]bool, size*size)
	base.drawFunctionPatterns(function)
	base.placeData(function, codewords)

	if mask >= 0 {
		return base.masked(function, mask), nil
	}
	var best *Code
	bestPenalty := 0
	for m := range 8 {
		c := base.masked(function, m)
		if p := c.penalty(); best == nil || p < bestPenalty {
			best, bestPenalty = c, p
		}
	}
	return best, nil
}

// dataCodewords makes the data codewords: mode, count, bytes, terminator,
// then padding to the version's data capacity.
func dataCodewords(version int, data []byte) []byte {
	total := levelM[version].dataCodewords()
	var b bitBuffer
	b.put(0b0100, 4) // byte mode
	b.put(len(data), countBits(version))
	for _, c := range data {
		b.put(int(c), 8)
	}
	b.put(0, min(4, total*8-b.n)) // terminator, shortened when full
	if r := b.n % 8; r != 0 {
		b.put(0, 8-r)
	}
	for pad := 0xEC; len(b.bytes) < total; pad ^= 0xEC ^ 0x11 {
		b.put(pad, 8)
	}
	return b.bytes
}

// bitBuffer appends bits most significant first.
type bitBuffer struct {
	bytes []byte
	n     int // bits written
}

func (b *bitBuffer) put(v, bits int) {
	for i := bits - 1; i >= 0; i-- {
		if b.n%8 == 0 {
			b.bytes = append(b.bytes, 0)
		}
		if v>>i&1 == 1 {
			b.bytes[b.n/8] |= 0x80 >> (b.n % 8)
		}
		b.n++
	}
}

// interleave splits the data into blocks, adds each block's Reed-Solomon
// codewords and interleaves them: data codewords column by column across
// blocks, then error correction codewords likewise.
func interleave(version int, data []byte) []byte {
	l := levelM[version]
	gen := generator(l.ecPerBlock)
	nblocks := l.blocks1 + l.blocks2
	blocks := make([][]byte, nblocks)
	ecs := make([][]byte, nblocks)
	off := 0
	for i := range nblocks {
		n := l.data1
		if i >= l.blocks1 {
			n++
		}
		blocks[i] = data[off : off+n]
		ecs[i] = remainder(blocks[i], gen)
		off += n
	}
	out := make([]byte, 0, len(data)+nblocks*l.ecPerBlock)
	for i := range l.data1 + 1 {
		for _, blk := range blocks {
			if i < len(blk) {
				out = append(out, blk[i])
			}
		}
	}
	for i := range l.ecPerBlock {
		for _, ec := range ecs {
			out = append(out, ec[i])
		}
	}
	return out
}

// set marks a module; function records that it belongs to a function
// pattern (finder, timing, alignment, format or version information).
func (c *Code) set(function []bool, x, y int, dark bool) {
	c.modules[y*c.Size+x] = dark
	function[y*c.Size+x] = true
}

func (c *Code) drawFunctionPatterns(function []bool) {
	n := c.Size
	// Timing patterns, drawn first so that finders overwrite their ends.
	for i := range n {
		c.set(function, 6, i, i%2 == 0)
		c.set(function, i, 6, i%2 == 0)
	}
	// Finder patterns with their light separators.
	for _, p := range [][2]int{{3, 3}, {n - 4, 3}, {3, n - 4}} {
		for dy := -4; dy <= 4; dy++ {
			for dx := -4; dx <= 4; dx++ {
				x, y := p[0]+dx, p[1]+dy
				if x < 0 || y < 0 || x >= n || y >= n {
					continue
				}
				d := max(abs(dx), abs(dy))
				c.set(function, x, y, d != 2 && d != 4)
			}
		}
	}
	// Alignment patterns, except where they would cover a finder.
	pos := alignment[c.Version]
	for i, ay := range pos {
		for j, ax := range pos {
			if (i == 0 && j == 0) || (i == 0 && j == len(pos)-1) || (i == len(pos)-1 && j == 0) {
				continue
			}
			for dy := -2; dy <= 2; dy++ {
				for dx := -2; dx <= 2; dx++ {
					c.set(function, ax+dx, ay+dy, max(abs(dx), abs(dy)) != 1)
				}
			}
		}
	}
	// Reserve the format information (written per mask) and the dark
	// module; write the version information.
	c.drawFormat(function, 0)
	if c.Version >= 7 {
		bits := versionBits(c.Version)
		for i := range 18 {
			dark := bits>>i&1 == 1
			a, b := n-11+i%3, i/3
			c.set(function, a, b, dark)
			c.set(function, b, a, dark)
		}
	}
}

// drawFormat writes both copies of the 15-bit format information for mask
// at level M, and the dark module beside the lower-left finder.
func (c *Code) drawFormat(function []bool, mask int) {
	bits := formatBits(mask)
	bit := func(i int) bool { return bits>>i&1 == 1 }
	n := c.Size
	// Around the upper-left finder.
	for i := range 6 {
		c.set(function, 8, i, bit(i))
	}
	c.set(function, 8, 7, bit(6))
	c.set(function, 8, 8, bit(7))
	c.set(function, 7, 8, bit(8))
	for i := 9; i < 15; i++ {
		c.set(function, 14-i, 8, bit(i))
	}
	// Below the upper-right finder and beside the lower-left one.
	for i := range 8 {
		c.set(function, n-1-i, 8, bit(i))
	}
	for i := 8; i < 15; i++ {
		c.set(function, 8, n-15+i, bit(i))
	}
	c.set(function, 8, n-8, true)
}

// formatBits is the BCH(15,5) code of level M (00) and mask, XORed with
// the fixed pattern 101010000010010.
func formatBits(mask int) int {
	data := 0b00<<3 | mask
	rem := data
	for range 10 {
		rem = rem<<1 ^ (rem>>9)*0x537
	}
	return (data<<10 | rem) ^ 0x5412
}

// versionBits is the BCH(18,6) code of the version number.
func versionBits(version int) int {
	rem := version
	for range 12 {
		rem = rem<<1 ^ (rem>>11)*0x1F25
	}
	return version<<12 | rem
}

// placeData writes the codewords into the non-function modules in the
// standard's zigzag: two-module columns from the right, upwards and
// downwards in turn, skipping the vertical timing column. Remainder
// modules stay light.
func (c *Code) placeData(function []bool, codewords []byte) {
	n := c.Size
	i := 0
	for right := n - 1; right >= 1; right -= 2 {
		if right == 6 {
			right = 5
		}
		upward := (right+1)&2 == 0
		for v := range n {
			y := v
			if upward {
				y = n - 1 - v
			}
			for dx := range 2 {
				x := right - dx
				if function[y*n+x] || i >= len(codewords)*8 {
					continue
				}
				c.modules[y*n+x] = codewords[i/8]>>(7-i%8)&1 == 1
				i++
			}
		}
	}
}

// masked returns a copy of c with mask applied to the data modules and
// its format information written.
func (c *Code) masked(function []bool, mask int) *Code {
	out := &Code{Version: c.Version, Mask: mask, Size: c.Size, modules: append([]bool(nil), c.modules...)}
	n := c.Size
	for y := range n {
		for x := range n {
			if !function[y*n+x] && maskBit(mask, x, y) {
				out.modules[y*n+x] = !out.modules[y*n+x]
			}
		}
	}
	scratch := make([]bool, len(function))
	out.drawFormat(scratch, mask)
	return out
}

// maskBit reports whether mask inverts the module in row y, column x.
func maskBit(mask, x, y int) bool {
	switch mask {
	case 0:
		return (x+y)%2 == 0
	case 1:
		return y%2 == 0
	case 2:
		return x%3 == 0
	case 3:
		return (x+y)%3 == 0
	case 4:
		return (y/2+x/3)%2 == 0
	case 5:
		return x*y%2+x*y%3 == 0
	case 6:
		return (x*y%2+x*y%3)%2 == 0
	default:
		return ((x+y)%2+x*y%3)%2 == 0
	}
}

// penalty scores the symbol by the four rules of ISO/IEC 18004 §7.8.3:
// long runs, 2×2 blocks, finder-like patterns and an unbalanced share of
// dark modules. Lower is better.
func (c *Code) penalty() int {
	n := c.Size
	p := 0
	// Rules 1 and 3 on rows and columns.
	line := make([]bool, n)
	for i := range n {
		for j := range n {
			line[j] = c.modules[i*n+j]
		}
		p += linePenalty(line)
		for j := range n {
			line[j] = c.modules[j*n+i]
		}
		p += linePenalty(line)
	}
	// Rule 2: each 2×2 block of one colour.
	for y := range n - 1 {
		for x := range n - 1 {
			d := c.modules[y*n+x]
			if c.modules[y*n+x+1] == d && c.modules[(y+1)*n+x] == d && c.modules[(y+1)*n+x+1] == d {
				p += 3
			}
		}
	}
	// Rule 4: 10 points per full 5 % the dark share is away from 50 %.
	dark := 0
	for _, m := range c.modules {
		if m {
			dark++
		}
	}
	total := n * n
	k := (abs(dark*20-total*10) + total - 1) / total // ⌈|dark/total − ½| / 5 %⌉
	p += max(k-1, 0) * 10
	return p
}

// linePenalty scores one row or column: 3 + (length − 5) per run of five
// or more modules of one colour, and 40 per dark-light-dark pattern of
// 1:1:3:1:1 with four light modules (or the edge) on one side.
func linePenalty(line []bool) int {
	p := 0
	run := 1
	for i := 1; i <= len(line); i++ {
		if i < len(line) && line[i] == line[i-1] {
			run++
			continue
		}
		if run >= 5 {
			p += 3 + run - 5
		}
		run = 1
	}
	n := len(line)
	dark := func(i int) bool { return i >= 0 && i < n && line[i] }
	for i := 0; i+7 <= n; i++ {
		if !(dark(i) && !dark(i+1) && dark(i+2) && dark(i+3) && dark(i+4) && !dark(i+5) && dark(i+6)) {
			continue
		}
		before, after := true, true
		for k := 1; k <= 4; k++ {
			before = before && !dark(i-k)
			after = after && !dark(i+6+k)
		}
		if before || after {
			p += 40
		}
	}
	return p
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

// SVG draws the symbol with a quiet zone of quiet modules on every side
// (the standard asks for 4), as one path of unit squares in a viewBox, so
// that it scales to any size crisply. title is its accessible name.
func (c *Code) SVG(quiet int, title string) string {
	dim := strconv.Itoa(c.Size + 2*quiet)
	var b strings.Builder
	b.Grow(c.Size * c.Size * 6)
	b.WriteString(`<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 `)
	b.WriteString(dim + " " + dim)
	b.WriteString(`" shape-rendering="crispEdges" role="img"><title>`)
	b.WriteString(escapeXML(title))
	b.WriteString(`</title><rect width="100%" height="100%" fill="#fff"/><path fill="#000" d="`)
	for y := range c.Size {
		for x := 0; x < c.Size; {
			if !c.Dark(x, y) {
				x++
				continue
			}
			// One horizontal run of dark modules per subpath.
			start := x
			for x < c.Size && c.Dark(x, y) {
				x++
			}
			b.WriteString("M" + strconv.Itoa(start+quiet) + " " + strconv.Itoa(y+quiet) +
				"h" + strconv.Itoa(x-start) + "v1h-" + strconv.Itoa(x-start) + "z")
		}
	}
	b.WriteString(`"/></svg>`)
	return b.String()
}

func escapeXML(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&apos;").Replace(s)
}

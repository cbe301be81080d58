package addon

import (
	"flag"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// The add-on's icon.png and logo.png are drawn here from a few shapes, so
// that they can be changed and redrawn without an image editor:
//
//	go test ./internal/addon -run TestArtwork -update
//
// Without -update the test checks that the committed images are what this
// code draws, at the sizes Home Assistant asks for (icon 128×128, logo
// about 250×100).

var update = flag.Bool("update", false, "redraw addon/icon.png and addon/logo.png")

const addonDir = "../../addon"

// Colours of the artwork.
var (
	navyTop    = color.NRGBA{0x15, 0x5a, 0x9c, 0xff}
	navyBottom = color.NRGBA{0x0b, 0x2f, 0x5a, 0xff}
	white      = color.NRGBA{0xff, 0xff, 0xff, 0xff}
	glass      = color.NRGBA{0x9c, 0xc8, 0xee, 0xff}
	tyre       = color.NRGBA{0x07, 0x1c, 0x36, 0xff}
	bolt       = color.NRGBA{0xff, 0xc9, 0x28, 0xff}
)

// shape is a set of points in drawing units.
type shape func(x, y float64) bool

// layer paints a shape with a colour that may depend on the position.
type layer struct {
	in  shape
	col func(x, y float64) color.NRGBA
}

func solid(c color.NRGBA) func(x, y float64) color.NRGBA {
	return func(float64, float64) color.NRGBA { return c }
}

// render draws layers (later over earlier) into a w×h image whose pixel
// (px, py) shows the drawing point (px/scale - dx, py/scale - dy), with
// 4×4 samples per pixel for smooth edges.
func render(w, h int, scale, dx, dy float64, layers []layer) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	const n = 4
	for py := range h {
		for px := range w {
			var r, g, b, a float64
			for sy := range n {
				for sx := range n {
					x := (float64(px)+(float64(sx)+0.5)/n)/scale - dx
					y := (float64(py)+(float64(sy)+0.5)/n)/scale - dy
					for i := len(layers) - 1; i >= 0; i-- {
						if layers[i].in(x, y) {
							c := layers[i].col(x, y)
							af := float64(c.A) / 255
							r += float64(c.R) * af
							g += float64(c.G) * af
							b += float64(c.B) * af
							a += af
							break
						}
					}
				}
			}
			if a == 0 {
				continue
			}
			img.SetNRGBA(px, py, color.NRGBA{
				R: uint8(math.Round(r / a)), G: uint8(math.Round(g / a)), B: uint8(math.Round(b / a)),
				A: uint8(math.Round(a / (n * n) * 255)),
			})
		}
	}
	return img
}

// Shapes.

func circle(cx, cy, r float64) shape {
	return func(x, y float64) bool { return (x-cx)*(x-cx)+(y-cy)*(y-cy) <= r*r }
}

func roundRect(x0, y0, x1, y1, r float64) shape {
	return func(x, y float64) bool {
		if x < x0 || x > x1 || y < y0 || y > y1 {
			return false
		}
		qx := math.Max(math.Max(x0+r-x, x-(x1-r)), 0)
		qy := math.Max(math.Max(y0+r-y, y-(y1-r)), 0)
		return qx*qx+qy*qy <= r*r
	}
}

// polygon is a convex polygon given clockwise on screen (y down).
func polygon(pts ...[2]float64) shape {
	return func(x, y float64) bool {
		for i, p := range pts {
			q := pts[(i+1)%len(pts)]
			if (q[0]-p[0])*(y-p[1])-(q[1]-p[1])*(x-p[0]) < 0 {
				return false
			}
		}
		return true
	}
}

// stroke is a line from (ax, ay) to (bx, by) of width w with round ends.
func stroke(ax, ay, bx, by, w float64) shape {
	return func(x, y float64) bool {
		vx, vy := bx-ax, by-ay
		t := ((x-ax)*vx + (y-ay)*vy) / (vx*vx + vy*vy)
		t = math.Max(0, math.Min(1, t))
		dx, dy := x-(ax+t*vx), y-(ay+t*vy)
		return dx*dx+dy*dy <= w*w/4
	}
}

// arc is a circular stroke of width w from angle a0 to a1 (degrees,
// clockwise on screen from the positive x axis, a0 < a1 ≤ a0+360).
func arc(cx, cy, r, a0, a1, w float64) shape {
	ends := []shape{
		circle(cx+r*math.Cos(a0*math.Pi/180), cy+r*math.Sin(a0*math.Pi/180), w/2),
		circle(cx+r*math.Cos(a1*math.Pi/180), cy+r*math.Sin(a1*math.Pi/180), w/2),
	}
	return func(x, y float64) bool {
		d := math.Hypot(x-cx, y-cy)
		if math.Abs(d-r) > w/2 {
			return false
		}
		a := math.Atan2(y-cy, x-cx) * 180 / math.Pi
		for a < a0 {
			a += 360
		}
		return a <= a1 || ends[0](x, y) || ends[1](x, y)
	}
}

func union(shapes ...shape) shape {
	return func(x, y float64) bool {
		for _, s := range shapes {
			if s(x, y) {
				return true
			}
		}
		return false
	}
}

func shifted(s shape, dx float64) shape {
	return func(x, y float64) bool { return s(x-dx, y) }
}

// gradient runs from top (y0) to bottom (y1).
func gradient(y0, y1 float64) func(x, y float64) color.NRGBA {
	return func(_, y float64) color.NRGBA {
		t := math.Max(0, math.Min(1, (y-y0)/(y1-y0)))
		mix := func(a, b uint8) uint8 { return uint8(math.Round(float64(a) + t*(float64(b)-float64(a)))) }
		return color.NRGBA{mix(navyTop.R, navyBottom.R), mix(navyTop.G, navyBottom.G), mix(navyTop.B, navyBottom.B), 0xff}
	}
}

// carScene is a car seen from the side with a charging bolt above it, in
// a 128×128 box, without background.
func carScene() []layer {
	return []layer{
		{union(
			roundRect(14, 66, 114, 92, 11), // body
			polygon([2]float64{42, 42}, [2]float64{82, 42}, // cabin
				[2]float64{100, 68}, [2]float64{26, 68}),
		), solid(white)},
		{polygon([2]float64{46, 48}, [2]float64{61, 48}, [2]float64{61, 64}, [2]float64{35, 64}), solid(glass)},
		{polygon([2]float64{66, 48}, [2]float64{79, 48}, [2]float64{91, 64}, [2]float64{66, 64}), solid(glass)},
		{union(circle(38, 92, 13), circle(90, 92, 13)), solid(tyre)},
		{union(circle(38, 92, 5), circle(90, 92, 5)), solid(white)},
		{union(
			polygon([2]float64{108, 4}, [2]float64{102, 28}, [2]float64{88, 28}),
			polygon([2]float64{96, 24}, [2]float64{112, 24}, [2]float64{91, 47}),
		), solid(bolt)},
	}
}

func drawIcon() *image.NRGBA {
	layers := append([]layer{{roundRect(0, 0, 128, 128, 26), gradient(0, 128)}}, carScene()...)
	return render(128, 128, 1, 0, 0, layers)
}

// Glyphs of "fleet2mqtt" drawn with strokes, in units of the x-height,
// baseline at y=0 (y grows downwards), each with its advance.
const sw = 0.21 // stroke width

type glyph struct {
	adv   float64
	shape shape
}

var glyphs = map[rune]glyph{
	'f': {0.62, union(stroke(0.24, -0.1, 0.24, -1.12, sw), arc(0.5, -1.12, 0.26, 180, 300, sw), stroke(0.02, -0.92, 0.54, -0.92, sw))},
	'l': {0.36, stroke(0.18, -1.4, 0.18, -0.1, sw)},
	'e': {0.92, union(arc(0.46, -0.5, 0.4, 38, 360, sw), stroke(0.1, -0.5, 0.84, -0.5, sw))},
	't': {0.62, union(stroke(0.22, -1.25, 0.22, -0.32, sw), arc(0.46, -0.32, 0.24, 90, 180, sw), stroke(0.02, -0.92, 0.54, -0.92, sw))},
	'2': {0.9, union(arc(0.45, -1.0, 0.33, 165, 390, sw), stroke(0.736, -0.835, 0.1, -0.1, sw), stroke(0.1, -0.1, 0.82, -0.1, sw))},
	'm': {1.36, union(
		stroke(0.12, -0.9, 0.12, -0.1, sw),
		arc(0.37, -0.62, 0.25, 180, 360, sw), stroke(0.62, -0.62, 0.62, -0.1, sw),
		arc(0.87, -0.62, 0.25, 180, 360, sw), stroke(1.12, -0.62, 1.12, -0.1, sw),
	)},
	'q': {0.92, union(arc(0.42, -0.5, 0.37, 0, 360, sw), stroke(0.79, -0.9, 0.79, 0.42, sw))},
}

// text lays out s from x=0 with a gap between glyphs; glyph i is painted
// with colour(i).
func text(s string, gap float64, col func(i int) color.NRGBA) (layers []layer, width float64) {
	x := 0.0
	for i, r := range []rune(s) {
		g := glyphs[r]
		layers = append(layers, layer{shifted(g.shape, x), solid(col(i))})
		x += g.adv + gap
	}
	return layers, x - gap
}

func drawLogo() *image.NRGBA {
	const w, h = 250, 100
	layers := []layer{{roundRect(0, 0, w, h, 22), gradient(0, h)}}
	// The car scene, 128 units high, scaled into the left 100 px.
	const sceneScale = 0.78
	for _, l := range carScene() {
		l := l
		layers = append(layers, layer{
			func(x, y float64) bool { return l.in((x-2)/sceneScale, (y-4)/sceneScale) },
			solid(l.col(0, 0)),
		})
	}
	// "fleet2mqtt" to its right, the 2 in the bolt's yellow.
	words, width := text("fleet2mqtt", 0.16, func(i int) color.NRGBA {
		if i == 5 {
			return bolt
		}
		return white
	})
	const left, right, baseline = 104.0, 242.0, 60.0
	unit := (right - left) / width
	for _, l := range words {
		l := l
		layers = append(layers, layer{
			func(x, y float64) bool { return l.in((x-left)/unit, (y-baseline)/unit) },
			l.col,
		})
	}
	return render(w, h, 1, 0, 0, layers)
}

func TestArtwork(t *testing.T) {
	tests := []struct {
		file string
		draw func() *image.NRGBA
		w, h int
	}{
		{"icon.png", drawIcon, 128, 128},
		{"logo.png", drawLogo, 250, 100},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			want := tt.draw()
			path := filepath.Join(addonDir, tt.file)
			if *update {
				f, err := os.Create(path)
				if err != nil {
					t.Fatal(err)
				}
				enc := png.Encoder{CompressionLevel: png.BestCompression}
				if err := enc.Encode(f, want); err != nil {
					t.Fatal(err)
				}
				if err := f.Close(); err != nil {
					t.Fatal(err)
				}
			}
			f, err := os.Open(path)
			if err != nil {
				t.Fatalf("%v (draw it with -update)", err)
			}
			defer f.Close()
			got, err := png.Decode(f)
			if err != nil {
				t.Fatal(err)
			}
			if b := got.Bounds(); b.Dx() != tt.w || b.Dy() != tt.h {
				t.Fatalf("%s is %d×%d, want %d×%d", tt.file, b.Dx(), b.Dy(), tt.w, tt.h)
			}
			// Floating point may round one sample differently on another
			// CPU: allow a small difference per channel.
			bad := 0
			for y := range tt.h {
				for x := range tt.w {
					g := color.NRGBAModel.Convert(got.At(x, y)).(color.NRGBA)
					w := want.NRGBAAt(x, y)
					if far(g.R, w.R) || far(g.G, w.G) || far(g.B, w.B) || far(g.A, w.A) {
						bad++
					}
				}
			}
			if bad > 0 {
				t.Errorf("%s: %d pixels differ from what the drawing code makes; redraw with -update", tt.file, bad)
			}
		})
	}
}

func far(a, b uint8) bool { return int(a)-int(b) > 17 || int(b)-int(a) > 17 }

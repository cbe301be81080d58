package qrcode

// Reed-Solomon error correction over GF(2⁸) with the QR code's primitive
// polynomial x⁸ + x⁴ + x³ + x² + 1 (0x11D) and generator element α = 2.

// gfExp and gfLog are α's powers and their logarithms; gfExp is doubled so
// that products need no reduction modulo 255.
var gfExp, gfLog = func() (exp [512]byte, log [256]byte) {
	x := 1
	for i := range 255 {
		exp[i] = byte(x)
		log[x] = byte(i)
		x <<= 1
		if x&0x100 != 0 {
			x ^= 0x11D
		}
	}
	for i := 255; i < 512; i++ {
		exp[i] = exp[i-255]
	}
	return exp, log
}()

func gfMul(a, b byte) byte {
	if a == 0 || b == 0 {
		return 0
	}
	return gfExp[int(gfLog[a])+int(gfLog[b])]
}

// generator returns the coefficients, highest degree first without the
// leading 1, of (x − α⁰)(x − α¹)…(x − α^(n−1)).
func generator(n int) []byte {
	g := make([]byte, n+1)
	g[0] = 1
	for i := range n {
		// Multiply by (x + αⁱ); subtraction is addition in GF(2⁸).
		root := gfExp[i]
		for j := i + 1; j > 0; j-- {
			g[j] = g[j-1] ^ gfMul(g[j], root)
		}
		g[0] = gfMul(g[0], root)
	}
	// g now holds the coefficients lowest degree first; reverse them.
	out := make([]byte, n)
	for i := range n {
		out[i] = g[n-1-i]
	}
	return out
}

// remainder returns the n error correction codewords of data: the
// remainder of data·xⁿ divided by the generator polynomial.
func remainder(data, gen []byte) []byte {
	rem := make([]byte, len(gen))
	for _, d := range data {
		factor := d ^ rem[0]
		copy(rem, rem[1:])
		rem[len(rem)-1] = 0
		for i, g := range gen {
			rem[i] ^= gfMul(g, factor)
		}
	}
	return rem
}

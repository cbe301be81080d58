package simulate

import "strconv"

// TestVIN returns the n-th simulated VIN (n from 1 to 999999): a
// well-formed 17-character VIN with a correct check digit, in a range no
// real car uses ("5YJ3E1EA", model year S, plant F, serial n), so that
// generated VINs are stable across runs and never collide with each other.
func TestVIN(n int) string {
	var v [17]byte
	copy(v[:], "5YJ3E1EA0SF000000")
	serial := strconv.Itoa(n % 1_000_000)
	copy(v[17-len(serial):], serial)
	v[8] = vinCheckDigit(v[:])
	return string(v[:])
}

// vinWeights are the position weights of the VIN check digit (ISO 3779,
// North American rule); the check digit's own position weighs nothing.
var vinWeights = [17]int{8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2}

// vinCheckDigit computes the check digit of a VIN: the weighted sum of
// the transliterated characters modulo 11, with 10 written as X.
func vinCheckDigit(vin []byte) byte {
	sum := 0
	for i, c := range vin {
		sum += vinValue(c) * vinWeights[i]
	}
	if r := sum % 11; r < 10 {
		return byte('0' + r)
	}
	return 'X'
}

// vinValue transliterates one VIN character. I, O and Q never occur in a
// VIN and count as zero.
func vinValue(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'A' && c <= 'H':
		return int(c-'A') + 1
	case c >= 'J' && c <= 'N':
		return int(c-'J') + 1
	case c == 'P':
		return 7
	case c == 'R':
		return 9
	case c >= 'S' && c <= 'Z':
		return int(c-'S') + 2
	}
	return 0
}

package compare

import "bytes"

// maxExponentDigits bounds the exponent literals numEqual reasons about; beyond it (more
// than a quadrillion decimal places) two differently written literals are reported unequal
// rather than computed with.
const maxExponentDigits = 15

// decimal is a JSON number as sign, significant digits and a power of ten: the value is
// digits × 10^exp. The digits are the integer and fraction digits of the literal, which
// are not adjacent in it (the point sits between), so they are kept as two slices.
type decimal struct {
	neg    bool
	ip, fp []byte // significant digits: ip from the integer part, then fp from the fraction
	exp    int64
}

// numEqual reports whether two JSON number literals denote exactly the same value, so
// 1, 1.0, 10e-1 and 1E0 are equal, and 9007199254740993 differs from 9007199254740992
// (float64 would call them equal). Both literals must be valid JSON numbers.
func numEqual(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	da, okA := parseDecimal(a)
	db, okB := parseDecimal(b)
	if !okA || !okB {
		return false
	}
	zeroA, zeroB := len(da.ip)+len(da.fp) == 0, len(db.ip)+len(db.fp) == 0
	if zeroA || zeroB {
		return zeroA && zeroB // -0 and 0e5 are 0
	}
	if da.neg != db.neg || da.exp != db.exp || len(da.ip)+len(da.fp) != len(db.ip)+len(db.fp) {
		return false
	}
	for i, n := 0, len(da.ip)+len(da.fp); i < n; i++ {
		if da.digit(i) != db.digit(i) {
			return false
		}
	}
	return true
}

func (d *decimal) digit(i int) byte {
	if i < len(d.ip) {
		return d.ip[i]
	}
	return d.fp[i-len(d.ip)]
}

// parseDecimal splits a valid JSON number literal. ok is false only for exponents too long
// to reason about.
func parseDecimal(s []byte) (d decimal, ok bool) {
	if len(s) > 0 && s[0] == '-' {
		d.neg = true
		s = s[1:]
	}
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	d.ip, s = s[:i], s[i:]
	if len(s) > 0 && s[0] == '.' {
		j := 1
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		d.fp, s = s[1:j], s[j:]
	}
	if len(s) > 0 { // exponent
		s = s[1:]
		neg := false
		if len(s) > 0 && (s[0] == '+' || s[0] == '-') {
			neg = s[0] == '-'
			s = s[1:]
		}
		for len(s) > 1 && s[0] == '0' {
			s = s[1:]
		}
		if len(s) > maxExponentDigits {
			return d, false
		}
		for _, c := range s {
			d.exp = d.exp*10 + int64(c-'0')
		}
		if neg {
			d.exp = -d.exp
		}
	}
	// The value is (ip‖fp) × 10^(exp − len(fp)); drop leading zeros (no effect) and trailing
	// zeros (each raises the exponent by one) so equal values have equal digits.
	d.exp -= int64(len(d.fp))
	for len(d.ip) > 0 && d.ip[0] == '0' {
		d.ip = d.ip[1:]
	}
	if len(d.ip) == 0 {
		for len(d.fp) > 0 && d.fp[0] == '0' {
			d.fp = d.fp[1:]
		}
	}
	for len(d.fp) > 0 && d.fp[len(d.fp)-1] == '0' {
		d.fp = d.fp[:len(d.fp)-1]
		d.exp++
	}
	if len(d.fp) == 0 {
		for len(d.ip) > 0 && d.ip[len(d.ip)-1] == '0' {
			d.ip = d.ip[:len(d.ip)-1]
			d.exp++
		}
	}
	return d, true
}

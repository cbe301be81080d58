package acme

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// ServedCA returns the PEM of the authorities that validate a served
// certificate chain (DER, leaf first, as tls.Certificate.Certificate holds
// it): the intermediates of the shortest verified path and the root that
// ends it. That is what a car's config carries as "ca": the root keeps
// validating renewed certificates, and the intermediates let a check that
// ignores the served chain (as Tesla's check_server_cert.sh does) pass too.
//
// roots are the trusted roots; nil means the system's. A chain that does
// not lead to one of them but ends in a self-signed authority (a private
// PKI that sends its root) yields the certificates after the leaf.
func ServedCA(chain [][]byte, roots *x509.CertPool) ([]byte, error) {
	certs, err := parseChain(chain)
	if err != nil {
		return nil, err
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	verified, err := certs[0].Verify(x509.VerifyOptions{
		Intermediates: inter,
		Roots:         roots,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err == nil {
		best := verified[0]
		for _, v := range verified[1:] {
			if len(v) < len(best) {
				best = v
			}
		}
		return encodePEM(best[1:]), nil
	}
	last := certs[len(certs)-1]
	if len(certs) > 1 && last.IsCA && last.CheckSignatureFrom(last) == nil {
		return encodePEM(certs[1:]), nil
	}
	return nil, fmt.Errorf("%w: %v", ErrUntrustedChain, err)
}

// parseChain parses a DER chain, leaf first.
func parseChain(chain [][]byte) ([]*x509.Certificate, error) {
	if len(chain) == 0 {
		return nil, ErrNoCertificate
	}
	certs := make([]*x509.Certificate, len(chain))
	for i, der := range chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("certificate %d of the chain: %w", i+1, err)
		}
		certs[i] = c
	}
	return certs, nil
}

// encodePEM writes certificates as concatenated CERTIFICATE blocks.
func encodePEM(certs []*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// ParsePEMCertificates returns every CERTIFICATE block of data, skipping
// other blocks (such as the private key autocert stores next to a chain).
func ParsePEMCertificates(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(out)+1, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM certificate found")
	}
	return out, nil
}

// mergePEM concatenates PEM bundles, keeping each certificate once, in
// first-seen order.
func mergePEM(bundles ...[]byte) []byte {
	var out []byte
	var seen [][]byte
	for _, b := range bundles {
		for {
			var block *pem.Block
			block, b = pem.Decode(b)
			if block == nil {
				break
			}
			dup := false
			for _, s := range seen {
				if bytes.Equal(s, block.Bytes) {
					dup = true
					break
				}
			}
			if dup {
				continue
			}
			seen = append(seen, block.Bytes)
			out = append(out, pem.EncodeToMemory(block)...)
		}
	}
	return out
}

package fleetapi

import (
	"fmt"
	"net/url"
	"strings"
)

// Region is a Tesla Fleet API region. Owners' data and partner
// registrations live per region.
type Region string

// Tesla's regions.
const (
	// RegionNA: North America and Asia-Pacific except China.
	RegionNA Region = "na"
	// RegionEU: Europe, Middle East and Africa.
	RegionEU Region = "eu"
	// RegionCN: China.
	RegionCN Region = "cn"
)

// Regions lists every region in a stable order.
var Regions = []Region{RegionNA, RegionEU, RegionCN}

// ParseRegion accepts "na", "eu" or "cn" in any case.
func ParseRegion(s string) (Region, error) {
	r := Region(strings.ToLower(strings.TrimSpace(s)))
	switch r {
	case RegionNA, RegionEU, RegionCN:
		return r, nil
	}
	return "", fmt.Errorf("region %q: want na, eu or cn", s)
}

// Name is the region's name for people.
func (r Region) Name() string {
	switch r {
	case RegionNA:
		return "North America and Asia-Pacific"
	case RegionEU:
		return "Europe, Middle East and Africa"
	case RegionCN:
		return "China"
	}
	return ""
}

// Tesla's production addresses.
const (
	DefaultAuthorizeURL = "https://auth.tesla.com/oauth2/v3/authorize"
	DefaultTokenURL     = "https://fleet-auth.prd.vn.cloud.tesla.com/oauth2/v3/token"
	BaseURLNA           = "https://fleet-api.prd.na.vn.cloud.tesla.com"
	BaseURLEU           = "https://fleet-api.prd.eu.vn.cloud.tesla.com"
	BaseURLCN           = "https://fleet-api.prd.cn.vn.cloud.tesla.cn"
)

// Endpoints are the addresses the client talks to. Tests point them at a
// fake (see package fleetapitest).
type Endpoints struct {
	// AuthorizeURL is the login page the owner's browser is sent to.
	AuthorizeURL string
	// TokenURL is where codes and refresh tokens become access tokens.
	TokenURL string
	// APIBase maps each region to its Fleet API base URL, which is also
	// the OAuth "audience" of tokens for that region.
	APIBase map[Region]string
}

// DefaultEndpoints returns Tesla's production endpoints.
func DefaultEndpoints() Endpoints {
	return Endpoints{
		AuthorizeURL: DefaultAuthorizeURL,
		TokenURL:     DefaultTokenURL,
		APIBase: map[Region]string{
			RegionNA: BaseURLNA,
			RegionEU: BaseURLEU,
			RegionCN: BaseURLCN,
		},
	}
}

// BaseURL returns the Fleet API base URL of r.
func (e Endpoints) BaseURL(r Region) (string, error) {
	if u, ok := e.APIBase[r]; ok && u != "" {
		return strings.TrimSuffix(u, "/"), nil
	}
	return "", fmt.Errorf("no fleet api address for region %q", r)
}

// RegionOf returns the region whose base URL is baseURL (compared by
// scheme and host, so a trailing slash or path does not matter).
func (e Endpoints) RegionOf(baseURL string) (Region, bool) {
	want, err := url.Parse(strings.TrimSpace(baseURL))
	if err != nil || want.Host == "" {
		return "", false
	}
	for _, r := range Regions {
		base, ok := e.APIBase[r]
		if !ok {
			continue
		}
		u, err := url.Parse(base)
		if err == nil && strings.EqualFold(u.Host, want.Host) && strings.EqualFold(u.Scheme, want.Scheme) {
			return r, true
		}
	}
	return "", false
}

func (e Endpoints) validate() error {
	if e.AuthorizeURL == "" || e.TokenURL == "" {
		return fmt.Errorf("endpoints: authorize and token URLs must be set")
	}
	for _, raw := range []string{e.AuthorizeURL, e.TokenURL} {
		if u, err := url.Parse(raw); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
			return fmt.Errorf("endpoints: %q is not an absolute http(s) URL", raw)
		}
	}
	if len(e.APIBase) == 0 {
		return fmt.Errorf("endpoints: no fleet api base URL")
	}
	for r, raw := range e.APIBase {
		if u, err := url.Parse(raw); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
			return fmt.Errorf("endpoints: region %s: %q is not an absolute http(s) URL", r, raw)
		}
	}
	return nil
}

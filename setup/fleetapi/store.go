package fleetapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"golang.org/x/oauth2"
)

// TokenStore keeps an owner's OAuth token between runs.
//
// Tesla's refresh tokens are single use: every refresh returns a new one
// and invalidates the old. The client therefore calls SaveToken with every
// new token before it uses the new access token, and SaveToken must return
// only once the token is durably stored (written atomically: a crash must
// leave either the old or the new token, never a torn file). If SaveToken
// fails, the request fails and the token is kept in memory and saved again
// on the next request.
type TokenStore interface {
	// LoadToken returns the stored token, or nil and no error when there
	// is none yet.
	LoadToken() (*oauth2.Token, error)
	// SaveToken durably replaces the stored token.
	SaveToken(*oauth2.Token) error
}

// FileTokenStore stores the token as JSON in one file with mode 0600,
// replaced atomically on every save.
type FileTokenStore struct {
	Path string
}

// LoadToken implements TokenStore.
func (s FileTokenStore) LoadToken() (*oauth2.Token, error) {
	data, err := os.ReadFile(s.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load token: %w", err)
	}
	var tok oauth2.Token
	if err := json.Unmarshal(data, &tok); err != nil {
		return nil, fmt.Errorf("load token %s: %w", s.Path, err)
	}
	return &tok, nil
}

// SaveToken implements TokenStore.
func (s FileTokenStore) SaveToken(tok *oauth2.Token) error {
	if tok == nil {
		return errors.New("save token: nil token")
	}
	// oauth2.Token's own JSON form keeps access, refresh, type and expiry.
	data, err := json.Marshal(&oauth2.Token{
		AccessToken:  tok.AccessToken,
		TokenType:    tok.TokenType,
		RefreshToken: tok.RefreshToken,
		Expiry:       tok.Expiry,
	})
	if err != nil {
		return fmt.Errorf("save token: %w", err)
	}
	if err := WriteFileAtomic(s.Path, data, 0o600); err != nil {
		return fmt.Errorf("save token: %w", err)
	}
	return nil
}

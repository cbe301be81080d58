//go:build hardening

package hardening

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// browser is an HTTP client with a cookie jar that does not follow
// redirects, optionally dialling from another loopback address.
type browser struct {
	t    *testing.T
	base string
	c    *http.Client
	csrf string
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func newBrowser(t *testing.T, base string, from string) *browser {
	jar, _ := cookiejar.New(nil)
	tr := &http.Transport{}
	if from != "" {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
		tr.DialContext = d.DialContext
	}
	return &browser{t: t, base: base, c: &http.Client{
		Jar: jar, Timeout: 20 * time.Second, Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// do sends a request and returns status, Location and body; it keeps the
// page's CSRF token.
func (b *browser) do(method, path string, form url.Values, header http.Header) (int, string, string) {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.base+path, body)
	if err != nil {
		b.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if m := csrfField.FindSubmatch(raw); m != nil {
		b.csrf = string(m[1])
	}
	return resp.StatusCode, resp.Header.Get("Location"), string(raw)
}

// login logs in with password and returns the status of the POST.
func (b *browser) login(password string) int {
	b.t.Helper()
	b.do("GET", "/login", nil, nil)
	code, _, _ := b.do("POST", "/login", url.Values{"csrf": {b.csrf}, "password": {password}}, nil)
	return code
}

// TestSetupPageAccess attacks the setup page on the binary's web
// listener.
func TestSetupPageAccess(t *testing.T) {
	f := startFleet(t, "access",
		withConfig("setup.trust_ingress", true),
		withConfig("setup.ingress_address", "127.0.0.2"))
	password := getKey(f.cfg, "setup.password").(string)
	clientID := getKey(f.cfg, "setup.client_id").(string)
	base := "http://" + f.HTTP
	_, port, _ := net.SplitHostPort(f.HTTP)

	t.Run("without credentials", func(t *testing.T) {
		r := trial(t, areaAccess,
			"every page of the setup wizard (GET), every form (POST) and every script request (Accept: application/json) without logging in",
			"pages send to the login page (303), forms and script requests get 401; nothing of the configuration shows")
		b := newBrowser(t, base, "")
		gets := []string{"/", "/app", "/key", "/register", "/owner", "/vehicles", "/pairing", "/pairing-status", "/fields", "/push", "/verify", "/verify-status", "/history", "/history?vin=5YJ3E1EA7KF000001", "/history.csv?vin=5YJ3E1EA7KF000001", "/history.json?vin=5YJ3E1EA7KF000001", "/callback?code=x&state=y"}
		posts := []string{"/app", "/key", "/register", "/owner", "/vehicles", "/fields", "/estimate", "/push", "/remove", "/places", "/logout"}
		for _, p := range gets {
			table.attacks.Add(2)
			code, loc, body := b.do("GET", p, nil, nil)
			if code != http.StatusSeeOther || !strings.HasSuffix(loc, "login") {
				r.errorf(t, "GET %s: %d to %q, want 303 to the login page", p, code, loc)
			}
			if strings.Contains(body, clientID) {
				r.errorf(t, "GET %s shows the client id without a login", p)
			}
			code, _, _ = b.do("GET", p, nil, http.Header{"Accept": {"application/json"}})
			if code != http.StatusUnauthorized {
				r.errorf(t, "GET %s as a script: %d, want 401", p, code)
			}
		}
		for _, p := range posts {
			table.attacks.Add(1)
			if code, _, _ := b.do("POST", p, url.Values{"host": {""}}, nil); code != http.StatusUnauthorized {
				r.errorf(t, "POST %s: %d, want 401", p, code)
			}
		}
		r.figure("%d requests", 2*len(gets)+len(posts))
	})

	t.Run("forged ingress header", func(t *testing.T) {
		r := trial(t, areaAccess,
			"X-Ingress-Path (Home Assistant ingress, trusted from 127.0.0.2 in this configuration) sent from 127.0.0.1; twice; with .. in it from the trusted address; and, as control, a proper one from the trusted address",
			"forged or malformed: 403 and not logged in; the proper one from the trusted address is let in")
		for _, tc := range []struct {
			name, from string
			values     []string
			want       int
		}{
			{"from an untrusted address", "", []string{"/api/hassio_ingress/abc"}, http.StatusForbidden},
			{"twice", "127.0.0.2", []string{"/api/hassio_ingress/abc", "/x"}, http.StatusForbidden},
			{"with ..", "127.0.0.2", []string{"/api/hassio_ingress/../../etc"}, http.StatusForbidden},
			{"proper, from the trusted address", "127.0.0.2", []string{"/api/hassio_ingress/abc"}, http.StatusOK},
		} {
			table.attacks.Add(1)
			b := newBrowser(t, base, tc.from)
			code, _, body := b.do("GET", "/app", nil, http.Header{"X-Ingress-Path": tc.values})
			if code != tc.want {
				r.errorf(t, "%s: %d, want %d", tc.name, code, tc.want)
			}
			if tc.want != http.StatusOK && strings.Contains(body, clientID) {
				r.errorf(t, "%s: the page shows the configuration", tc.name)
			}
		}
	})

	t.Run("CSRF", func(t *testing.T) {
		r := trial(t, areaAccess,
			"after logging in: a form posted without the CSRF token, with a wrong one, with the token in the query string, with another session's token; logout without a token; a login form posted without a token (login CSRF)",
			"each refused with 403 and without effect (the session stays, the login does not happen); the session cookie is HttpOnly and SameSite=Lax")
		b := newBrowser(t, base, "")
		if code := b.login(password); code != http.StatusSeeOther {
			r.fatalf(t, "login: %d", code)
		}
		if code, _, _ := b.do("GET", "/app", nil, nil); code != http.StatusOK {
			r.fatalf(t, "GET /app after login: %d", code)
		}
		own := b.csrf
		other := newBrowser(t, base, "")
		other.login(password)
		other.do("GET", "/app", nil, nil)
		for _, tc := range []struct {
			name, path string
			form       url.Values
		}{
			{"no token", "/app", url.Values{"host": {""}}},
			{"wrong token", "/app", url.Values{"host": {""}, "csrf": {"AAAA" + own[4:]}}},
			{"token in the query string", "/app?csrf=" + own, url.Values{"host": {""}}},
			{"another session's token", "/app", url.Values{"host": {""}, "csrf": {other.csrf}}},
			{"logout without a token", "/logout", url.Values{}},
		} {
			table.attacks.Add(1)
			if code, _, _ := b.do("POST", tc.path, tc.form, nil); code != http.StatusForbidden {
				r.errorf(t, "%s: %d, want 403", tc.name, code)
			}
		}
		if code, _, _ := b.do("GET", "/app", nil, nil); code != http.StatusOK {
			r.errorf(t, "the session ended after a logout without a token: %d", code)
		}
		table.attacks.Add(1)
		fresh := newBrowser(t, base, "")
		fresh.do("GET", "/login", nil, nil)
		if code, _, _ := fresh.do("POST", "/login", url.Values{"password": {password}}, nil); code != http.StatusForbidden {
			r.errorf(t, "login without a token: %d, want 403", code)
		}
		if code, loc, _ := fresh.do("GET", "/app", nil, nil); code != http.StatusSeeOther || !strings.HasSuffix(loc, "login") {
			r.errorf(t, "a login posted without a token logged in (GET /app: %d %q)", code, loc)
		}
		// Cookie attributes, from the raw header of a login.
		raw := rawHTTP(t, f.HTTP, "GET /login HTTP/1.1\r\nHost: 127.0.0.1:"+port+"\r\nConnection: close\r\n\r\n")
		for _, l := range strings.Split(raw, "\r\n") {
			if strings.HasPrefix(strings.ToLower(l), "set-cookie:") && (!strings.Contains(l, "HttpOnly") || !strings.Contains(l, "SameSite=Lax")) {
				r.errorf(t, "session cookie without HttpOnly or SameSite=Lax: %s", l)
			}
		}
	})

	t.Run("path traversal", func(t *testing.T) {
		r := trial(t, areaAccess,
			"static asset paths that climb out (../, %2e%2e, %2f, double encoding, backslashes, //) on the web listener and the vehicle listener's public key path, aiming at /etc/passwd and the data directory's secrets",
			"nothing outside the embedded assets is served: no 200 carries a system file, a key, the password hash or the state; no directory listing")
		paths := []string{
			"/static/../../../../etc/passwd",
			"/static/..%2f..%2f..%2f..%2fetc%2fpasswd",
			"/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
			"/static/%252e%252e/%252e%252e/etc/passwd",
			"/static/..\\..\\..\\..\\etc\\passwd",
			"/static//etc/passwd",
			"/static/....//....//....//etc/passwd",
			"/static/../setup/password.json",
			"/static/../../data/setup/password.json",
			"/static/..%2fsetup%2fstate.json",
			"/static/../dev-pki/ca-key.pem",
			"/%2e%2e/%2e%2e/etc/passwd",
			"/static/",
			"/static/.",
			"/static/..",
		}
		bad := regexp.MustCompile(`root:.*:0:0:|PRIVATE KEY|pbkdf2|client_secret|hardening-client-id`)
		served := 0
		for _, p := range paths {
			table.attacks.Add(2)
			raw := rawHTTP(t, f.HTTP, "GET "+p+" HTTP/1.1\r\nHost: 127.0.0.1:"+port+"\r\nConnection: close\r\n\r\n")
			status, _, _ := strings.Cut(raw, "\r\n")
			if strings.Contains(status, " 200 ") {
				served++
				if bad.MatchString(raw) || strings.Contains(raw, "<title>Index of") || strings.Contains(raw, "<pre>\n<a href") {
					r.errorf(t, "web listener GET %s served something it must not: %s", p, shorten(raw, 300))
				}
			}
			vp := strings.Replace(p, "/static", "/.well-known/appspecific", 1)
			rawV := rawHTTPS(t, f.Vehicle, f.carTLS(), "GET "+vp+" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
			if st, _, _ := strings.Cut(rawV, "\r\n"); strings.Contains(st, " 200 ") && bad.MatchString(rawV) {
				r.errorf(t, "vehicle listener GET %s served something it must not: %s", vp, shorten(rawV, 300))
			}
		}
		r.figure("%d paths on two listeners; %d answered 200 (with an embedded asset or a redirect target)", len(paths), served)
	})

	t.Run("login page flood", func(t *testing.T) {
		r := trial(t, areaAccess,
			"the owner opens the login form; then 300 cookie-less GET /login from another loopback address; then the owner posts the right password with the form's token",
			"the owner is logged in: strangers' visits cannot push the owner's pending login (its CSRF token) out of memory")
		owner := newBrowser(t, base, "")
		owner.do("GET", "/login", nil, nil)
		for range 300 {
			table.attacks.Add(1)
			newBrowser(t, base, "127.0.0.3").do("GET", "/login", nil, nil)
		}
		code, loc, _ := owner.do("POST", "/login", url.Values{"csrf": {owner.csrf}, "password": {password}}, nil)
		if code != http.StatusSeeOther || strings.HasSuffix(loc, "login") {
			r.errorf(t, "the owner's login after the flood: %d to %q, want 303 into the wizard", code, loc)
		}
		r.figure("300 visits; the owner's login %d", code)
	})

	t.Run("wrong passwords from other addresses", func(t *testing.T) {
		r := trial(t, areaAccess,
			"40 wrong passwords from 127.0.0.3 to 127.0.0.10 (5 each, past the global ceiling of 20); then the right password from 127.0.0.1, which has not failed",
			"the strangers' addresses are slowed down (429); the owner's address, which never failed, logs in at once")
		locked := 0
		for i := range 40 {
			table.attacks.Add(1)
			b := newBrowser(t, base, fmt.Sprintf("127.0.0.%d", 3+i%8))
			if b.login("wrong-"+rand.Text()) == http.StatusTooManyRequests {
				locked++
			}
		}
		owner := newBrowser(t, base, "")
		if code := owner.login(password); code != http.StatusSeeOther {
			r.errorf(t, "the owner's right password after 40 wrong ones from elsewhere: %d, want 303", code)
		}
		if code, _, _ := owner.do("GET", "/app", nil, nil); code != http.StatusOK {
			r.errorf(t, "the owner is not logged in: GET /app %d", code)
		}
		stranger := newBrowser(t, base, "127.0.0.3")
		if code := stranger.login("wrong-" + rand.Text()); code != http.StatusTooManyRequests {
			r.errorf(t, "a stranger's address after 5 failures: %d, want 429", code)
		}
		r.figure("owner logged in; strangers' attempts refused with 429 from the global ceiling on (%d of 40)", locked)
	})

	// Last: it locks the login for a while.
	t.Run("wrong password", func(t *testing.T) {
		r := trial(t, areaAccess,
			"wrong passwords posted to the login form, each with a valid CSRF token, until refused; then the right password",
			"after a few failures (5 per address) further attempts get 429 with Retry-After, the right password included, and do not log in")
		b := newBrowser(t, base, "")
		attempts, locked := 0, false
		for attempts < 12 && !locked {
			attempts++
			table.attacks.Add(1)
			code := b.login("wrong-" + rand.Text())
			switch code {
			case http.StatusTooManyRequests:
				locked = true
			case http.StatusUnauthorized:
			default:
				r.errorf(t, "wrong password %d: %d", attempts, code)
			}
		}
		if !locked {
			r.fatalf(t, "%d wrong passwords and still no 429", attempts)
		}
		b.do("GET", "/login", nil, nil)
		req, _ := http.NewRequest("POST", base+"/login", strings.NewReader(url.Values{"csrf": {b.csrf}, "password": {password}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := b.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
			r.errorf(t, "the right password during the lockout: %d (Retry-After %q), want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
		}
		if code, loc, _ := b.do("GET", "/app", nil, nil); code != http.StatusSeeOther || !strings.HasSuffix(loc, "login") {
			r.errorf(t, "logged in during the lockout (GET /app: %d)", code)
		}
		r.figure("429 from attempt %d on; Retry-After %ss", attempts, resp.Header.Get("Retry-After"))
	})
}

// rawHTTP sends a request exactly as written and returns the answer.
func rawHTTP(t *testing.T, addr, req string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return exchange(c, req)
}

// rawHTTPS is rawHTTP over TLS without a client certificate.
func rawHTTPS(t *testing.T, addr string, cfg *tls.Config, req string) string {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return exchange(c, req)
}

func exchange(c net.Conn, req string) string {
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		return ""
	}
	raw, _ := io.ReadAll(io.LimitReader(bufio.NewReader(c), 1<<20))
	return string(raw)
}

// TestMQTTAccess tries the embedded broker's access rules with users and
// no anonymous access.
func TestMQTTAccess(t *testing.T) {
	r := trial(t, areaAccess,
		"embedded broker with users and allow_anonymous never: anonymous, unknown user and wrong password connect; a user publishes on a car's signal, state and connected topics, the bridge state, the prefix itself and $SYS (MQTT 5 at QoS 1 and 3.1.1 at QoS 0); a user with a last will on the bridge state",
		"bad credentials are refused at connect and read nothing; no client but the bridge changes vehicle data: subscribers never see the forged messages and the retained values stay the car's; the will is refused")
	userPW := "ha-pw-" + rand.Text()
	f := startFleet(t, "mqtt-access",
		withConfig("mqtt.embedded.allow_anonymous", "never"),
		withConfig("mqtt.embedded.users", []any{map[string]any{"name": "ha", "password": userPW}}))
	id := f.identities(1)[0]
	sendRecord(t, connectRaw(t, f, id, dialOptions{}), id.VIN, 50)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	for _, tc := range []struct {
		name, user, pw string
	}{
		{"anonymous", "", ""},
		{"unknown user", "mallory", userPW},
		{"wrong password", "ha", "not-" + userPW},
	} {
		table.attacks.Add(1)
		cp := &paho.Connect{ClientID: "hardening-" + strings.ReplaceAll(tc.name, " ", "-"), CleanStart: true, KeepAlive: 30}
		if tc.user != "" {
			cp.Username, cp.UsernameFlag, cp.Password, cp.PasswordFlag = tc.user, true, []byte(tc.pw), true
		}
		var got sync.Map
		c, ca, err := mqttClient(ctx, f.MQTT, cp, func(pr paho.PublishReceived) { got.Store(pr.Packet.Topic, true) })
		if err == nil {
			_, serr := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "#", QoS: 1}}})
			time.Sleep(500 * time.Millisecond)
			n := 0
			got.Range(func(any, any) bool { n++; return true })
			r.errorf(t, "%s: connected (subscribe: %v, %d topics read)", tc.name, serr, n)
			c.Disconnect(&paho.Disconnect{})
		} else if ca != nil && ca.ReasonCode < 0x80 {
			r.errorf(t, "%s: CONNACK reason %#x, want a refusal", tc.name, ca.ReasonCode)
		}
	}

	// A watcher with the right credentials; an attacker with them too.
	watcher := subscribe(t, f.MQTT, subOptions{Username: "ha", Password: userPW, Filter: "#"})
	watcher.settle(500*time.Millisecond, 5*time.Second)
	cp := &paho.Connect{ClientID: "hardening-forger", CleanStart: true, KeepAlive: 30, Username: "ha", UsernameFlag: true, Password: []byte(userPW), PasswordFlag: true}
	c, _, err := mqttClient(ctx, f.MQTT, cp, nil)
	if err != nil {
		r.fatalf(t, "the user cannot connect: %v", err)
	}
	forged := []string{"tesla/" + id.VIN + "/Soc", "tesla/" + id.VIN + "/state", "tesla/" + id.VIN + "/connected", "tesla/bridge/state", "tesla", "$SYS/hardening"}
	for _, topic := range forged {
		table.attacks.Add(1)
		resp, err := c.Publish(ctx, &paho.Publish{Topic: topic, Payload: []byte("999"), QoS: 1, Retain: true})
		if err == nil && resp != nil && resp.ReasonCode < 0x80 {
			r.errorf(t, "publish on %s: accepted (reason %#x)", topic, resp.ReasonCode)
		}
	}
	c.Disconnect(&paho.Disconnect{})
	// MQTT 3.1.1 at QoS 0: no acknowledgement to refuse with.
	raw, err := net.DialTimeout("tcp", f.MQTT, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	table.attacks.Add(1)
	login := mqttPacket(0x10, connectBody("MQTT", 4, 0x02|0x80|0x40, nil, []byte("hardening-forger-311"), []byte("ha"), []byte(userPW)))
	_, _ = raw.Write(append(login, mqttPacket(0x31, append(mqttString([]byte("tesla/"+id.VIN+"/Soc")), "998"...))...))
	time.Sleep(300 * time.Millisecond)
	raw.Close()
	if err := publishAs(ctx, f.MQTT, "ha", userPW, "hardening/after", "after"); err != nil {
		r.errorf(t, "publishing outside the vehicle prefix: %v", err)
	}
	if !eventually(10*time.Second, func() bool { p, _ := watcher.lastPayload("hardening/after"); return p == "after" }) {
		r.errorf(t, "the watcher never got the message published after the forged ones")
	}
	for _, topic := range forged {
		if p, ok := watcher.lastPayload(topic); ok && (p == "999" || p == "998") {
			r.errorf(t, "the forged message on %s reached a subscriber", topic)
		}
	}
	if p, _ := watcher.lastPayload("tesla/" + id.VIN + "/Soc"); p == "998" {
		r.errorf(t, "the MQTT 3.1.1 forged message reached a subscriber")
	}
	later := subscribe(t, f.MQTT, subOptions{Username: "ha", Password: userPW, Filter: "tesla/#"})
	later.settle(time.Second, 5*time.Second)
	if p, _ := later.lastPayload("tesla/" + id.VIN + "/Soc"); p != "50" {
		r.errorf(t, "retained Soc is %q, want the car's 50", p)
	}
	if p, _ := later.lastPayload("tesla/bridge/state"); p != "online" {
		r.errorf(t, "retained bridge state is %q, want online", p)
	}

	table.attacks.Add(1)
	will := &paho.Connect{ClientID: "hardening-will", CleanStart: true, KeepAlive: 30, Username: "ha", UsernameFlag: true, Password: []byte(userPW), PasswordFlag: true,
		WillMessage: &paho.WillMessage{Topic: "tesla/bridge/state", Payload: []byte("offline"), Retain: true, QoS: 1}}
	if c, ca, err := mqttClient(ctx, f.MQTT, will, nil); err == nil {
		c.Disconnect(&paho.Disconnect{})
		r.errorf(t, "a client with a last will on tesla/bridge/state was let in")
	} else if ca != nil && ca.ReasonCode < 0x80 {
		r.errorf(t, "will on tesla/bridge/state: CONNACK %#x", ca.ReasonCode)
	}
	r.figure("3 bad logins refused; %d forged publishes (MQTT 5 and 3.1.1) reached nobody; will on the bridge state refused", len(forged)+1)
}

// publishAs publishes a QoS 1 message as a user.
func publishAs(ctx context.Context, addr, user, pw, topic, payload string) error {
	cp := &paho.Connect{ClientID: "hardening-pub-" + newTxID()[:8], CleanStart: true, KeepAlive: 30, Username: user, UsernameFlag: true, Password: []byte(pw), PasswordFlag: true}
	c, _, err := mqttClient(ctx, addr, cp, nil)
	if err != nil {
		return err
	}
	defer c.Disconnect(&paho.Disconnect{})
	resp, err := c.Publish(ctx, &paho.Publish{Topic: topic, Payload: []byte(payload), QoS: 1})
	if err == nil && resp != nil && resp.ReasonCode >= 0x80 {
		err = fmt.Errorf("refused: %#x", resp.ReasonCode)
	}
	return err
}

// checkModes walks a data directory: directories must be 0700, files that
// hold secrets or vehicle data 0600, nothing may be writable by others.
// Certificates (public) may be 0644.
func checkModes(t *testing.T, r *row, dir string) (files int) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		mode := info.Mode().Perm()
		rel, _ := filepath.Rel(dir, path)
		switch {
		case d.IsDir():
			if mode != 0o700 {
				r.errorf(t, "directory %s has mode %#o, want 0700", rel, mode)
			}
		case isPublicCert(path):
			files++
			if mode&0o022 != 0 {
				r.errorf(t, "certificate %s has mode %#o: writable by others", rel, mode)
			}
		default:
			files++
			if mode != 0o600 {
				r.errorf(t, "file %s has mode %#o, want 0600", rel, mode)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// isPublicCert reports whether path is a certificate without a key.
func isPublicCert(path string) bool {
	if !strings.HasSuffix(path, ".pem") || strings.Contains(filepath.Base(path), "key") {
		return false
	}
	raw, err := os.ReadFile(path)
	return err == nil && strings.Contains(string(raw), "BEGIN CERTIFICATE") && !strings.Contains(string(raw), "PRIVATE KEY")
}

// TestSecretFileModes checks the modes of everything fleet2mqtt keeps in
// its data directory, with a generated setup password.
func TestSecretFileModes(t *testing.T) {
	r := trial(t, areaAccess,
		"fleet2mqtt starts with a generated setup password and its development PKI, a car streams (retained messages saved), fleet2mqtt stops; then the modes of everything in the data directory",
		"directories 0700; keys, the password hash, retained vehicle data 0600; certificates not writable by others; the generated password is printed exactly once, in its own line")
	f := startFleet(t, "modes", withConfig("setup.password", ""))
	id := f.identities(1)[0]
	sendRecord(t, connectRaw(t, f, id, dialOptions{}), id.VIN, 64)
	if !eventually(30*time.Second, func() bool { _, err := os.Stat(retainedFile(f)); return err == nil }) {
		r.errorf(t, "no retained file after 30 s")
	}
	f.registerGeneratedPassword()
	if code := f.stop(); code != 0 {
		r.errorf(t, "exit code %d", code)
	}
	n := checkModes(t, r, f.DataDir)
	printed := f.out.find(0, func(l string) bool { return strings.Contains(l, "shown only this once") })
	if len(printed) != 1 {
		r.errorf(t, "the generated password was printed %d times, want once", len(printed))
	}
	r.figure("%d files checked", n)
}

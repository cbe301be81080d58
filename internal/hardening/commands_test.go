//go:build hardening

package hardening

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/fleet2mqtt/fleet2mqtt/certs"
	"github.com/fleet2mqtt/fleet2mqtt/command"
	"github.com/fleet2mqtt/fleet2mqtt/command/fakefleet"
	"github.com/fleet2mqtt/fleet2mqtt/setup"
	"github.com/fleet2mqtt/fleet2mqtt/setup/fleetapi"
)

const commandCar = "5YJ3E1EA7KF000001"

// commandRig is fleet2mqtt with vehicle commands on, against a fake
// Tesla whose car holds the application key: the data directory as the
// setup page leaves it, the proxy API on a TLS listener of its own, and
// an MQTT user allowed to command.
type commandRig struct {
	f        *fleet
	fake     *fakefleet.Fleet
	proxy    string // the proxy API's address
	client   *http.Client
	tlsCfg   *tls.Config
	token    string // the owner's Tesla access token
	user, pw string

	mu        sync.Mutex
	forwarded []string // requests the fake Tesla received: "METHOD path"
}

func newCommandRig(t *testing.T, name string) *commandRig {
	t.Helper()
	rig := &commandRig{user: "alice", pw: "alice-pw-" + rand.Text()}
	dataDir := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(filepath.Join(dataDir, "setup"), 0o700); err != nil {
		t.Fatal(err)
	}
	key, _, err := fleetapi.LoadOrCreateKey(setup.KeyPath(dataDir))
	if err != nil {
		t.Fatal(err)
	}
	rig.fake, err = fakefleet.Start(context.Background(), fakefleet.Options{VINs: []string{commandCar}, Key: key,
		Dir: filepath.Join(dataDir, "setup"), Logf: func(format string, args ...any) {
			rig.mu.Lock()
			rig.forwarded = append(rig.forwarded, fmt.Sprintf(format, args...))
			rig.mu.Unlock()
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rig.fake.Close)
	base, err := rig.fake.Server.Endpoints().BaseURL(fleetapi.RegionNA)
	if err != nil {
		t.Fatal(err)
	}
	if rig.token, err = rig.fake.AccessToken(); err != nil {
		t.Fatal(err)
	}
	logs.secret("owner access token", rig.token)
	pki := t.TempDir()
	if err := certs.WriteDevDir(pki, nil, nil, false); err != nil {
		t.Fatal(err)
	}
	ca, err := certs.LoadDir(pki)
	if err != nil {
		t.Fatal(err)
	}
	rig.tlsCfg = &tls.Config{RootCAs: ca.ServerCA.Pool(), ServerName: "127.0.0.1"}
	rig.client = &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: rig.tlsCfg}}
	rig.f = newFleet(t, name, withDataDir(dataDir),
		withConfig("setup.client_id", rig.fake.Server.ClientID()),
		withConfig("commands.enabled", true),
		withConfig("commands.fleet_api_url", base),
		withConfig("commands.mqtt_users", []any{rig.user}),
		withConfig("commands.proxy", map[string]any{"listen": "127.0.0.1:0",
			"cert_file": filepath.Join(pki, certs.ServerFile), "key_file": filepath.Join(pki, certs.ServerKeyFile)}),
		withConfig("mqtt.embedded.users", []any{map[string]any{"name": rig.user, "password": rig.pw}}))
	rig.f.mustStart()
	lines := rig.f.out.find(0, func(l string) bool { return logMsg(l) == "proxy API listening" })
	if len(lines) == 0 {
		t.Fatal("no proxy API address in the log")
	}
	var l struct{ Address string }
	_ = json.Unmarshal([]byte(lines[len(lines)-1]), &l)
	rig.proxy = l.Address
	return rig
}

func (rig *commandRig) flashes() int { return rig.fake.Server.Car(commandCar).State().Flashes }

// sawPath reports whether the fake Tesla received a request whose line
// matches re.
func (rig *commandRig) sawPath(re *regexp.Regexp) []string {
	rig.mu.Lock()
	defer rig.mu.Unlock()
	var hits []string
	for _, l := range rig.forwarded {
		if re.MatchString(l) {
			hits = append(hits, l)
		}
	}
	return hits
}

// raw sends bytes on a new TLS connection to the proxy API and returns
// what comes back within the timeout (the connection then closed).
func (rig *commandRig) raw(t *testing.T, req string, timeout time.Duration) string {
	t.Helper()
	c, err := tls.Dial("tcp", rig.proxy, rig.tlsCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, req); err != nil {
		return "write: " + err.Error()
	}
	out, _ := io.ReadAll(c)
	return string(out)
}

func status(resp string) string {
	line, _, _ := strings.Cut(resp, "\r\n")
	return line
}

// TestProxyAPIHostile: hostile requests to the Tesla-proxy-compatible API
// (commands.proxy.listen).
func TestProxyAPIHostile(t *testing.T) {
	r := trial(t, areaHostile,
		"on the proxy API (commands.proxy.listen, TLS): a command with a 100 MB body (Content-Length) and 100 MB chunked; 100 bodies sent one byte a second, at once, on the command and on a forwarded path; bearer tokens missing, empty, of another scheme, 1 MB long, wrong; paths climbing out of /api/1/ (../, %2e%2e, %2f, backslashes, //) towards /etc/passwd and the data directory; request smuggling (Content-Length with Transfer-Encoding, two Content-Lengths, Transfer-Encoding: chunked, identity, a second request hidden in a body)",
		"a body over 64 KB is refused (400) without being read whole, memory grows by less than 32 MB; a slow body is cut off by the server within 30 s of its start (and the connection closed), and a real command is served meanwhile; a request without a usable bearer token gets 401 and reaches neither the car nor Tesla; a wrong token reaches Tesla, which refuses it, and never the car; no path reaches a file or leaves /api/1/ at Tesla; each smuggling attempt is refused, or answered with the connection closed: its hidden request gets no answer and runs nowhere; the car flashes only for the real commands")
	rig := newCommandRig(t, "proxy-hostile")
	f := rig.f
	cmdPath := "/api/1/vehicles/" + commandCar + "/command/flash_lights"
	auth := "Authorization: Bearer " + rig.token + "\r\n"
	real := func() (int, string) {
		req, _ := http.NewRequest("POST", "https://"+rig.proxy+cmdPath, strings.NewReader("{}"))
		req.Header.Set("Authorization", "Bearer "+rig.token)
		resp, err := rig.client.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := real(); code != 200 {
		r.fatalf(t, "a real command: %d %s", code, body)
	}
	wantFlashes := 1
	rig.mu.Lock()
	rig.forwarded = nil // the fake's own login and the real command
	rig.mu.Unlock()
	rss0, _ := f.memory()

	// Huge bodies.
	for _, chunked := range []bool{false, true} {
		table.attacks.Add(1)
		c, err := tls.Dial("tcp", rig.proxy, rig.tlsCfg)
		if err != nil {
			t.Fatal(err)
		}
		head := "POST " + cmdPath + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + auth
		if chunked {
			head += "Transfer-Encoding: chunked\r\n\r\n"
		} else {
			head += "Content-Length: 100000000\r\n\r\n"
		}
		_, _ = io.WriteString(c, head)
		got := make(chan string, 1)
		go func() {
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				got <- err.Error()
				return
			}
			resp.Body.Close()
			got <- resp.Status
		}()
		chunk := bytes.Repeat([]byte("a"), 64<<10)
		sent := 0
		_ = c.SetWriteDeadline(time.Now().Add(20 * time.Second))
		for sent < 100_000_000 {
			var err error
			if chunked {
				_, err = fmt.Fprintf(c, "%x\r\n%s\r\n", len(chunk), chunk)
			} else {
				_, err = c.Write(chunk)
			}
			if err != nil {
				break
			}
			sent += len(chunk)
		}
		var st string
		select {
		case st = <-got:
		case <-time.After(20 * time.Second):
			st = "no answer"
		}
		c.Close()
		if !strings.HasPrefix(st, "400") {
			r.errorf(t, "a 100 MB body (chunked %v): %s, want 400", chunked, st)
		}
		r.figure("100 MB body (chunked %v): %s after %d MB were taken", chunked, st, sent>>20)
	}
	_, peak := f.memory()
	if peak-rss0 > 32 {
		r.errorf(t, "RSS peak %.0f MB after the huge bodies, %.0f before", peak, rss0)
	}

	// Slow bodies, on the command and on a forwarded path, while a real
	// command is served.
	const slow = 100
	var wg sync.WaitGroup
	var cut atomic.Int64
	var longest atomic.Int64
	for i := range slow {
		wg.Go(func() {
			table.attacks.Add(1)
			c, err := tls.Dial("tcp", rig.proxy, rig.tlsCfg)
			if err != nil {
				return
			}
			defer c.Close()
			path := cmdPath
			if i%2 == 1 {
				path = "/api/1/vehicles/" + commandCar + "/wake_up"
			}
			_, _ = io.WriteString(c, "POST "+path+" HTTP/1.1\r\nHost: 127.0.0.1\r\n"+auth+"Content-Length: 1000\r\n\r\n")
			held, closed := slowWriter(c, bytes.Repeat([]byte("{"), 60), time.Second)
			if closed {
				cut.Add(1)
			}
			for {
				old := longest.Load()
				if int64(held) <= old || longest.CompareAndSwap(old, int64(held)) {
					break
				}
			}
		})
	}
	time.Sleep(2 * time.Second)
	start := time.Now()
	code, body := real()
	servedIn := time.Since(start)
	if code != 200 {
		r.errorf(t, "a real command during the slow bodies: %d %s", code, body)
	} else {
		wantFlashes++
	}
	wg.Wait()
	if cut.Load() != slow || time.Duration(longest.Load()) > 30*time.Second {
		r.errorf(t, "%d of %d slow bodies cut off by the server (the longest held %v)", cut.Load(), slow, time.Duration(longest.Load()).Round(time.Second))
	}
	r.figure("%d slow bodies: %d cut off by the server, the longest after %v; a real command served in %v meanwhile", slow, cut.Load(), time.Duration(longest.Load()).Round(100*time.Millisecond), servedIn.Round(time.Millisecond))

	// Bearer tokens.
	tokens := map[string]string{
		"missing":        "",
		"empty":          "Authorization: Bearer \r\n",
		"another scheme": "Authorization: Basic " + rig.token + "\r\n",
		"1 MB":           "Authorization: Bearer " + strings.Repeat("x", 1<<20) + "\r\n",
		"wrong":          "Authorization: Bearer not-a-token-" + rand.Text() + "\r\n",
	}
	for what, h := range tokens {
		table.attacks.Add(1)
		resp := rig.raw(t, "POST "+cmdPath+" HTTP/1.1\r\nHost: 127.0.0.1\r\n"+h+"Content-Length: 2\r\nConnection: close\r\n\r\n{}", 20*time.Second)
		st := status(resp)
		// 431 when the header is over the server's limit, 401 when it
		// fits (Go allows 1 MB); a wrong token is Tesla's to refuse.
		if !strings.Contains(st, " 401 ") && !(what == "1 MB" && strings.Contains(st, " 431 ")) {
			r.errorf(t, "bearer token %s: %q, want 401", what, st)
		}
		r.figure("bearer token %s: %s", what, strings.TrimPrefix(st, "HTTP/1.1 "))
	}
	if n := rig.flashes(); n != wantFlashes {
		r.errorf(t, "the car flashed %d times, want %d (the real commands only)", n, wantFlashes)
	}

	// Paths.
	paths := []string{
		"/api/1/../../etc/passwd", "/api/1/%2e%2e/%2e%2e/etc/passwd", "/api/1/..%2f..%2fetc%2fpasswd",
		"/api/1/vehicles/" + commandCar + "/command/..%2f..%2f..%2f..%2fetc%2fpasswd",
		"/api/1/vehicles/..%2F..%2F..%2Fsetup%2Fowner-token.json", "/api/1/..\\..\\etc\\passwd",
		"//etc/passwd", "/api/1//../../setup/private-key.pem", "/api/1/%252e%252e/%252e%252e/etc/passwd",
	}
	for _, p := range paths {
		for _, method := range []string{"GET", "POST"} {
			table.attacks.Add(1)
			resp := rig.raw(t, method+" "+p+" HTTP/1.1\r\nHost: 127.0.0.1\r\n"+auth+"Content-Length: 2\r\nConnection: close\r\n\r\n{}", 10*time.Second)
			if strings.Contains(resp, "root:") || strings.Contains(resp, "PRIVATE KEY") || strings.Contains(resp, "refresh_token") {
				r.errorf(t, "%s %s answered with a file: %q", method, p, shorten(resp, 200))
			}
		}
	}
	if bad := rig.sawPath(regexp.MustCompile(`^fake tesla na: (GET|POST) (/[^a]|/a[^p]|/ap[^i]|/api[^/]|/api/[^1]|/api/1[^/])`)); len(bad) > 0 {
		r.errorf(t, "requests reached Tesla outside /api/1/: %v", bad)
	}
	// A dot segment or a backslash that reached Tesla climbs there; a
	// double-encoded one arrives as the literal text %2e%2e, a name.
	if bad := rig.sawPath(regexp.MustCompile(`(/\.\.?(/| )|\\)`)); len(bad) > 0 {
		r.errorf(t, "climbing paths reached Tesla: %v", bad)
	}

	// Smuggling.
	hidden := "POST " + cmdPath + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + auth + "Content-Length: 2\r\n\r\n{}"
	smuggle := map[string]string{
		"CL and TE": "POST /api/1/vehicles HTTP/1.1\r\nHost: 127.0.0.1\r\n" + auth + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + hidden,
		"TE and CL": "POST /api/1/vehicles HTTP/1.1\r\nHost: 127.0.0.1\r\n" + auth + "Transfer-Encoding: chunked\r\nContent-Length: " + fmt.Sprint(len(hidden)+5) + "\r\n\r\n0\r\n\r\n" + hidden,
		"two CL":    "POST /api/1/vehicles HTTP/1.1\r\nHost: 127.0.0.1\r\n" + auth + "Content-Length: 0\r\nContent-Length: " + fmt.Sprint(len(hidden)) + "\r\n\r\n" + hidden,
		"TE list":   "POST /api/1/vehicles HTTP/1.1\r\nHost: 127.0.0.1\r\n" + auth + "Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n" + hidden,
		"TE space":  "POST /api/1/vehicles HTTP/1.1\r\nHost: 127.0.0.1\r\n" + auth + "Transfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n" + hidden,
	}
	before := rig.flashes()
	for what, req := range smuggle {
		table.attacks.Add(1)
		resp := rig.raw(t, req, 5*time.Second)
		// Refused, or answered and the connection closed: never a
		// second answer, for the hidden request.
		if n := strings.Count(resp, "HTTP/1.1 "); n != 1 {
			r.errorf(t, "smuggling (%s): %d answers on the connection, want 1: %q", what, n, shorten(resp, 300))
		}
		r.figure("smuggling (%s): %s", what, strings.TrimPrefix(status(resp), "HTTP/1.1 "))
	}
	time.Sleep(500 * time.Millisecond)
	if n := rig.flashes(); n != before {
		r.errorf(t, "a smuggled command ran: the car flashed %d more times", n-before)
	}
	if code, body := real(); code != 200 {
		r.errorf(t, "a real command afterwards: %d %s", code, body)
	}
	r.figure("5 kinds of bearer token, %d paths (GET and POST), %d smuggling attempts: none reached the car, none left /api/1/ at Tesla", len(paths), len(smuggle))
}

// TestMQTTCommandAbuse: an MQTT user allowed to command floods the
// command topics and sends arguments that are not what a command takes.
func TestMQTTCommandAbuse(t *testing.T) {
	const flood = 200
	r := trial(t, areaHostile,
		fmt.Sprintf("a user in commands.mqtt_users publishes flash_lights %d times as fast as it can on tesla/<VIN>/command/flash_lights; then set_charge_limit with malformed JSON, the wrong type, out of range, unknown arguments; then set_charge_limit {\"percent\":80} padded with spaces to 1 MB; an anonymous client publishes a command", flood),
		"the per-car rate limit holds: the car flashes at most the default burst (command.DefaultRateLimit.Burst, 15), every other command gets a result saying it was rate limited (or, if it came while every command slot was taken before the budget was spent, that too many commands are in flight); each bad argument gets a result with ok false and the reason; the 1 MB payload is refused (no command runs) with a result or the broker's refusal; the anonymous command is refused with 0x87; fleet2mqtt's memory grows by less than 64 MB")
	rig := newCommandRig(t, "mqtt-commands")
	f := rig.f
	rss0, _ := f.memory()
	results := make(chan paho.PublishReceived, 4*flood)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := mqttClient(ctx, f.MQTT, &paho.Connect{ClientID: "hardening-cmd-" + newTxID()[:8], CleanStart: true, KeepAlive: 30,
		Username: rig.user, UsernameFlag: true, Password: []byte(rig.pw), PasswordFlag: true},
		func(pr paho.PublishReceived) { results <- pr })
	if err != nil {
		r.fatalf(t, "%v", err)
	}
	defer c.Disconnect(&paho.Disconnect{})
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "tesla/" + commandCar + "/command/+/result", QoS: 1}}}); err != nil {
		r.fatalf(t, "%v", err)
	}
	topic := "tesla/" + commandCar + "/command/"
	for range flood {
		table.attacks.Add(1)
		if rc, err := publishQoS1(c, topic+"flash_lights", nil, false); err != nil || rc != 0 {
			r.fatalf(t, "flash_lights: %#x %v", rc, err)
		}
	}
	type result struct {
		OK     bool   `json:"ok"`
		Reason string `json:"reason"`
	}
	collect := func(n int, timeout time.Duration) []result {
		var out []result
		deadline := time.After(timeout)
		for len(out) < n {
			select {
			case pr := <-results:
				var res result
				if err := json.Unmarshal(pr.Packet.Payload, &res); err != nil {
					r.errorf(t, "result %q: %v", pr.Packet.Payload, err)
				}
				out = append(out, res)
			case <-deadline:
				return out
			}
		}
		return out
	}
	got := collect(flood, 60*time.Second)
	ok, limited, busy := 0, 0, 0
	for _, res := range got {
		switch {
		case res.OK:
			ok++
		case strings.Contains(strings.ToLower(res.Reason), "rate limit"):
			limited++
		case strings.Contains(res.Reason, "too many commands in flight"):
			busy++
		default:
			r.errorf(t, "a flash_lights result neither ran nor was refused by a limit: %q", res.Reason)
		}
	}
	burst := command.DefaultRateLimit.Burst
	if len(got) != flood || ok > burst || ok+limited+busy != flood {
		r.errorf(t, "%d results for %d commands: %d ran, %d rate limited, %d refused with every slot taken; want at most %d run and the rest refused", len(got), flood, ok, limited, busy, burst)
	}
	if n := rig.flashes(); n > burst {
		r.errorf(t, "the car flashed %d times", n)
	}
	var limitReason string
	for _, res := range got {
		if strings.Contains(strings.ToLower(res.Reason), "rate limit") {
			limitReason = res.Reason
		}
	}
	r.figure("%d commands: %d ran, %d rate limited (%q), %d refused with every slot taken", flood, ok, limited, shorten(limitReason, 120), busy)

	bad := map[string]string{
		"malformed JSON": `{"percent":`,
		"wrong type":     `{"percent":"eighty"}`,
		"out of range":   `{"percent":1000}`,
		"unknown":        `{"percent":80,"evil":true}`,
		"not JSON":       "\x00\xff\xfe",
	}
	for what, payload := range bad {
		table.attacks.Add(1)
		if rc, err := publishQoS1(c, topic+"set_charge_limit", []byte(payload), false); err != nil || rc != 0 {
			r.errorf(t, "%s: %#x %v", what, rc, err)
			continue
		}
		res := collect(1, 15*time.Second)
		if len(res) != 1 || res[0].OK || res[0].Reason == "" {
			r.errorf(t, "%s: result %+v, want ok false with a reason", what, res)
			continue
		}
		r.figure("%s: %q", what, shorten(res[0].Reason, 100))
	}
	table.attacks.Add(1)
	// Valid arguments padded to 1 MB: only the size is wrong.
	big := append([]byte(`{"percent":80}`), bytes.Repeat([]byte(" "), 1_000_000)...)
	limitBefore := rig.fake.Server.Car(commandCar).State().ChargeLimit
	rc, err := publishQoS1(c, topic+"set_charge_limit", big, false)
	res := collect(1, 15*time.Second)
	switch {
	case err != nil || rc >= 0x80:
		r.figure("1 MB payload: refused by the broker (%#x %v)", rc, err)
	case len(res) == 1 && !res[0].OK && strings.Contains(res[0].Reason, "bytes"):
		r.figure("1 MB payload: %q", shorten(res[0].Reason, 120))
	default:
		r.errorf(t, "1 MB payload: PUBACK %#x, result %+v, want it refused for its size", rc, res)
	}
	if got := rig.fake.Server.Car(commandCar).State().ChargeLimit; got != limitBefore {
		r.errorf(t, "the 1 MB command ran: charge limit %d → %d", limitBefore, got)
	}
	anon := anonymousClient(t, f.MQTT)
	if rc, err := publishQoS1(anon, topic+"flash_lights", nil, false); err != nil || rc != 0x87 {
		r.errorf(t, "anonymous command: %#x %v, want 0x87", rc, err)
	}
	_, peak := f.memory()
	if peak-rss0 > 64 {
		r.errorf(t, "RSS %.0f → peak %.0f MB", rss0, peak)
	}
	r.figure("RSS %.0f → peak %.0f MB", rss0, peak)
}

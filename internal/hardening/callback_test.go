//go:build hardening

package hardening

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleet2mqtt/fleet2mqtt/setup"
)

// TestCallbackFlood: strangers hammer the login callback on the public
// hostname while the owner logs in.
func TestCallbackFlood(t *testing.T) {
	const requests, firstHost, lastHost = 1000, 2, 250
	r := trial(t, areaHostile,
		fmt.Sprintf("the setup page's login callback on the public hostname (the vehicle listener's /oauth/callback, setup page in-process against the fake Tesla): while the owner's login is under way, %d callbacks with made-up codes and states from 127.0.0.%d–.%d (%d addresses, 20 at a time); before it, one address sends 20; then the owner's browser arrives from 127.0.0.1 with Tesla's real answer", requests, firstHost, lastHost, lastHost-firstHost+1),
		"no address gets more than its burst (10) of answers other than 429, and all of them together no more than the global ceiling (60, then 1 a second); none of them ends or disturbs the owner's login, which completes (200, logged in); fleet2mqtt's setup page then knows the owner")
	ts := newTesla(t)
	rig := newWizardRig(t, ts, t.TempDir(), "wizard-pw-"+rand.Text())
	b := rig.b
	if code := b.login(rig.password); code != http.StatusSeeOther {
		r.fatalf(t, "login: %d", code)
	}
	b.do("GET", "/app", nil, nil)
	code, loc, _ := b.do("POST", "/app", url.Values{"csrf": {b.csrf}, "host": {wizardHost},
		"client_id": {ts.fake.ClientID()}, "client_secret": {ts.fake.ClientSecret()}}, nil)
	rig.expect("application", code, loc, http.StatusSeeOther, "key")
	code, loc, _ = b.do("POST", "/key", url.Values{"csrf": {b.csrf}, "action": {"create"}}, nil)
	rig.expect("create key", code, loc, http.StatusSeeOther, "key")
	code, loc, _ = b.do("POST", "/key", url.Values{"csrf": {b.csrf}, "action": {"check"}}, nil)
	rig.expect("check key", code, loc, http.StatusSeeOther, "register")
	code, loc, _ = b.do("POST", "/register", url.Values{"csrf": {b.csrf}, "region": {"na", "eu"}}, nil)
	rig.expect("register", code, loc, http.StatusSeeOther, "owner")
	code, loc, _ = b.do("POST", "/owner", url.Values{"csrf": {b.csrf}}, nil)
	if code != http.StatusSeeOther {
		r.fatalf(t, "owner login: %d", code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cb, err := ts.fake.Login(ctx, loc) // the owner logs in at Tesla; the browser is on its way back
	if err != nil {
		r.fatalf(t, "%v", err)
	}

	base := ts.vehicle.URL + setup.CallbackPath
	clientFrom := func(ip string) *http.Client {
		tr := ts.vehicle.Client().Transport.(*http.Transport).Clone()
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
		tr.DialContext = d.DialContext
		return &http.Client{Transport: tr, Timeout: 10 * time.Second}
	}
	// One address alone first: its own bucket.
	one := clientFrom("127.0.0.251")
	alone := 0
	for range 20 {
		table.attacks.Add(1)
		resp, err := one.Get(base + "?code=x&state=" + rand.Text())
		if err != nil {
			r.fatalf(t, "%v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusTooManyRequests {
			alone++
		}
	}
	if alone > 10 {
		r.errorf(t, "one address alone got %d of 20 answers other than 429 (burst 10)", alone)
	}
	r.figure("one address alone: %d of 20 answered, the rest 429", alone)
	var (
		mu       sync.Mutex
		passed   = map[string]int{} // answers other than 429, per address
		statuses = map[int]int{}
		failed   int
	)
	start := time.Now()
	sem := make(chan struct{}, 20)
	var wg sync.WaitGroup
	clients := map[string]*http.Client{}
	for i := range requests {
		ip := fmt.Sprintf("127.0.0.%d", firstHost+i%(lastHost-firstHost+1))
		c := clients[ip]
		if c == nil {
			c = clientFrom(ip)
			clients[ip] = c
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			table.attacks.Add(1)
			q := url.Values{"code": {"made-up-" + rand.Text()}, "state": {rand.Text()}}
			if i%3 == 0 {
				q.Set("error", "access_denied")
				q.Set("error_description", "<b>phishing text</b>")
			}
			resp, err := c.Get(base + "?" + q.Encode())
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed++
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			statuses[resp.StatusCode]++
			if resp.StatusCode != http.StatusTooManyRequests {
				passed[ip]++
			}
			if strings.Contains(string(body), "phishing") {
				r.errorf(t, "a stranger's error_description shown on the callback page")
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	total, most := 0, 0
	for _, n := range passed {
		total += n
		most = max(most, n)
	}
	if most > 10 {
		r.errorf(t, "one address got %d answers other than 429 (burst 10)", most)
	}
	if ceiling := 60 - alone + int(took.Seconds()) + 1; total > ceiling {
		r.errorf(t, "%d answers other than 429 in %v, over the global ceiling (%d)", total, took.Round(time.Millisecond), ceiling)
	}
	if failed > 0 {
		r.errorf(t, "%d requests failed without an answer", failed)
	}

	// The owner's browser comes back with Tesla's answer.
	owner := clientFrom("127.0.0.1")
	resp, err := owner.Get(ts.vehicle.URL + cb.Path + "?" + cb.RawQuery)
	if err != nil {
		r.fatalf(t, "owner's callback: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "Logged in") {
		r.errorf(t, "the owner's callback after the flood: %d %s", resp.StatusCode, shorten(string(body), 300))
	}
	_, _, page := b.do("GET", "/vehicles", nil, nil)
	if !strings.Contains(page, wizardVIN) {
		r.errorf(t, "the setup page does not list the owner's car after the login")
	}
	r.figure("%d callbacks from %d addresses in %v: %v by status; at most %d answered per address, %d in all; the owner's login completed afterwards (%d)",
		requests, len(clients), took.Round(time.Millisecond), statuses, most, total, resp.StatusCode)
}

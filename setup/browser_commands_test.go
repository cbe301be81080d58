package setup

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/fleet2mqtt/fleet2mqtt/command"
)

// TestBrowserCommands: the Commands section in a real browser: the paired
// car listed, the flash test button making the fake car flash through the
// command engine, and the month's usage following.
func TestBrowserCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test")
	}
	cmds := newTestCommands(true)
	h := commandsHarness(t, cmds, harnessOptions{})
	h.throughPairing() // the steps before, as in the other tests
	h.doFields(nil)
	ctx := newBrowser(t)
	b := &browserRun{t: t, ctx: ctx, h: h, base: h.srv.URL + "/"}

	b.do("open the page", chromedp.Navigate(b.base+"commands"), chromedp.WaitVisible(chromedp.CSS("#password")))
	b.do("log in",
		chromedp.SendKeys(chromedp.CSS("#password"), testPassword),
		chromedp.Click(chromedp.CSS("main form button")),
		chromedp.WaitNotPresent(chromedp.CSS("#password")))
	b.do("open the commands", chromedp.Navigate(b.base+"commands"), chromedp.WaitVisible(chromedp.CSS("#flash-"+testVIN)))
	b.waitText("#cmd-key-"+testVIN, "Key paired")
	b.waitText("#cat-access", "off")
	b.waitText("#usage-total", "0 commands and 0 wake-ups")
	b.waitText("#usage-streaming", "3 signals at most every 1 min")
	b.screenshot("commands")

	b.do("flash the lights", chromedp.Click(chromedp.CSS("#flash-"+testVIN)), chromedp.WaitVisible(chromedp.CSS(".flash")))
	b.waitText(".flash", "Red Rocket flashed its lights")
	if n := h.flashes(testVIN); n != 1 {
		t.Fatalf("the fake car flashed %d times, want 1", n)
	}
	u := cmds.Usage(command.Month(time.Now()))[testVIN]
	if u.Commands < 1 {
		t.Fatalf("no command counted: %+v", u)
	}
	b.waitText("#cmd-usage-"+testVIN, fmt.Sprintf("Red Rocket\t%d\t0\t$%.2f", u.Commands, commandCost(u)))
	b.waitText("#usage-total", strconv.Itoa(u.Commands)+" commands and 0 wake-ups")
	b.screenshot("commands-flashed")
}

package simulate

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// clockTicksPerSecond is Linux's USER_HZ, the unit of the CPU times in
// /proc/<pid>/stat: 100 on every architecture Go supports.
const clockTicksPerSecond = 100

// procSample is what /proc tells about a process at one moment.
type procSample struct {
	cpuTicks int64 // user + system CPU time, in clock ticks
	rssKB    int64 // resident set size now (VmRSS)
	hwmKB    int64 // peak resident set size (VmHWM)
}

var errProcFormat = errors.New("unexpected /proc format")

// readProc samples process pid.
func readProc(pid int) (procSample, error) {
	var s procSample
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return s, fmt.Errorf("read server cpu time: %w", err)
	}
	if s.cpuTicks, err = parseStatCPU(stat); err != nil {
		return s, fmt.Errorf("pid %d: %w", pid, err)
	}
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return s, fmt.Errorf("read server memory: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		switch name {
		case "VmRSS":
			s.rssKB = parseKB(value)
		case "VmHWM":
			s.hwmKB = parseKB(value)
		}
	}
	return s, nil
}

// parseStatCPU returns utime + stime from the contents of /proc/<pid>/stat.
// The command name (field 2) is in parentheses and may hold spaces and
// parentheses itself, so fields are counted from the last ')'.
func parseStatCPU(stat []byte) (int64, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errProcFormat
	}
	fields := strings.Fields(string(stat[i+1:]))
	// fields[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(fields) < 13 {
		return 0, errProcFormat
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errProcFormat
	}
	return utime + stime, nil
}

// parseKB reads a /proc/<pid>/status size such as "   1234 kB".
func parseKB(s string) int64 {
	n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(s), " kB"), 10, 64)
	return n
}

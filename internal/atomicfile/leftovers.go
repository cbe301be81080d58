package atomicfile

import (
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// leftoverPatterns are the names of the temporary files fleet2mqtt's
// atomic writers make next to the file they replace, and that a crash (or
// SIGKILL) between create and rename leaves behind. Only these are removed
// at start; each matches one writer's os.CreateTemp pattern, and
// TestLeftoverPatternsCoverWriters keeps the list in step with the source:
//
//	setup/fleetapi WriteFileAtomic   "."+base+".tmp-*"       .token.json.tmp-123456
//	certs (writeFile)                "."+base+".*.tmp"       .vehicle.key.123456.tmp
//	bridge/announce (state)          "."+base+".*"           .homeassistant.json.123456
//	bridge/embedded (store)          retainedFile+".*.tmp"   mqtt-retained.bin.123456.tmp (the store removes its own)
var leftoverPatterns = []*regexp.Regexp{
	regexp.MustCompile(`^\.[^/]+\.tmp-[0-9]+$`),
	regexp.MustCompile(`^\.[^/]+\.[0-9]+\.tmp$`),
	regexp.MustCompile(`^\.homeassistant\.json\.[0-9]+$`),
	regexp.MustCompile(`^mqtt-retained(-clients)?\.bin\.[0-9]+\.tmp$`),
}

// leftoverDirPattern names the temporary directory in which the
// development PKI is made before it is renamed into place (certs:
// os.MkdirTemp(data dir, ".dev-pki-")); one is removed whole, and only
// directly under the data directory.
var leftoverDirPattern = regexp.MustCompile(`^\.dev-pki-[0-9]+$`)

// leftoverDepth is how deep under the data directory leftovers are looked
// for: the writers write into it and its direct subdirectories (mqtt/,
// setup/, certs/).
const leftoverDepth = 3

// isLeftover reports whether name is a temporary file of one of
// fleet2mqtt's atomic writers.
func isLeftover(name string) bool {
	for _, p := range leftoverPatterns {
		if p.MatchString(name) {
			return true
		}
	}
	return false
}

// RemoveLeftovers removes, before anything writes, the temporary files
// that interrupted writes left in the data directory, so that a service
// that keeps crashing does not slowly fill the disk. Other files, and
// anything that is not a regular file, are left alone; it logs what it
// removed and what it could not.
func RemoveLeftovers(dataDir string, log *slog.Logger) {
	root := filepath.Clean(dataDir)
	_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // unreadable: the part that needs it says so
		}
		if d.IsDir() && filepath.Dir(path) == root && leftoverDirPattern.MatchString(d.Name()) {
			if err := os.RemoveAll(path); err != nil {
				log.Warn("could not remove the temporary directory of an interrupted write", "dir", path, "error", err)
			} else {
				log.Info("removed the temporary directory of an interrupted write", "dir", path)
			}
			return filepath.SkipDir
		}
		if d.IsDir() {
			if rel, _ := filepath.Rel(root, path); rel != "." && strings.Count(rel, string(filepath.Separator))+1 >= leftoverDepth {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || !isLeftover(d.Name()) {
			return nil
		}
		if err := os.Remove(path); err != nil {
			log.Warn("could not remove the temporary file of an interrupted write", "file", path, "error", err)
			return nil
		}
		log.Info("removed the temporary file of an interrupted write", "file", path)
		return nil
	})
}

//go:build !unix

package testenv

import "os"

// Without Unix signals Stop kills and Pause and Resume do nothing.
var sigTerm, sigStop, sigCont os.Signal = os.Kill, nil, nil

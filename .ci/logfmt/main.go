// Reads the agent's logfmt lines with go-logfmt, the decoder Loki's
// `| logfmt` descends from, and prints each line's key/value pairs in order
// as one JSON array per line ([["time","..."],["level","INFO"],...]), for
// .ci/check-logs.sh to judge. A line go-logfmt rejects, or that holds more
// or less than one record, is an error (exit 1) naming the line.
//
// Built in GOPATH mode against Debian's golang-github-go-logfmt-logfmt-dev:
//   GO111MODULE=off GOPATH=/usr/share/gocode go run .ci/logfmt/main.go < log
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"

	"github.com/go-logfmt/logfmt"
)

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	n := 0
	for in.Scan() {
		n++
		line := in.Bytes()
		d := logfmt.NewDecoder(bytes.NewReader(line))
		records := 0
		var pairs [][2]string
		for d.ScanRecord() {
			records++
			for d.ScanKeyval() {
				pairs = append(pairs, [2]string{string(d.Key()), string(d.Value())})
			}
		}
		if err := d.Err(); err != nil {
			fmt.Fprintf(os.Stderr, "line %d: go-logfmt: %v\n  %s\n", n, err, line)
			os.Exit(1)
		}
		if records != 1 {
			fmt.Fprintf(os.Stderr, "line %d: %d records, want 1\n  %s\n", n, records, line)
			os.Exit(1)
		}
		b, _ := json.Marshal(pairs)
		out.Write(b)
		out.WriteByte('\n')
	}
	if err := in.Err(); err != nil {
		fmt.Fprintf(os.Stderr, "reading: %v\n", err)
		os.Exit(1)
	}
}

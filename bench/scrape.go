package bench

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// scrapes is how many times each daemon's /metrics is read in a round.
const scrapes = 10

// scrapeCost is what reading /metrics cost in one round.
type scrapeCost struct {
	cpuMs  float64 // the daemon's CPU time per scrape
	wire   int     // bytes on the wire (gzip, as Prometheus asks for)
	series int     // samples in the text
}

// timeScrapes reads GET /metrics on the control socket as Prometheus does
// (gzip asked for, the whole body read), scrapes times one after another,
// adding each one's time to lat, and returns the daemon's CPU time per
// scrape with the size of the last one.
func (s *Suite) timeScrapes(ctx context.Context, d *daemon, lat *Sample) (scrapeCost, error) {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var nd net.Dialer
		return nd.DialContext(ctx, "unix", d.socket)
	}}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: time.Minute}
	var cost scrapeCost
	var body []byte
	a, err := readStat(d.pid())
	if err != nil {
		return cost, err
	}
	for i := 0; i < scrapes; i++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://vmstated/metrics", nil)
		if err != nil {
			return cost, err
		}
		// Set by hand, the transport leaves the body compressed: the
		// daemon's gzip work and the wire size are what is measured.
		req.Header.Set("Accept-Encoding", "gzip")
		t0 := time.Now()
		resp, err := hc.Do(req)
		if err != nil {
			return cost, fmt.Errorf("GET /metrics: %w", err)
		}
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		*lat = append(*lat, time.Since(t0))
		if err != nil {
			return cost, fmt.Errorf("GET /metrics: reading the body: %w", err)
		}
		if resp.StatusCode != http.StatusOK {
			return cost, fmt.Errorf("GET /metrics: %s: %.200s", resp.Status, body)
		}
		if resp.Header.Get("Content-Encoding") != "gzip" {
			return cost, fmt.Errorf("GET /metrics: answered with Content-Encoding %q, not gzip", resp.Header.Get("Content-Encoding"))
		}
	}
	b, err := readStat(d.pid())
	if err != nil {
		return cost, err
	}
	cost.cpuMs = 1000 * (b.cpuSeconds() - a.cpuSeconds()) / scrapes
	cost.wire = len(body)
	cost.series, err = countSamples(body)
	return cost, err
}

// countSamples counts the lines of a gzipped text exposition that are
// samples (neither comments nor blank).
func countSamples(gz []byte) (int, error) {
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return 0, fmt.Errorf("GET /metrics: the body is not gzip: %w", err)
	}
	sc := bufio.NewScanner(zr)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		if l := sc.Bytes(); len(l) > 0 && l[0] != '#' {
			n++
		}
	}
	return n, sc.Err()
}

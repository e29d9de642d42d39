// mcs-curl: the subset of curl that the dataplane mesh's example images need
// (`curl [-s] [-S] [-f] [-4|-6] [-m SECONDS] [-o FILE] [-w '%{http_code}'] URL`), so that
// the Cilium tutorial's `kubectl exec deployment/x-wing -- curl rebel-base` works with
// an image built on the machine. Exit codes follow curl's: 6 could not resolve, 7 could
// not connect, 28 timeout, 22 HTTP error with -f.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	var (
		url, out, write, network = "", "", "", "tcp"
		fail, silent, showErr    = false, false, false
		timeout                  = 0 * time.Second
	)
	for i := 0; i < len(args); i++ {
		a := args[i]
		next := func() string {
			if i+1 < len(args) {
				i++
				return args[i]
			}
			fmt.Fprintf(os.Stderr, "curl: option %s needs an argument\n", a)
			os.Exit(2)
			return ""
		}
		switch a {
		case "-s", "--silent":
			silent = true
		case "-S", "--show-error":
			showErr = true
		case "-sS", "-Ss":
			silent, showErr = true, true
		case "-f", "--fail":
			fail = true
		case "-4", "--ipv4":
			network = "tcp4"
		case "-6", "--ipv6":
			network = "tcp6"
		case "-m", "--max-time", "--connect-timeout":
			secs, err := strconv.ParseFloat(next(), 64)
			if err != nil {
				fmt.Fprintf(os.Stderr, "curl: bad time for %s\n", a)
				return 2
			}
			timeout = time.Duration(secs * float64(time.Second))
		case "-o", "--output":
			out = next()
		case "-w", "--write-out":
			write = next()
		case "-L", "--location", "-k", "--insecure", "-v", "--verbose", "-i":
		default:
			if strings.HasPrefix(a, "-") {
				fmt.Fprintf(os.Stderr, "curl: option %s: not supported by mcs-curl\n", a)
				return 2
			}
			url = a
		}
	}
	if url == "" {
		fmt.Fprintln(os.Stderr, "curl: no URL specified")
		return 2
	}
	if !strings.Contains(url, "://") {
		url = "http://" + url
	}
	dialer := &net.Dialer{}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, addr)
		},
		DisableKeepAlives: true,
	}
	client := &http.Client{Transport: tr, Timeout: timeout}
	complain := func(code int, err error) int {
		if !silent || showErr {
			fmt.Fprintf(os.Stderr, "curl: (%d) %v\n", code, err)
		}
		return code
	}
	resp, err := client.Get(url)
	if err != nil {
		var dnsErr *net.DNSError
		var netErr net.Error
		switch {
		case errors.As(err, &dnsErr):
			return complain(6, err)
		case errors.As(err, &netErr) && netErr.Timeout():
			return complain(28, err)
		default:
			return complain(7, err)
		}
	}
	defer resp.Body.Close()
	if fail && resp.StatusCode >= 400 {
		return complain(22, fmt.Errorf("the requested URL returned error: %d", resp.StatusCode))
	}
	var dst io.Writer = os.Stdout
	if out != "" && out != "-" {
		f, err := os.Create(out)
		if err != nil {
			return complain(23, err)
		}
		defer f.Close()
		dst = f
	}
	if _, err := io.Copy(dst, resp.Body); err != nil {
		return complain(56, err)
	}
	if write != "" {
		fmt.Print(strings.ReplaceAll(strings.ReplaceAll(write, "%{http_code}", strconv.Itoa(resp.StatusCode)), `\n`, "\n"))
	}
	return 0
}

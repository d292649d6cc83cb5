package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/citysense/citysense/collector"
	"github.com/citysense/citysense/collector/internal/config"
	"github.com/citysense/citysense/internal/cli"
)

// clusterCmd is `cluster keygen` and `cluster status`.
func clusterCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return usageError(stderr, "cluster: want keygen or status")
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "keygen":
		var path string
		fs := newFlagSet("cluster keygen", &path)
		if code, ok := parse(fs, args, stdout, stderr); !ok {
			return code
		}
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", program, err)
			return cli.ExitError
		}
		fmt.Fprintln(stdout, base64.StdEncoding.EncodeToString(key))
		return cli.ExitOK
	case "status":
		return clusterStatusCmd(args, stdout, stderr)
	}
	return usageError(stderr, fmt.Sprintf("cluster: unknown subcommand %q (want keygen or status)", sub))
}

func clusterStatusCmd(args []string, stdout, stderr io.Writer) int {
	var path string
	fs := newFlagSet("cluster status", &path)
	url := fs.String("url", "", "")
	token := fs.String("token", "", "")
	asJSON := fs.Bool("json", false, "")
	if code, ok := parse(fs, args, stdout, stderr); !ok {
		return code
	}
	if *url == "" {
		cfg := config.Default()
		if path != "" {
			var err error
			if cfg, err = config.Load(path); err != nil {
				printConfigError(stderr, err)
				return cli.ExitConfig
			}
		}
		host, port, _ := net.SplitHostPort(cfg.HTTP.Listen)
		if host == "" || host == "0.0.0.0" || host == "::" {
			host = "127.0.0.1"
		}
		*url = "http://" + net.JoinHostPort(host, port)
	}
	if *token == "" {
		*token = os.Getenv("CITYSENSE_ADMIN_TOKEN")
	}
	if *token == "" {
		return usageError(stderr, "cluster status: an admin token is needed: --token or CITYSENSE_ADMIN_TOKEN (citysense-collector token add NAME --admin)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(*url, "/")+"/admin/v1/cluster", nil)
	if err != nil {
		return usageError(stderr, "cluster status: --url: "+err.Error())
	}
	req.Header.Set("Authorization", "Bearer "+*token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "%s: cluster status: %v\n", program, err)
		return cli.ExitError
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		fmt.Fprintf(stderr, "%s: cluster status: %v\n", program, err)
		return cli.ExitError
	}
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "%s: cluster status: %s: %s\n", program, resp.Status, strings.TrimSpace(string(body)))
		return cli.ExitError
	}
	if *asJSON {
		stdout.Write(body)
		return cli.ExitOK
	}
	var st collector.ClusterStatus
	if err := json.Unmarshal(body, &st); err != nil {
		fmt.Fprintf(stderr, "%s: cluster status: unexpected answer: %v\n", program, err)
		return cli.ExitError
	}
	printClusterStatus(stdout, st)
	return cli.ExitOK
}

func printClusterStatus(w io.Writer, st collector.ClusterStatus) {
	fmt.Fprintf(w, "node %s, replication %d\n\nMEMBERS\n", st.Node, st.Replication)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tGOSSIP\tAPI\tSERVING\tVERSION")
	for _, m := range st.Members {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", m.Name, m.State, m.Addr, m.API, m.Serving, m.Version)
	}
	tw.Flush()
	fmt.Fprintln(w, "\nPARTITIONS (owner:serving/pending)")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTITION\tOWNERS")
	for _, p := range st.Partitions {
		var owners []string
		for _, o := range p.Owners {
			state := "rebuilding"
			if o.Serving {
				state = "serving"
			}
			lag := "no consumer"
			if o.Pending >= 0 {
				lag = fmt.Sprintf("%d pending", o.Pending)
			}
			owners = append(owners, fmt.Sprintf("%s (%s, %s)", o.Node, state, lag))
		}
		fmt.Fprintf(tw, "%d\t%s\n", p.Partition, strings.Join(owners, ", "))
	}
	tw.Flush()
	if st.BusError != "" {
		fmt.Fprintf(w, "\nNATS: %s\n", st.BusError)
	}
	if st.Bus != nil {
		b, _ := json.MarshalIndent(st.Bus, "", "  ")
		fmt.Fprintf(w, "\nNATS\n%s\n", b)
	}
}

package api

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/citysense/citysense/protocols"
)

func TestAPI_archive(t *testing.T) {
	st := testStore(t)
	day := func(d, hh, mm, ss int) int64 { return time.Date(2024, 12, d, hh, mm, ss, 0, time.UTC).UnixNano() }
	tags := func(station, district string) []protocols.Tag {
		return []protocols.Tag{{Key: "district", Value: district}, {Key: "station", Value: station}}
	}
	pm := func(v float64) []protocols.Field { return []protocols.Field{{Key: "pm25", Value: protocols.Float(v)}} }
	if _, err := st.Write([]protocols.Point{
		{Measurement: "air", Tags: tags("s0003", "d01"), Time: day(31, 9, 0, 0), Fields: pm(4.5)},
		{Measurement: "air", Tags: tags("s0001", "d01"), Time: day(31, 10, 0, 30), Fields: pm(21)},
		{Measurement: "air", Tags: tags("s0001", "d01"), Time: day(31, 10, 0, 0), Fields: pm(20.5)},
		{Measurement: "air", Tags: tags("s0001", "d01"), Time: day(31, 23, 59, 59), Fields: pm(1)},
		{Measurement: "air", Tags: tags("evil", "../x"), Time: day(31, 10, 0, 0), Fields: pm(1)}, // not a safe path: left out
	}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "2024-12-01", "d01"), 0o750); err != nil { // older than kept
		t.Fatal(err)
	}
	a := newTestAPI(t, Options{Store: st, Contracts: contracts, ArchiveDir: dir, ArchiveDays: 3})
	if err := a.archiveOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	var files []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			files = append(files, rel)
		}
		return err
	})
	want := []string{
		"2024-12-29/.complete",
		"2024-12-30/.complete", "2024-12-30/d02/air.pm25.csv.gz",
		"2024-12-31/.complete", "2024-12-31/d01/air.pm25.csv.gz",
	}
	if !slices.Equal(files, want) {
		t.Fatalf("files\n got %q\nwant %q", files, want)
	}
	gunzip := func(b []byte) string {
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		out, _ := io.ReadAll(zr)
		return string(out)
	}
	d01, _ := os.ReadFile(filepath.Join(dir, "2024-12-31/d01/air.pm25.csv.gz"))
	if got, want := gunzip(d01), "time,station,value\r\n"+
		"2024-12-31T10:00:00Z,s0001,20.5\r\n2024-12-31T10:00:30Z,s0001,21\r\n2024-12-31T23:59:59Z,s0001,1\r\n"+
		"2024-12-31T09:00:00Z,s0003,4.5\r\n"; got != want {
		t.Errorf("d01 file\n got %q\nwant %q", got, want)
	}
	d02, _ := os.ReadFile(filepath.Join(dir, "2024-12-30/d02/air.pm25.csv.gz"))
	if got := gunzip(d02); got != "time,station,value\r\n2024-12-30T12:00:00Z,s0002,99\r\n" {
		t.Errorf("d02 file %q", got)
	}

	// The catalogue.
	rec := do(a, "GET", "/api/v1/archive")
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/ld+json" || rec.Header().Get("ETag") == "" {
		t.Fatalf("%d %v %s", rec.Code, rec.Header(), rec.Body)
	}
	var cat struct {
		Type     string `json:"@type"`
		License  string `json:"dct:license"`
		Rights   string `json:"dct:rights"`
		Datasets []struct {
			ID    string `json:"dct:identifier"`
			Dists []struct {
				Title    string `json:"dct:title"`
				URL      string `json:"dcat:downloadURL"`
				Size     int64  `json:"dcat:byteSize"`
				Media    string `json:"dcat:mediaType"`
				Checksum struct {
					Value string `json:"spdx:checksumValue"`
				} `json:"spdx:checksum"`
				Temporal struct {
					Start string `json:"dcat:startDate"`
					End   string `json:"dcat:endDate"`
				} `json:"dct:temporal"`
			} `json:"dcat:distribution"`
		} `json:"dcat:dataset"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &cat); err != nil {
		t.Fatal(err)
	}
	if cat.Type != "dcat:Catalog" || cat.License != "https://creativecommons.org/licenses/by/4.0/" || cat.Rights != "CC BY 4.0" || len(cat.Datasets) != 2 {
		t.Fatalf("catalogue %+v", cat)
	}
	for k, file := range map[int][]byte{0: d01, 1: d02} {
		ds := cat.Datasets[k]
		sum := sha256.Sum256(file)
		if len(ds.Dists) != 1 || ds.Dists[0].Size != int64(len(file)) || ds.Dists[0].Checksum.Value != hex.EncodeToString(sum[:]) || ds.Dists[0].Media != "text/csv" {
			t.Fatalf("dataset %d: %+v", k, ds)
		}
		get := do(a, "GET", ds.Dists[0].URL)
		if get.Code != 200 || !bytes.Equal(get.Body.Bytes(), file) || get.Header().Get("Content-Type") != "application/gzip" {
			t.Errorf("download %s: %d %v", ds.Dists[0].URL, get.Code, get.Header())
		}
	}
	if d := cat.Datasets[0]; d.ID != "air.pm25/d01" || d.Dists[0].URL != "/api/v1/archive/2024-12-31/d01/air.pm25.csv.gz" ||
		d.Dists[0].Temporal.Start != "2024-12-31T00:00:00Z" || d.Dists[0].Temporal.End != "2025-01-01T00:00:00Z" {
		t.Errorf("dataset 0: %+v", d)
	}
	for _, bad := range []string{
		"/api/v1/archive/2024-13-01/d01/air.pm25.csv.gz", "/api/v1/archive/2024-12-31/d01/air.pm25.csv",
		"/api/v1/archive/2024-12-31/..%2F..%2Fetc/passwd.csv.gz", "/api/v1/archive/2024-12-28/d01/air.pm25.csv.gz",
		"/api/v1/archive/2024-12-31/d09/air.pm25.csv.gz",
	} {
		if rec := do(a, "GET", bad); rec.Code != 404 {
			t.Errorf("%s: %d", bad, rec.Code)
		}
	}
	// A second run changes nothing.
	before, _ := os.Stat(filepath.Join(dir, "2024-12-31/d01/air.pm25.csv.gz"))
	if err := a.archiveOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(filepath.Join(dir, "2024-12-31/d01/air.pm25.csv.gz"))
	if !after.ModTime().Equal(before.ModTime()) {
		t.Errorf("the file was rewritten")
	}
	// Without an archive directory, an empty catalogue.
	rec = do(newTestAPI(t, Options{}), "GET", "/api/v1/archive")
	if rec.Code != 200 || !bytes.Contains(rec.Body.Bytes(), []byte(`"dcat:dataset":[]`)) {
		t.Errorf("no archive: %d %s", rec.Code, rec.Body)
	}
}

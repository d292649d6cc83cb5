package api

import (
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/citysense/citysense/collector/internal/store"
	"github.com/citysense/citysense/protocols"
)

// The bulk archive: one gzipped CSV per UTC day, district and field
// (time,station,value, every raw reading), produced by the collector in
// the background (RunArchive) under Options.ArchiveDir as
// <day>/<district>/<measurement>.<field>.csv.gz, listed at
// /api/v1/archive as a DCAT catalogue and served below it.

// DefaultArchiveDays is how many closed days the archive keeps.
const DefaultArchiveDays = 30

// archiveGrace is how long after midnight a day is considered closed: late
// readings (an agent catching up, the store's head) have arrived by then.
const archiveGrace = 3 * time.Hour

// archiveEvery is how often RunArchive looks for days to produce.
const archiveEvery = time.Hour

// completeMarker is written into a day's directory when every file of the
// day is produced.
const completeMarker = ".complete"

// safeName keeps districts, measurements and fields usable as path parts.
var safeName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// RunArchive produces the archive's missing days and removes those older
// than ArchiveDays, now and then every hour, until ctx is done. Without an
// ArchiveDir it returns at once.
func (a *API) RunArchive(ctx context.Context) {
	if a.opts.ArchiveDir == "" {
		return
	}
	for {
		if err := a.archiveOnce(ctx); err != nil && ctx.Err() == nil {
			a.log.Error("api: archive", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(archiveEvery):
		}
	}
}

// archiveDays are the closed days the archive should hold, newest first.
func (a *API) archiveDays() []time.Time {
	last := a.opts.Now().UTC().Add(-archiveGrace).Truncate(24*time.Hour).AddDate(0, 0, -1)
	out := make([]time.Time, a.opts.ArchiveDays)
	for i := range out {
		out[i] = last.AddDate(0, 0, -i)
	}
	return out
}

// archiveOnce produces every missing day and prunes old ones.
func (a *API) archiveOnce(ctx context.Context) error {
	dir := a.opts.ArchiveDir
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("create archive directory %q: %w", dir, err)
	}
	days := a.archiveDays()
	keep := map[string]bool{}
	for _, d := range days {
		keep[d.Format(time.DateOnly)] = true
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read archive directory %q: %w", dir, err)
	}
	for _, e := range entries {
		if _, err := time.Parse(time.DateOnly, e.Name()); err == nil && !keep[e.Name()] {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return fmt.Errorf("remove old archive day: %w", err)
			}
		}
	}
	// The oldest first, so an interrupted run resumes where it stopped.
	for _, d := range slices.Backward(days) {
		dayDir := filepath.Join(dir, d.Format(time.DateOnly))
		if _, err := os.Stat(filepath.Join(dayDir, completeMarker)); err == nil {
			continue
		}
		if err := a.archiveDay(ctx, d, dayDir); err != nil {
			return err
		}
	}
	return nil
}

// archiveDay writes every district's and field's file of day d.
func (a *API) archiveDay(ctx context.Context, d time.Time, dayDir string) error {
	from, to := d.UnixNano(), d.AddDate(0, 0, 1).UnixNano()-1
	for _, fs := range a.latestFields() {
		refs, err := a.opts.Store.Lookup(store.Selector{Measurement: fs.Measurement, Field: fs.Field})
		if err != nil {
			var amb *store.AmbiguousFieldError
			if errors.As(err, &amb) {
				continue
			}
			return err
		}
		byDistrict := map[string][]store.SeriesRef{}
		for _, r := range refs {
			if dist := r.Tag("district"); safeName.MatchString(dist) {
				byDistrict[dist] = append(byDistrict[dist], r)
			}
		}
		for dist, rs := range byDistrict {
			if !safeName.MatchString(fs.Measurement) || !safeName.MatchString(fs.Field) {
				continue
			}
			slices.SortFunc(rs, func(x, y store.SeriesRef) int { return strings.Compare(x.Tag("station"), y.Tag("station")) })
			name := filepath.Join(dayDir, dist, fs.Measurement+"."+fs.Field+".csv.gz")
			if err := a.archiveFile(ctx, name, rs, from, to); err != nil {
				return err
			}
		}
	}
	if err := os.MkdirAll(dayDir, 0o750); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dayDir, completeMarker), nil, 0o640)
}

// archiveFile writes the readings of refs in [from, to] as a gzipped CSV,
// series after series (ordered by station), atomically; no file when there
// is no reading.
func (a *API) archiveFile(ctx context.Context, name string, refs []store.SeriesRef, from, to int64) error {
	if err := os.MkdirAll(filepath.Dir(name), 0o750); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(name), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	zw := gzip.NewWriter(tmp)
	bw := bufio.NewWriterSize(zw, 64<<10)
	bw.WriteString("time,station,value\r\n")
	rows := 0
	var buf []byte
	for i := range refs {
		station := refs[i].Tag("station")
		err := a.opts.Store.ReadRaw(ctx, refs[i:i+1], from, to, func(_ int, smp []store.Sample) error {
			for _, s := range smp {
				buf = time.Unix(0, s.Time).UTC().AppendFormat(buf[:0], time.RFC3339Nano)
				buf = append(buf, ',')
				buf = appendCSVCell(buf, station)
				buf = append(buf, ',')
				if s.Value.Kind() == protocols.KindString {
					buf = appendCSVCell(buf, s.Value.StringV())
				} else {
					buf = appendValue(buf, s.Value)
				}
				buf = append(buf, "\r\n"...)
				bw.Write(buf)
				rows++
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("archive %s: %w", name, err)
		}
	}
	if rows == 0 {
		return nil
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), name)
}

// DCAT, as JSON-LD: a catalogue of one dataset per district and field,
// each day a distribution.
type dcatCatalog struct {
	Context     map[string]string `json:"@context"`
	Type        string            `json:"@type"`
	Title       string            `json:"dct:title"`
	Description string            `json:"dct:description"`
	License     string            `json:"dct:license"`
	LicenseName string            `json:"dct:rights"`
	Publisher   string            `json:"dct:publisher"`
	Datasets    []dcatDataset     `json:"dcat:dataset"`
}

type dcatDataset struct {
	Type          string             `json:"@type"`
	Identifier    string             `json:"dct:identifier"`
	Title         string             `json:"dct:title"`
	Spatial       string             `json:"dct:spatial"`
	Keywords      []string           `json:"dcat:keyword"`
	License       string             `json:"dct:license"`
	Distributions []dcatDistribution `json:"dcat:distribution"`
}

type dcatDistribution struct {
	Type           string       `json:"@type"`
	Title          string       `json:"dct:title"`
	Temporal       dcatInterval `json:"dct:temporal"`
	DownloadURL    string       `json:"dcat:downloadURL"`
	MediaType      string       `json:"dcat:mediaType"`
	CompressFormat string       `json:"dcat:compressFormat"`
	ByteSize       int64        `json:"dcat:byteSize"`
	Checksum       dcatChecksum `json:"spdx:checksum"`
	License        string       `json:"dct:license"`
}

type dcatInterval struct {
	Start string `json:"dcat:startDate"`
	End   string `json:"dcat:endDate"`
}

type dcatChecksum struct {
	Algorithm string `json:"spdx:algorithm"`
	Value     string `json:"spdx:checksumValue"`
}

// archive answers GET /api/v1/archive: the DCAT catalogue of the files.
func (a *API) archive(w http.ResponseWriter, r *http.Request) {
	lic, licURL := a.licence()
	cat := dcatCatalog{
		Context: map[string]string{"dcat": "http://www.w3.org/ns/dcat#", "dct": "http://purl.org/dc/terms/",
			"spdx": "http://spdx.org/rdf/terms#"},
		Type:  "dcat:Catalog",
		Title: "CitySense bulk archive",
		Description: "Every raw reading of one UTC day, one gzipped CSV (time,station,value) per district and field; " +
			"the last " + fmt.Sprint(a.opts.ArchiveDays) + " closed days.",
		License: licURL, LicenseName: lic, Publisher: a.opts.Portal.Attribution,
		Datasets: []dcatDataset{},
	}
	if cat.Publisher == "" {
		cat.Publisher = "CitySense contributors"
	}
	if a.opts.ArchiveDir != "" {
		sets, err := a.archiveDatasets(licURL)
		if err != nil {
			a.internalError(w, "archive", err)
			return
		}
		cat.Datasets = sets
	}
	a.serveJSON(w, r, "archive", cat, "application/ld+json", "public, max-age=300")
}

// archiveDatasets lists the complete days' files, checksummed once each
// (the files never change).
func (a *API) archiveDatasets(licURL string) ([]dcatDataset, error) {
	days, err := os.ReadDir(a.opts.ArchiveDir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return []dcatDataset{}, nil
		}
		return nil, err
	}
	sets := map[string]*dcatDataset{}
	for _, day := range days {
		d, err := time.Parse(time.DateOnly, day.Name())
		if err != nil {
			continue
		}
		dayDir := filepath.Join(a.opts.ArchiveDir, day.Name())
		if _, err := os.Stat(filepath.Join(dayDir, completeMarker)); err != nil {
			continue // being produced
		}
		dists, err := os.ReadDir(dayDir)
		if err != nil {
			return nil, err
		}
		for _, dist := range dists {
			if !dist.IsDir() {
				continue
			}
			files, err := os.ReadDir(filepath.Join(dayDir, dist.Name()))
			if err != nil {
				return nil, err
			}
			for _, f := range files {
				series, ok := strings.CutSuffix(f.Name(), ".csv.gz")
				if !ok {
					continue
				}
				path := filepath.Join(dayDir, dist.Name(), f.Name())
				size, sum, err := a.fileSum(path)
				if err != nil {
					return nil, err
				}
				id := series + "/" + dist.Name()
				ds, ok := sets[id]
				if !ok {
					m, fld, _ := strings.Cut(series, ".")
					ds = &dcatDataset{Type: "dcat:Dataset", Identifier: id,
						Title:   fmt.Sprintf("%s %s in district %s, daily", m, fld, dist.Name()),
						Spatial: dist.Name(), Keywords: []string{m, fld, dist.Name()}, License: licURL}
					sets[id] = ds
				}
				ds.Distributions = append(ds.Distributions, dcatDistribution{
					Type: "dcat:Distribution", Title: day.Name(),
					Temporal:    dcatInterval{Start: d.Format(time.RFC3339), End: d.AddDate(0, 0, 1).Format(time.RFC3339)},
					DownloadURL: "/api/v1/archive/" + day.Name() + "/" + dist.Name() + "/" + f.Name(),
					MediaType:   "text/csv", CompressFormat: "application/gzip", ByteSize: size,
					Checksum: dcatChecksum{Algorithm: "spdx:checksumAlgorithm_sha256", Value: sum}, License: licURL,
				})
			}
		}
	}
	out := make([]dcatDataset, 0, len(sets))
	for _, ds := range sets {
		out = append(out, *ds)
	}
	slices.SortFunc(out, func(x, y dcatDataset) int { return strings.Compare(x.Identifier, y.Identifier) })
	return out, nil
}

// fileSum returns a file's size and SHA-256, cached by path and size.
func (a *API) fileSum(path string) (int64, string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return 0, "", err
	}
	key := path + "\x00" + fmt.Sprint(st.Size())
	a.sumMu.Lock()
	sum, ok := a.sums[key]
	a.sumMu.Unlock()
	if ok {
		return st.Size(), sum, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return 0, "", err
	}
	sum = hex.EncodeToString(h.Sum(nil))
	a.sumMu.Lock()
	a.sums[key] = sum
	a.sumMu.Unlock()
	return st.Size(), sum, nil
}

// archiveFile answers GET /api/v1/archive/{day}/{district}/{file}.
func (a *API) archiveDownload(w http.ResponseWriter, r *http.Request) {
	day, dist, file := r.PathValue("day"), r.PathValue("district"), r.PathValue("file")
	if _, err := time.Parse(time.DateOnly, day); err != nil || !safeName.MatchString(dist) ||
		!safeName.MatchString(file) || !strings.HasSuffix(file, ".csv.gz") || a.opts.ArchiveDir == "" {
		writeError(w, http.StatusNotFound, "no such archive file")
		return
	}
	dayDir := filepath.Join(a.opts.ArchiveDir, day)
	if _, err := os.Stat(filepath.Join(dayDir, completeMarker)); err != nil {
		writeError(w, http.StatusNotFound, "no such archive file")
		return
	}
	f, err := os.Open(filepath.Join(dayDir, dist, file))
	if err != nil {
		writeError(w, http.StatusNotFound, "no such archive file")
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		a.internalError(w, "archive", err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/gzip")
	h.Set("Content-Disposition", `attachment; filename="citysense-`+day+"-"+dist+"-"+file+`"`)
	h.Set("Cache-Control", "public, max-age=86400, immutable")
	http.ServeContent(w, r, "", st.ModTime(), f)
}

// licence is the data's licence name and URL.
func (a *API) licence() (string, string) {
	if a.opts.Portal.Licence != "" {
		return a.opts.Portal.Licence, a.opts.Portal.LicenceURL
	}
	return "CC BY 4.0", "https://creativecommons.org/licenses/by/4.0/"
}

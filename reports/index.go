package reports

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/wxpush/wxpush/loadtest"
)

// DefaultIndex is where wxload index writes the list of runs.
const DefaultIndex = "reports/out/index.html"

// Index writes to out a page listing the runs in runsDir (its
// subdirectories that hold a summary.json), newest first, with their
// verdicts and headline figures and a relative link to each report.
func Index(runsDir, out string) error {
	l, err := ListRuns(runsDir)
	if err != nil {
		return err
	}
	l.linkFrom(filepath.Dir(out))
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	return writeFile(out, l)
}

// RunList is the runs of a directory. Its WriteTo writes the index page.
type RunList struct {
	Dir  string
	Runs []Run
}

var _ io.WriterTo = (*RunList)(nil)

// Run is one run of a RunList.
type Run struct {
	Name    string            // the run directory's name
	Dir     string            // its path
	Summary *loadtest.Summary // nil when Err is set
	Err     string            // why summary.json could not be read
	Link    string            // relative URL of its index.html, when it has one
}

// ListRuns reads the summary of every subdirectory of dir that has one,
// newest first.
func ListRuns(dir string) (*RunList, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	l := &RunList{Dir: dir}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if _, err := os.Stat(filepath.Join(p, loadtest.SummaryFile)); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		r := Run{Name: e.Name(), Dir: p}
		if s, err := loadtest.ReadSummary(p); err != nil {
			r.Err = err.Error()
		} else {
			r.Summary = s
		}
		l.Runs = append(l.Runs, r)
	}
	sort.SliceStable(l.Runs, func(i, j int) bool {
		a, b := l.Runs[i].Summary, l.Runs[j].Summary
		switch {
		case a == nil || b == nil:
			return b == nil && a != nil
		case !a.Run.Started.Equal(b.Run.Started):
			return a.Run.Started.After(b.Run.Started)
		}
		return l.Runs[i].Name < l.Runs[j].Name
	})
	return l, nil
}

// linkFrom sets each run's link relative to the directory the page is
// written in; a run without index.html gets none.
func (l *RunList) linkFrom(pageDir string) {
	from, err := filepath.Abs(pageDir)
	if err != nil {
		return
	}
	for i := range l.Runs {
		r := &l.Runs[i]
		if _, err := os.Stat(filepath.Join(r.Dir, loadtest.ReportFile)); err != nil {
			continue
		}
		to, err := filepath.Abs(filepath.Join(r.Dir, loadtest.ReportFile))
		if err != nil {
			continue
		}
		if rel, err := filepath.Rel(from, to); err == nil {
			r.Link = filepath.ToSlash(rel)
		}
	}
}

type indexRow struct {
	Name, Link, Scenario, Started, Err                string
	Passed                                            bool
	Requests, Throughput, P99, E2EP99, Delivered, Dur string
	Failed, Lost, Duplicates                          string
	Bad                                               bool
}

type indexView struct {
	Wide                bool // a wider page, for wide tables
	Title, Version, Dir string
	Passed, Failed      int
	Rows                []indexRow
}

// WriteTo writes the list as one self-contained HTML page.
func (l *RunList) WriteTo(w io.Writer) (int64, error) {
	v := &indexView{Title: "wxload runs in " + l.Dir, Dir: l.Dir, Wide: true}
	for _, r := range l.Runs {
		row := indexRow{Name: r.Name, Link: r.Link, Err: r.Err}
		if s := r.Summary; s != nil {
			d := s.Delivery
			row.Scenario, row.Passed, row.Started = s.Scenario, s.Passed, fmtTime(s.Run.Started)
			row.Requests = fmtInt(s.Accept.Requests)
			row.Throughput = fmtRate(s.Accept.Throughput) + "/s"
			row.P99, row.E2EP99 = fmtMS(s.Accept.LatencyMS.P99), fmtMS(d.E2ELatencyMS.P99)
			row.Delivered = fmt.Sprintf("%s / %s", fmtInt(d.Delivered), fmtInt(d.Accepted))
			row.Failed, row.Lost, row.Duplicates = fmtInt(d.Failed), fmtInt(d.Lost), fmtInt(d.Duplicates)
			row.Bad = d.Lost > 0 || d.Duplicates > 0
			row.Dur = fmt.Sprintf("%.0f s", s.Run.DurationSeconds)
			if s.Passed {
				v.Passed++
			} else {
				v.Failed++
			}
			if v.Version == "" {
				v.Version = s.Run.Version
			}
		} else {
			v.Failed++
		}
		v.Rows = append(v.Rows, row)
	}
	return execute(w, "index", v)
}

// String lists the runs as text, one per line.
func (l *RunList) String() string {
	var b strings.Builder
	for _, r := range l.Runs {
		if r.Summary == nil {
			fmt.Fprintf(&b, "%s: unreadable: %s\n", r.Name, r.Err)
			continue
		}
		verdict := "passed"
		if !r.Summary.Passed {
			verdict = "FAILED"
		}
		fmt.Fprintf(&b, "%s: %s %s\n", r.Name, r.Summary.Scenario, verdict)
	}
	return b.String()
}

// Package reports turns wxload run directories into self-contained HTML:
// the report of one run (Render), a comparison of two runs that tells
// whether the second regressed (Compare), and a list of the runs in a
// directory (Index).
//
// Every page is a single file with inline CSS and hand-made inline SVG
// charts. It references nothing outside itself, carries a
// Content-Security-Policy that forbids remote loads and scripts, reads
// without JavaScript, uses a colour-blind-safe palette with dash patterns,
// and follows the reader's light or dark preference. Long runs are
// downsampled (largest-triangle-three-buckets) so that a report stays
// small however long the run was.
//
// Package reports reads loadtest's files; loadtest does not import it.
// The wxload command wires Render in as its report writer.
package reports

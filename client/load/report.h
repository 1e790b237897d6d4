// Turning a RunResult into what people and scripts read: the text summary
// (stdout), the JSON document (--json; keys of DESIGN.md §11 and more) and
// the per-second CSV (--csv). Pure functions of their inputs, thread-safe.
#ifndef TENSORCAST_CLIENT_LOAD_REPORT_H_
#define TENSORCAST_CLIENT_LOAD_REPORT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "client/load/histogram.h"
#include "client/load/options.h"
#include "client/load/runner.h"

namespace tensorcast::load {

// "812 ns", "153 µs", "1.24 ms", "2.500 s".
std::string FormatLatency(int64_t ns);

// A small text chart of the histogram: up to `rows` log-spaced bins from
// min to max, each with a bar, its count and its share.
std::string LatencyChart(const Histogram& h, int rows = 12, int width = 40);

// The share of the measured requests that failed (0 when none was
// measured), and whether it is above options.max_error_rate: such a run is
// not a measurement (the binary exits 3).
double ErrorRate(const RunResult& r);
bool TooManyErrors(const LoadOptions& options, const RunResult& r);

// One line on the most frequent error: "FAILED_PRECONDITION (998 of 1000
// requests): <its first message>"; "" when no request failed.
std::string DominantErrorText(const RunResult& r);

// `description` says what the workload does (Workload::Describe()). When
// requests failed, the summary leads with the dominant error (and, above
// --max-error-rate, says the run is not a measurement).
std::string SummaryText(const LoadOptions& options,
                        const std::string& description, const RunResult& r);
std::string ResultJson(const LoadOptions& options,
                       const std::string& description, const RunResult& r);
std::string SeriesCsv(const RunResult& r);

}  // namespace tensorcast::load

#endif  // TENSORCAST_CLIENT_LOAD_REPORT_H_

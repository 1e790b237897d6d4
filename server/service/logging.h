// The server's log: one line per event on stdout, as text or as JSON (one
// object per line: ts, level, msg and any structured fields), through
// spdlog's default logger. ConfigureLogging is called once at start-up;
// logging itself is thread-safe.
#ifndef TENSORCAST_SERVER_SERVICE_LOGGING_H_
#define TENSORCAST_SERVER_SERVICE_LOGGING_H_

#include <spdlog/formatter.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace tensorcast {

// A structured field of a log event. A number's value is written as it is
// (it must be a valid JSON number); anything else as a JSON string.
struct LogField {
  std::string key;
  std::string value;
  bool number = false;
};

// While alive, the events this thread logs carry `fields` (the JSON format
// writes them beside msg; the text format ignores them, its message already
// says the same). Nests; the innermost scope wins.
class ScopedLogFields {
 public:
  explicit ScopedLogFields(std::vector<LogField> fields);
  ~ScopedLogFields();
  ScopedLogFields(const ScopedLogFields&) = delete;
  ScopedLogFields& operator=(const ScopedLogFields&) = delete;

 private:
  std::vector<LogField> fields_;
  const std::vector<LogField>* previous_;
};

// Appends `text` as a quoted JSON string: quotes, backslashes and control
// characters escaped, and bytes that are not valid UTF-8 replaced by U+FFFD,
// so the result is always valid JSON.
void AppendJsonString(absl::string_view text, std::string* out);

// The formatters: text ("2026-01-02T03:04:05.678+0000 info msg", control
// characters in msg escaped so an event stays one line) and JSON
// ({"ts":"2026-01-02T03:04:05.678Z","level":"info","msg":"...",...}).
std::unique_ptr<spdlog::formatter> NewTextLogFormatter();
std::unique_ptr<spdlog::formatter> NewJsonLogFormatter();

// Sets the default logger's format: "text" or "json" (INVALID_ARGUMENT
// otherwise). Events go to stdout.
absl::Status ConfigureLogging(absl::string_view format);

}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_SERVICE_LOGGING_H_

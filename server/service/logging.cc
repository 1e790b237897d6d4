#include "server/service/logging.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <time.h>

#include <chrono>
#include <cstdio>

#include "absl/strings/str_cat.h"

namespace tensorcast {
namespace {

// The fields of the innermost ScopedLogFields on this thread. spdlog's
// default logger is synchronous, so the formatter runs on the thread that
// logs and sees them.
thread_local const std::vector<LogField>* t_fields = nullptr;

// The length of the valid UTF-8 sequence at the start of `s`, or 0 if it
// does not start with one (RFC 3629: no overlongs, no surrogates, at most
// U+10FFFF).
size_t Utf8SequenceLength(absl::string_view s) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char lead = byte(0);
  size_t n;
  unsigned char lo = 0x80, hi = 0xBF;  // the range of the second byte
  if (lead < 0x80) return 1;
  if (lead >= 0xC2 && lead <= 0xDF) {
    n = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    n = 3;
    if (lead == 0xE0) lo = 0xA0;
    if (lead == 0xED) hi = 0x9F;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    n = 4;
    if (lead == 0xF0) lo = 0x90;
    if (lead == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (s.size() < n || byte(1) < lo || byte(1) > hi) return 0;
  for (size_t i = 2; i < n; ++i) {
    if (byte(i) < 0x80 || byte(i) > 0xBF) return 0;
  }
  return n;
}

// RFC 3339 in UTC with milliseconds: 2026-01-02T03:04:05.678Z.
void AppendTimestamp(spdlog::log_clock::time_point time, std::string* out) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      time.time_since_epoch())
                      .count();
  time_t seconds = static_cast<time_t>(ms / 1000);
  struct tm utc;
  gmtime_r(&seconds, &utc);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday, utc.tm_hour,
                utc.tm_min, utc.tm_sec, static_cast<int>(ms % 1000));
  out->append(buf);
}

absl::string_view Payload(const spdlog::details::log_msg& msg) {
  return absl::string_view(msg.payload.data(), msg.payload.size());
}

absl::string_view LevelName(spdlog::level::level_enum level) {
  spdlog::string_view_t name = spdlog::level::to_string_view(level);
  return absl::string_view(name.data(), name.size());
}

class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg,
              spdlog::memory_buf_t& dest) override {
    std::string line = "{\"ts\":\"";
    line.reserve(96 + msg.payload.size());
    AppendTimestamp(msg.time, &line);
    line += "\",\"level\":";
    AppendJsonString(LevelName(msg.level), &line);
    line += ",\"msg\":";
    AppendJsonString(Payload(msg), &line);
    if (t_fields != nullptr) {
      for (const LogField& f : *t_fields) {
        line += ',';
        AppendJsonString(f.key, &line);
        line += ':';
        if (f.number) {
          line += f.value;
        } else {
          AppendJsonString(f.value, &line);
        }
      }
    }
    line += "}\n";
    dest.append(line.data(), line.data() + line.size());
  }

  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>();
  }
};

// %* in a pattern: the message with control characters escaped (\n, \r,
// \t, \xNN), so that one event is one line whatever it quotes.
class EscapedPayload final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    absl::string_view text = Payload(msg);
    size_t start = 0;
    for (size_t i = 0; i < text.size(); ++i) {
      const unsigned char c = static_cast<unsigned char>(text[i]);
      if (c >= 0x20 && c != 0x7f) continue;
      dest.append(text.data() + start, text.data() + i);
      char buf[8];
      const char* escaped = c == '\n'   ? "\\n"
                            : c == '\r' ? "\\r"
                            : c == '\t' ? "\\t"
                                        : nullptr;
      if (escaped == nullptr) {
        std::snprintf(buf, sizeof(buf), "\\x%02x", c);
        escaped = buf;
      }
      dest.append(escaped, escaped + std::char_traits<char>::length(escaped));
      start = i + 1;
    }
    dest.append(text.data() + start, text.data() + text.size());
  }

  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<EscapedPayload>();
  }
};

}  // namespace

ScopedLogFields::ScopedLogFields(std::vector<LogField> fields)
    : fields_(std::move(fields)), previous_(t_fields) {
  t_fields = &fields_;
}

ScopedLogFields::~ScopedLogFields() { t_fields = previous_; }

void AppendJsonString(absl::string_view text, std::string* out) {
  out->push_back('"');
  size_t i = 0;
  while (i < text.size()) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c == '"' || c == '\\') {
      out->push_back('\\');
      out->push_back(static_cast<char>(c));
      ++i;
    } else if (c < 0x20) {
      switch (c) {
        case '\n':
          out->append("\\n");
          break;
        case '\r':
          out->append("\\r");
          break;
        case '\t':
          out->append("\\t");
          break;
        default: {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out->append(buf);
        }
      }
      ++i;
    } else if (c < 0x80) {
      out->push_back(static_cast<char>(c));
      ++i;
    } else if (size_t n = Utf8SequenceLength(text.substr(i)); n > 0) {
      out->append(text.data() + i, n);
      i += n;
    } else {
      out->append("\\ufffd");
      ++i;
    }
  }
  out->push_back('"');
}

std::unique_ptr<spdlog::formatter> NewTextLogFormatter() {
  auto formatter = std::make_unique<spdlog::pattern_formatter>();
  formatter->add_flag<EscapedPayload>('*');
  formatter->set_pattern("%Y-%m-%dT%H:%M:%S.%e%z %l %*");
  return formatter;
}

std::unique_ptr<spdlog::formatter> NewJsonLogFormatter() {
  return std::make_unique<JsonFormatter>();
}

absl::Status ConfigureLogging(absl::string_view format) {
  std::unique_ptr<spdlog::formatter> formatter;
  if (format == "text") {
    formatter = NewTextLogFormatter();
  } else if (format == "json") {
    formatter = NewJsonLogFormatter();
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--log-format=", format, ": expected text or json"));
  }
  // A plain stdout sink: no colour codes, every line flushed.
  auto logger = std::make_shared<spdlog::logger>(
      "tensorcast", std::make_shared<spdlog::sinks::stdout_sink_mt>());
  logger->set_formatter(std::move(formatter));
  spdlog::set_default_logger(std::move(logger));
  return absl::OkStatus();
}

}  // namespace tensorcast

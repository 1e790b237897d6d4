#include "common/size.h"

#include <cmath>
#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace tensorcast {

absl::StatusOr<int64_t> ParseSize(absl::string_view text) {
  std::string s = absl::AsciiStrToLower(absl::StripAsciiWhitespace(text));
  size_t end = 0;
  while (end < s.size() && (absl::ascii_isdigit(s[end]) || s[end] == '.')) {
    ++end;
  }
  absl::string_view number = absl::string_view(s).substr(0, end);
  absl::string_view suffix =
      absl::StripAsciiWhitespace(absl::string_view(s).substr(end));
  auto bad = [&] {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot parse size '", text,
        "': expected bytes or a number with KiB/MiB/GiB/TiB, e.g. 64MiB"));
  };
  double value;
  if (number.empty() || !absl::SimpleAtod(number, &value)) return bad();
  double scale;
  if (suffix.empty() || suffix == "b") {
    scale = 1;
  } else if (suffix == "k" || suffix == "kb" || suffix == "kib") {
    scale = 1024.0;
  } else if (suffix == "m" || suffix == "mb" || suffix == "mib") {
    scale = 1024.0 * 1024;
  } else if (suffix == "g" || suffix == "gb" || suffix == "gib") {
    scale = 1024.0 * 1024 * 1024;
  } else if (suffix == "t" || suffix == "tb" || suffix == "tib") {
    scale = 1024.0 * 1024 * 1024 * 1024;
  } else {
    return bad();
  }
  double bytes = std::round(value * scale);
  if (!(bytes >= 0) || bytes >= 9.2e18) return bad();
  return static_cast<int64_t>(bytes);
}

std::string FormatSize(int64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int unit = 0;
  while (std::fabs(v) >= 1024 && unit < 4) {
    v /= 1024;
    ++unit;
  }
  if (unit == 0) return absl::StrCat(bytes, " B");
  return absl::StrFormat("%.2f %s", v, kUnits[unit]);
}

}  // namespace tensorcast

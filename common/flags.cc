#include "common/flags.h"

#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/size.h"

namespace tensorcast {

void FlagSet::Add(const char* name, Kind kind, void* value, const char* help,
                  std::string default_text) {
  flags_.push_back(Flag{name, kind, value, help, std::move(default_text)});
}

void FlagSet::String(const char* name, std::string* value, const char* help) {
  Add(name, Kind::kString, value, help, *value);
}
void FlagSet::Int(const char* name, int64_t* value, const char* help) {
  Add(name, Kind::kInt, value, help, absl::StrCat(*value));
}
void FlagSet::Double(const char* name, double* value, const char* help) {
  Add(name, Kind::kDouble, value, help, absl::StrCat(*value));
}
void FlagSet::Bool(const char* name, bool* value, const char* help) {
  Add(name, Kind::kBool, value, help, *value ? "true" : "");
}
void FlagSet::Size(const char* name, int64_t* value, const char* help) {
  Add(name, Kind::kSize, value, help, absl::StrCat(*value));
}

absl::Status FlagSet::Set(const Flag& flag, const std::string& text,
                          absl::string_view source) {
  auto bad = [&](absl::string_view what) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, "=", text, ": ", what));
  };
  switch (flag.kind) {
    case Kind::kString:
      *static_cast<std::string*>(flag.value) = text;
      return absl::OkStatus();
    case Kind::kInt:
      if (!absl::SimpleAtoi(text, static_cast<int64_t*>(flag.value))) {
        return bad("expected an integer");
      }
      return absl::OkStatus();
    case Kind::kDouble:
      if (!absl::SimpleAtod(text, static_cast<double*>(flag.value))) {
        return bad("expected a number");
      }
      return absl::OkStatus();
    case Kind::kBool:
      if (!absl::SimpleAtob(text, static_cast<bool*>(flag.value))) {
        return bad("expected true or false");
      }
      return absl::OkStatus();
    case Kind::kSize: {
      absl::StatusOr<int64_t> v = ParseSize(text);
      if (!v.ok()) return bad(v.status().message());
      *static_cast<int64_t*>(flag.value) = *v;
      return absl::OkStatus();
    }
  }
  return bad("unknown flag kind");
}

absl::Status FlagSet::Parse(const std::vector<std::string>& args) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--") {
      positional_.insert(positional_.end(), args.begin() + i + 1, args.end());
      break;
    }
    if (arg == "-h" || arg == "--help") {
      help_ = true;
      continue;
    }
    if (arg.size() < 3 || arg.compare(0, 2, "--") != 0) {
      positional_.push_back(arg);
      continue;
    }
    size_t eq = arg.find('=');
    std::string name = arg.substr(2, eq == std::string::npos ? eq : eq - 2);
    const Flag* flag = nullptr;
    for (const Flag& f : flags_) {
      if (f.name == name) flag = &f;
    }
    if (flag == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown flag --", name, " (see --help)"));
    }
    std::string value;
    if (eq != std::string::npos) {
      value = arg.substr(eq + 1);
    } else if (flag->kind == Kind::kBool) {
      value = "true";
    } else if (i + 1 < args.size()) {
      value = args[++i];
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("flag --", name, " needs a value"));
    }
    if (absl::Status s = Set(*flag, value, absl::StrCat("--", name)); !s.ok()) {
      return s;
    }
    set_.push_back(name);
  }
  if (env_prefix_.empty()) return absl::OkStatus();
  for (const Flag& f : flags_) {
    if (WasSet(f.name)) continue;  // the command line wins
    const std::string var = EnvName(f.name);
    const char* value = std::getenv(var.c_str());
    if (value == nullptr || *value == '\0') continue;
    if (absl::Status s = Set(f, value, var); !s.ok()) return s;
    env_set_.push_back(f.name);
  }
  return absl::OkStatus();
}

std::string FlagSet::EnvName(absl::string_view name) const {
  if (env_prefix_.empty()) return "";
  std::string var = absl::StrCat(env_prefix_, absl::AsciiStrToUpper(name));
  for (char& c : var) {
    if (c == '-') c = '_';
  }
  return var;
}

bool FlagSet::WasSet(absl::string_view name) const {
  for (const std::string& s : set_) {
    if (s == name) return true;
  }
  return false;
}

std::string FlagSet::Usage() const {
  std::string out = absl::StrCat(usage_, "\n\nFlags:\n");
  for (const Flag& f : flags_) {
    std::string left = absl::StrCat("  --", f.name);
    if (f.kind != Kind::kBool) absl::StrAppend(&left, "=VALUE");
    if (left.size() < 28) left.resize(28, ' ');
    absl::StrAppend(&out, left, " ", f.help);
    if (!f.default_text.empty() && f.default_text != "0") {
      absl::StrAppend(&out, " (default ", f.default_text, ")");
    }
    if (!env_prefix_.empty())
      absl::StrAppend(&out, " [$", EnvName(f.name), "]");
    absl::StrAppend(&out, "\n");
  }
  if (!env_prefix_.empty()) {
    absl::StrAppend(
        &out, "\nEvery flag can also be set in the environment: --foo-bar as ",
        env_prefix_,
        "FOO_BAR (shown in [] above). A flag on the command line wins; an "
        "empty variable counts as unset.\n");
  }
  return out;
}

}  // namespace tensorcast

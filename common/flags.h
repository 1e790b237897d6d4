// A small command-line parser for tensorcast's binaries: GNU-style
// "--name=value" / "--name value" / "--switch", positional arguments, and a
// usage text generated from the declarations. Optionally every flag can also
// come from an environment variable (set_env_prefix). Errors come back as a
// Status (the binaries print them on one line and exit 2). Not thread-safe;
// used once at start-up.
#ifndef TENSORCAST_COMMON_FLAGS_H_
#define TENSORCAST_COMMON_FLAGS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace tensorcast {

class FlagSet {
 public:
  // `usage` heads the --help text.
  explicit FlagSet(std::string usage) : usage_(std::move(usage)) {}

  // The pointers must outlive Parse(); their values are the defaults.
  void String(const char* name, std::string* value, const char* help);
  void Int(const char* name, int64_t* value, const char* help);
  void Double(const char* name, double* value, const char* help);
  void Bool(const char* name, bool* value, const char* help);
  // A size ("64MiB", "1048576"): see ParseSize.
  void Size(const char* name, int64_t* value, const char* help);

  // With a prefix such as "TENSORCAST_", Parse() also reads each flag that
  // is not on the command line from the environment: --foo-bar from
  // TENSORCAST_FOO_BAR (upper case, '-' as '_'). The command line wins; an
  // empty variable counts as unset; a bool takes true/false/1/0/yes/no.
  // Usage() names the variables. Off (empty) by default.
  void set_env_prefix(std::string prefix) { env_prefix_ = std::move(prefix); }
  // The variable that sets flag `name` ("" without a prefix).
  std::string EnvName(absl::string_view name) const;

  // Parses args (without the program name), then the environment (above).
  // INVALID_ARGUMENT for an unknown flag, a missing or unparseable value
  // (naming the variable when the value came from one). "--" ends the flags.
  absl::Status Parse(const std::vector<std::string>& args);
  // Whether --help or -h was given.
  bool help_requested() const { return help_; }
  const std::vector<std::string>& positional() const { return positional_; }
  // Whether the flag appeared on the command line.
  bool WasSet(absl::string_view name) const;
  // The names of the flags that appeared, in order.
  const std::vector<std::string>& set_flags() const { return set_; }
  // The names of the flags that were taken from the environment.
  const std::vector<std::string>& env_flags() const { return env_set_; }
  std::string Usage() const;

 private:
  enum class Kind { kString, kInt, kDouble, kBool, kSize };
  struct Flag {
    std::string name;
    Kind kind;
    void* value;
    std::string help;
    std::string default_text;
  };
  void Add(const char* name, Kind kind, void* value, const char* help,
           std::string default_text);
  // `source` names where the text came from, for errors ("--name" or the
  // environment variable).
  absl::Status Set(const Flag& flag, const std::string& text,
                   absl::string_view source);

  std::string usage_;
  std::vector<Flag> flags_;
  std::vector<std::string> positional_;
  std::vector<std::string> set_;
  std::vector<std::string> env_set_;
  std::string env_prefix_;
  bool help_ = false;
};

}  // namespace tensorcast

#endif  // TENSORCAST_COMMON_FLAGS_H_

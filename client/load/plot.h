// `tensorcast-load --plot=RESULT.json --out=FILE.png`: runs
// bench/plot_load.py (matplotlib) on a result written by --json. The script
// is looked up beside the build tree (build/bin/../../bench), then in the
// source tree this binary was built from, then in ../share/tensorcast. The
// interpreter is $TENSORCAST_PYTHON, else the build's venv Python if it
// exists, else python3 on PATH. Thread-compatible; forks a child process.
#ifndef TENSORCAST_CLIENT_LOAD_PLOT_H_
#define TENSORCAST_CLIENT_LOAD_PLOT_H_

#include <string>

namespace tensorcast::load {

// The exit status for the binary: the script's, or 2 (one line on stderr)
// when the input, the script or the interpreter is missing.
int RunPlot(const std::string& json_path, const std::string& out_path);

}  // namespace tensorcast::load

#endif  // TENSORCAST_CLIENT_LOAD_PLOT_H_
